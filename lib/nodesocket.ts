/**
 * A node:net / node:tls socket as a `ByteStream`. Reads take what the socket delivered (flowing mode, so each
 * delivery costs one event and no join), as much as fits in the reader's buffer, across deliveries: a TLS
 * socket delivers a record at a time, and one read of several records makes one frame instead of several.
 * Backpressure: the socket is paused while `QUEUE_LIMIT` bytes wait for a read. Writes resolve once the socket
 * has taken the bytes (the caller may then reuse its buffer).
 *
 * @module
 */

import net from "node:net";
import type { Duplex } from "node:stream";
import type { ByteStream } from "./io.ts";

/** At most this much (plus one delivery) waits in a connection for its reader. */
const QUEUE_LIMIT = 256 * 1024;

export class NodeSocketStream implements ByteStream {
  readonly socket: Duplex;
  /** Delivered bytes not read yet; the first `#offset` bytes of the first chunk are read already. */
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #queued = 0;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #afterClose: (() => void) | undefined;
  /** Writes whose callback has not come yet. */
  readonly #unsettledWrites = new Set<(error?: Error | null) => void>();

  /** `onClose` runs when the stream is closed from this side (to release what lies beneath). */
  constructor(socket: Duplex, onClose?: () => void) {
    this.socket = socket;
    this.#afterClose = onClose;
    // Paused first, so adding the 'data' listener does not start the flow: a read starts it.
    socket.pause();
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
  }

  readonly #onData = (chunk: Uint8Array) => {
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued >= QUEUE_LIMIT) this.#pause();
    this.#wakeReader();
  };

  readonly #onEnd = () => {
    this.#ended = true;
    this.#wakeReader();
  };

  readonly #onClose = () => {
    this.#onEnd();
    for (const settle of this.#unsettledWrites) {
      settle(new Deno.errors.BadResource("socket closed"));
    }
  };

  readonly #onError = (error: Error) => {
    this.#failure = error;
    this.#wakeReader();
  };

  /** Bytes delivered by the socket and not read yet. */
  get buffered(): number {
    return this.#queued;
  }

  #wakeReader(): void {
    const resolve = this.#wake;
    this.#wake = undefined;
    resolve?.();
  }

  #pause(): void {
    if (this.socket.readableFlowing === true) this.socket.pause();
  }

  /**
   * Lets the socket deliver. Its own state is asked, not a flag of ours: node's TLS socket may pause itself
   * (a stale flag would leave a reader waiting for ever).
   */
  #resume(): void {
    if (!this.#ended && this.socket.readableFlowing !== true) this.socket.resume();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queued === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended || this.socket.destroyed) return null;
      this.#resume();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let n = 0;
    while (n < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length - this.#offset, buffer.length - n);
      buffer.set(
        take === chunk.length ? chunk : chunk.subarray(this.#offset, this.#offset + take),
        n,
      );
      n += take;
      this.#offset += take;
      if (this.#offset === chunk.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
    this.#queued -= n;
    if (this.#queued < QUEUE_LIMIT) this.#resume();
    return n;
  }

  /** Whether another reader can take the socket over: the peer has not ended, nothing failed or closed. */
  get canHandOver(): boolean {
    const socket = this.socket as Duplex & { readyState?: string };
    return !this.#ended && !this.#failure && !socket.destroyed &&
      (socket.readyState === undefined || socket.readyState === "open");
  }

  /**
   * Stops using the socket and gives back what was delivered but not read yet (it goes back into the paused
   * socket, in front of what it still holds), so another reader, such as node:tls, can take it over.
   */
  release(): void {
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    this.socket.off("close", this.#onClose);
    this.socket.off("error", this.#onError);
    this.socket.pause();
    const unread = this.#chunks;
    if (unread.length > 0) unread[0] = unread[0].subarray(this.#offset);
    for (let i = unread.length - 1; i >= 0; i--) this.socket.unshift(unread[i]);
    this.#chunks = [];
    this.#offset = 0;
    this.#queued = 0;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BadResource("socket closed"));
    return new Promise((resolve, reject) => {
      // A write the socket had taken when it was closed may never hear back: the close settles it.
      const settle = (error?: Error | null) => {
        this.#unsettledWrites.delete(settle);
        if (error) reject(error);
        else resolve(data.length);
      };
      this.#unsettledWrites.add(settle);
      this.socket.write(data, settle);
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.writableEnded || this.socket.destroyed) return resolve();
      // end's callback waits for the peer to take the data; a socket destroyed meanwhile never calls it.
      this.socket.once("close", () => resolve());
      this.socket.end(() => resolve());
    });
  }

  close(): void {
    this.socket.destroy();
    this.#afterClose?.();
  }
}

/** The native handle methods a direct reader needs (node's own `onread` path uses them). */
interface ReadableHandle {
  useUserBuffer(buffer: Uint8Array): void;
}

/**
 * A plain node:net socket read like a `Deno.Conn`: each read lands straight in the reader's buffer and nothing
 * is read while no reader waits. Node's default path allocates a fresh buffer for every read, which halves the
 * upload throughput of a busy session (measured: 640 against 1,160 MB/s); node's `onread` option reads into
 * given memory instead.
 *
 * Ownership, as with ReadBuffers: the socket is pointed at the reader's buffer only for the read that was asked
 * for, and back at this stream's own scratch buffer as soon as it returns, so a read nobody asked for can
 * never land in a buffer that went back to its owner (or to the pool another session draws from); what lands
 * in the scratch buffer is copied out and kept for the next read.
 */
export class DirectSocketStream implements ByteStream {
  readonly socket: net.Socket;
  readonly #handle: ReadableHandle;
  readonly #scratch = new Uint8Array(512);
  /** Bytes read before this stream took over, or read when nobody asked: the next reads take them first. */
  #unread: Uint8Array[];
  #reader:
    | { buffer: Uint8Array; resolve(n: number): void; reject(error: Error): void }
    | undefined;
  #ended = false;
  #failure: Error | undefined;
  readonly #unsettledWrites = new Set<(error?: Error | null) => void>();

  private constructor(handle: ReadableHandle, unread: Uint8Array[]) {
    this.#handle = handle;
    this.#unread = unread;
    this.socket = new net.Socket({
      handle,
      allowHalfOpen: true,
      onread: { buffer: this.#scratch, callback: (n: number) => this.#delivered(n) },
    } as net.SocketConstructorOpts);
    this.socket.on("end", () => {
      this.#ended = true;
      this.#settleReader();
    });
    this.socket.on("close", () => {
      this.#ended = true;
      this.#settleReader();
      for (const settle of this.#unsettledWrites) {
        settle(new Deno.errors.BadResource("socket closed"));
      }
    });
    this.socket.on("error", (error: Error) => {
      this.#failure = error;
      this.#settleReader();
    });
    // Only 'end' flows this way (data comes through `onread`): it needs the stream flowing to be emitted.
    this.socket.resume();
  }

  /**
   * Takes over the plain socket under `conn` (a NodeSocketStream that read the first bytes): undefined when
   * there is none, the peer already ended, or this runtime's sockets cannot read into given memory.
   */
  static takeOver(conn: ByteStream): DirectSocketStream | undefined {
    if (!(conn instanceof NodeSocketStream) || !(conn.socket instanceof net.Socket)) {
      return undefined;
    }
    const raw = conn.socket;
    const handle = (raw as unknown as { _handle?: Partial<ReadableHandle> })._handle;
    if (typeof handle?.useUserBuffer !== "function" || !conn.canHandOver) return undefined;
    conn.release();
    const unread: Uint8Array[] = [];
    for (let chunk = raw.read(); chunk !== null; chunk = raw.read()) unread.push(chunk);
    const direct = new DirectSocketStream(handle as ReadableHandle, unread);
    // The handle reports to the new socket from now on; an EOF the old one had already received shows as
    // its 'end', once the bytes before it were taken above.
    raw.once("end", () => direct.#peerEnded());
    raw.on("error", () => direct.#peerEnded());
    return direct;
  }

  #peerEnded(): void {
    this.#ended = true;
    this.#settleReader();
  }

  /** The native read finished: `n` bytes are in the buffer the handle pointed at. Stops reading. */
  #delivered(n: number): boolean {
    const reader = this.#reader;
    this.#reader = undefined;
    // From now on, reads land in the scratch buffer.
    this.#handle.useUserBuffer(this.#scratch);
    if (reader) {
      reader.resolve(n);
    } else {
      this.#unread.push(this.#scratch.slice(0, n));
    }
    return false;
  }

  #settleReader(): void {
    const reader = this.#reader;
    if (!reader) return;
    this.#reader = undefined;
    this.#handle.useUserBuffer(this.#scratch);
    if (this.#failure) reader.reject(this.#failure);
    else reader.resolve(-1);
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    if (this.#unread.length > 0) return this.#takeUnread(buffer);
    if (this.#failure) throw this.#failure;
    if (this.#ended || this.socket.destroyed) return null;
    if (this.#reader) throw new Error("DirectSocketStream: a read is already pending");
    const n = await new Promise<number>((resolve, reject) => {
      this.#reader = { buffer, resolve, reject };
      this.#handle.useUserBuffer(buffer);
      this.socket.read(0); // starts the native read (stopped after each delivery)
    });
    return n < 0 ? null : n;
  }

  #takeUnread(buffer: Uint8Array): number {
    let n = 0;
    while (n < buffer.length && this.#unread.length > 0) {
      const chunk = this.#unread[0];
      const take = Math.min(chunk.length, buffer.length - n);
      buffer.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#unread.shift();
      else this.#unread[0] = chunk.subarray(take);
    }
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BadResource("socket closed"));
    return new Promise((resolve, reject) => {
      const settle = (error?: Error | null) => {
        this.#unsettledWrites.delete(settle);
        if (error) reject(error);
        else resolve(data.length);
      };
      this.#unsettledWrites.add(settle);
      this.socket.write(data, settle);
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.writableEnded || this.socket.destroyed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.end(() => resolve());
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
