/**
 * Two ByteStreams joined in memory: the in-process targets of the library (mod.ts: a program serves sessions
 * itself), and the relay's tests without sockets. Like a socket pair: bounded buffering
 * (a write waits while the peer has `capacity` bytes unread), `closeWrite` is a FIN (the peer reads EOF after
 * what was sent), `close` ends both directions (the peer reads EOF, its writes fail; this end's pending waits
 * fail as a closed socket's do). Written bytes are copied, so the writer may reuse its buffer at once.
 */

import type { ByteStream } from "./io.ts";

class Direction {
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  ended = false;
  broken = false;
  readers: (() => void)[] = [];
  writers: (() => void)[] = [];
  wake(list: "readers" | "writers"): void {
    const waiting = this[list];
    this[list] = [];
    for (const resolve of waiting) resolve();
  }
}

class MemoryStream implements ByteStream {
  closed = false;
  constructor(
    readonly incoming: Direction,
    readonly outgoing: Direction,
    readonly capacity: number,
  ) {}

  async read(buffer: Uint8Array): Promise<number | null> {
    while (true) {
      if (this.closed) throw new Deno.errors.BadResource("closed");
      const chunk = this.incoming.chunks[0];
      if (chunk) {
        const n = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, n));
        if (n === chunk.length) this.incoming.chunks.shift();
        else this.incoming.chunks[0] = chunk.subarray(n);
        this.incoming.bytes -= n;
        this.incoming.wake("writers");
        return n;
      }
      if (this.incoming.ended) return null;
      await new Promise<void>((resolve) => this.incoming.readers.push(resolve));
    }
  }

  async write(data: Uint8Array): Promise<number> {
    while (true) {
      if (this.closed) throw new Deno.errors.BadResource("closed");
      if (this.outgoing.broken || this.outgoing.ended) {
        throw new Deno.errors.BrokenPipe("the peer closed");
      }
      if (this.outgoing.bytes < this.capacity) break;
      await new Promise<void>((resolve) => this.outgoing.writers.push(resolve));
    }
    const n = Math.min(data.length, Math.max(1, this.capacity - this.outgoing.bytes));
    this.outgoing.chunks.push(data.slice(0, n));
    this.outgoing.bytes += n;
    this.outgoing.wake("readers");
    return n;
  }

  closeWrite(): Promise<void> {
    this.outgoing.ended = true;
    this.outgoing.wake("readers");
    return Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.outgoing.ended = true;
    this.incoming.broken = true;
    this.outgoing.wake("readers");
    this.incoming.wake("readers");
    this.incoming.wake("writers");
    this.outgoing.wake("writers");
  }
}

/** A connected pair: what one end writes, the other reads. */
export function memoryStreamPair(capacity = 64 * 1024): [ByteStream, ByteStream] {
  const ab = new Direction();
  const ba = new Direction();
  return [new MemoryStream(ba, ab, capacity), new MemoryStream(ab, ba, capacity)];
}
