/**
 * A node:net / node:tls socket as a `ByteStream`: pull-based reads (paused mode, so backpressure holds), writes
 * that resolve once the socket has taken the bytes (the caller may then reuse its buffer).
 *
 * @module
 */

import type { Duplex } from "node:stream";
import type { ByteStream } from "./io.ts";

export class NodeSocketStream implements ByteStream {
  readonly socket: Duplex;
  #leftover: Uint8Array | undefined;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #onClose: (() => void) | undefined;

  /** `onClose` runs when the stream is closed from this side (to release what lies beneath). */
  constructor(socket: Duplex, onClose?: () => void) {
    this.socket = socket;
    this.#onClose = onClose;
    const wake = () => {
      const resolve = this.#wake;
      this.#wake = undefined;
      resolve?.();
    };
    socket.on("readable", wake);
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", (error: Error) => {
      this.#failure = error;
      wake();
    });
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (true) {
      const chunk: Uint8Array | null = this.#leftover ?? this.socket.read();
      this.#leftover = undefined;
      if (chunk && chunk.length > 0) {
        const n = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, n));
        if (n < chunk.length) this.#leftover = chunk.subarray(n);
        return n;
      }
      if (this.#failure) throw this.#failure;
      if (this.#ended || this.socket.destroyed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BadResource("socket closed"));
    return new Promise((resolve, reject) => {
      this.socket.write(
        data,
        (error?: Error | null) => error ? reject(error) : resolve(data.length),
      );
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
    this.#onClose?.();
  }
}
