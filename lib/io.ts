/**
 * Byte streams and the read buffers the relay uses.
 *
 * @module
 */

/**
 * The one interface the WebSocket and relay code needs from a connection. `Deno.Conn` has it; a TLS adapter can
 * provide it too. `write` may write fewer bytes than given (use `writeAll`).
 */
export interface ByteStream {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** Writes every byte of `data`, resuming after partial writes. */
export async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await stream.write(data.subarray(offset));
  }
}

/** Closes a stream, ignoring "already closed". */
export function closeQuietly(stream: { close(): void }): void {
  try {
    stream.close();
  } catch {
    // Already closed, or closed by the other pump: nothing left to release.
  }
}

/** An idle connection's pending read uses this many bytes. */
export const SMALL_READ = 2 * 1024;
/**
 * A busy connection reads this much at a time. Python reads 64 KiB; 256 KiB measured 1.7x its downstream
 * throughput (fewer reads, writes and frames per byte), and only busy connections hold it.
 */
export const LARGE_READ = 256 * 1024;
/** At most this many large buffers wait for reuse, process-wide (16 MiB). */
const POOL_LIMIT = 64;
const largePool: Uint8Array[] = [];

/**
 * Read buffers sized to the traffic. A pending read holds its buffer for as long as the peer stays silent, so an
 * idle connection must wait on a small one; a busy one needs large reads to be fast.
 *
 * The rule: a read that fills the small buffer switches to the large one (more is waiting); a read that leaves
 * the large one less than full means the socket was drained, so the next wait uses the small buffer and the large
 * one goes back to a shared pool. `headroom` bytes are reserved in front of every buffer, so a frame header can be
 * written there and header + payload sent in one write.
 */
export class ReadBuffers {
  readonly headroom: number;
  #small: Uint8Array | undefined;
  #large: Uint8Array | undefined;
  #useLarge = false;

  constructor(headroom = 0) {
    this.headroom = headroom;
  }

  /** The buffer for the next read: its first `headroom` bytes are reserved, read into `subarray(headroom)`. */
  next(): Uint8Array {
    if (this.#useLarge) {
      this.#large ??= takeLarge(this.headroom);
      return this.#large;
    }
    this.#small ??= new Uint8Array(this.headroom + SMALL_READ);
    return this.#small;
  }

  /** Tells how many bytes the last read returned, choosing the next buffer. */
  update(bytesRead: number): void {
    if (!this.#useLarge) {
      if (bytesRead >= SMALL_READ) this.#useLarge = true;
    } else if (bytesRead < LARGE_READ) {
      this.#useLarge = false;
      this.#release();
    }
  }

  /** Returns the large buffer to the pool (call when the stream is done). */
  release(): void {
    this.#release();
    this.#small = undefined;
  }

  #release(): void {
    const large = this.#large;
    this.#large = undefined;
    if (large && largePool.length < POOL_LIMIT && large.length === this.headroom + LARGE_READ) {
      largePool.push(large);
    }
  }
}

function takeLarge(headroom: number): Uint8Array {
  const size = headroom + LARGE_READ;
  for (let i = largePool.length - 1; i >= 0; i--) {
    if (largePool[i].length === size) {
      const [buffer] = largePool.splice(i, 1);
      return buffer;
    }
  }
  return new Uint8Array(size);
}
