/**
 * A node:net / node:tls socket as a `ByteStream`. Reads take what the socket delivered (flowing mode, so each
 * delivery costs one event and no join), as much as fits in the reader's buffer, across deliveries: a TLS
 * socket delivers a record at a time, and one read of several records makes one frame instead of several.
 * Backpressure: while `QUEUE_LIMIT` bytes wait for a read, the socket is paused and its `ReadGate`, if it has
 * one, is closed (what feeds a TLS socket stops there: pausing it does not). Writes resolve once the socket
 * has taken the bytes (the caller may then reuse its buffer), or fail when it closes first.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import type { ByteStream } from "./io.ts";

/** At most this much (plus one delivery) waits in a connection for its reader. */
const QUEUE_LIMIT = 256 * 1024;

/**
 * Open while a stream's reader wants more: what feeds a socket from below (the ciphertext under a TLS socket)
 * reads only while it is open. Pausing a node socket stops its 'data' events, not always what feeds it.
 */
export class ReadGate {
  #open = true;
  #waiting: (() => void)[] = [];

  get open(): boolean {
    return this.#open;
  }

  close(): void {
    this.#open = false;
  }

  reopen(): void {
    this.#open = true;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const resume of waiting) resume();
  }

  /** Runs `resume` once the gate is open (at once if it is). */
  whenOpen(resume: () => void): void {
    if (this.#open) resume();
    else this.#waiting.push(resume);
  }
}

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
  readonly #gate: ReadGate | undefined;
  /** Writes whose callback has not come yet. */
  readonly #unsettledWrites = new Set<(error?: Error | null) => void>();

  /**
   * `onClose` runs when the stream is closed from this side (to release what lies beneath); `gate` is closed
   * while the stream holds QUEUE_LIMIT bytes for its reader.
   */
  constructor(socket: Duplex, onClose?: () => void, gate?: ReadGate) {
    this.socket = socket;
    this.#afterClose = onClose;
    this.#gate = gate;
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
    this.#gate?.close();
    if (this.socket.readableFlowing === true) this.socket.pause();
  }

  /**
   * Lets the socket deliver. Its own state is asked, not a flag of ours: node's TLS socket may pause itself
   * (a stale flag would leave a reader waiting for ever).
   */
  #resume(): void {
    if (this.#gate && !this.#gate.open) this.#gate.reopen();
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
