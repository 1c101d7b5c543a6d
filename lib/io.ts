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

/** The pieces joined into one new array (for the few places that must hold a whole message or answer). */
export function concatBytes(pieces: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const piece of pieces) size += piece.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

/** Closes a stream, ignoring "already closed". */
export function closeQuietly(stream: { close(): void }): void {
  try {
    stream.close();
  } catch {
    // Already closed, or closed by the other pump: nothing left to release.
  }
}

/**
 * An idle connection's pending read uses this many bytes: every idle session holds two such reads, so this is a
 * good part of what an idle session costs. 512 takes the small messages of interactive use (VNC input events,
 * keystrokes, a 100 B ping-pong) in one read; a read that fills it switches to the large buffer.
 */
export const SMALL_READ = 512;
/**
 * A busy connection reads this much at a time. Python reads 64 KiB; 256 KiB measured 1.7x its downstream
 * throughput (fewer reads, writes and frames per byte), and only busy connections hold it.
 */
export const LARGE_READ = 256 * 1024;
/** At most this many large buffers wait for reuse, process-wide (16 MiB). */
const POOL_LIMIT = 64;
const largePool: Uint8Array[] = [];

/**
 * Read buffers sized to the traffic, lent one at a time. A pending read holds its buffer for as long as the peer
 * stays silent, so an idle connection must wait on a small one; a busy one needs large reads to be fast.
 *
 * Ownership is explicit, because the large buffers are shared between sessions through a process-wide pool:
 * `lend()` hands out the buffer for the next read, and the caller gives it back with `giveBack(bytesRead)` only
 * once every use of the bytes read into it is over (written to the peer, seen by the observers). Only then may
 * the buffer go back to the pool, where another session can take it. A buffer that is never given back (the
 * stream failed while a write may still hold it) is never pooled: `dispose()` just forgets it. Go's
 * `buf := pool.Get(); defer pool.Put(buf)` is the shape.
 *
 *     const buffer = buffers.lend();
 *     const n = await stream.read(buffer.subarray(buffers.headroom));
 *     ...await write(buffer...)...   // the bytes are in use
 *     buffers.giveBack(n ?? 0);       // now they are not
 *
 * Sizing: a read that fills the small buffer switches to the large one (more is waiting); a read that leaves the
 * large one less than full means the socket was drained, so the next wait uses the small buffer and the large
 * one goes back to the pool. `headroom` bytes are reserved in front of every buffer, so a frame header can be
 * written there and header + payload sent in one write.
 */
export class ReadBuffers {
  readonly headroom: number;
  #small: Uint8Array | undefined;
  #large: Uint8Array | undefined;
  #useLarge = false;
  #lent: Uint8Array | undefined;

  constructor(headroom = 0) {
    this.headroom = headroom;
  }

  /** The buffer for the next read: its first `headroom` bytes are reserved, read into `subarray(headroom)`. */
  lend(): Uint8Array {
    if (this.#lent) throw new Error("ReadBuffers: the last buffer lent was not given back");
    if (this.#useLarge) {
      this.#large ??= takeLarge(this.headroom);
      this.#lent = this.#large;
    } else {
      this.#small ??= new Uint8Array(this.headroom + SMALL_READ);
      this.#lent = this.#small;
    }
    return this.#lent;
  }

  /**
   * Gives the lent buffer back once its bytes are no longer used anywhere; `bytesRead`, what the read into it
   * returned, chooses the next buffer. Only here does a large buffer go back to the pool.
   */
  giveBack(bytesRead: number): void {
    if (!this.#lent) throw new Error("ReadBuffers: nothing was lent");
    this.#lent = undefined;
    if (!this.#useLarge) {
      if (bytesRead >= SMALL_READ) this.#useLarge = true;
    } else if (bytesRead < LARGE_READ) {
      this.#useLarge = false;
      const large = this.#large;
      this.#large = undefined;
      if (large) returnLarge(large, this.headroom);
    }
  }

  /**
   * The stream is done. A large buffer that was given back returns to the pool; one still lent out (a read or
   * write that failed may still hold it) is left to the garbage collector, never shared.
   */
  dispose(): void {
    const large = this.#large;
    if (large && this.#lent !== large) returnLarge(large, this.headroom);
    this.#large = undefined;
    this.#small = undefined;
    this.#lent = undefined;
  }
}

function returnLarge(buffer: Uint8Array, headroom: number): void {
  if (largePool.length < POOL_LIMIT && buffer.length === headroom + LARGE_READ) {
    largePool.push(buffer);
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
