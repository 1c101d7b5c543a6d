/**
 * A raw HTTP client from a chosen loopback address (node:net binds it; Deno.connect cannot): what a test needs to
 * be a second client address, or to know its own source port.
 */

import net from "node:net";
import { deadline, waitFor } from "./waits.ts";

/** A raw HTTP connection from `localAddress` (node:net binds it); `send` returns the next response head. */
export class BoundClient {
  readonly socket: net.Socket;
  /** The client's own port (what the proxy sees as the peer's). */
  readonly localPort: number;
  #received = "";
  #consumed = 0;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.localPort = socket.localPort!;
    socket.on(
      "data",
      (chunk: Uint8Array) => this.#received += new TextDecoder("latin1").decode(chunk),
    );
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static async connect(
    localAddress: string,
    port: number,
    host = "127.0.0.1",
  ): Promise<BoundClient> {
    const socket = net.connect({ host, port, localAddress });
    await deadline(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("error", reject);
      }),
      5000,
      `connect from ${localAddress}`,
    );
    return new BoundClient(socket);
  }

  /** Sends `text` and returns the whole head of the answer ("" if the connection closes first). */
  async request(text: string): Promise<string> {
    return await this.#exchange(text, "head");
  }

  /** Sends a request head and returns the status line of the answer ("" if the connection closes first). */
  async send(head: string): Promise<string> {
    return await this.#exchange(head, "status");
  }

  async #exchange(head: string, want: "head" | "status"): Promise<string> {
    this.socket.write(head);
    let closed = false;
    this.closed.then(() => closed = true);
    await waitFor(
      () => this.#received.indexOf("\r\n\r\n", this.#consumed) !== -1 || closed,
      10_000,
      "an answer",
    );
    const end = this.#received.indexOf("\r\n\r\n", this.#consumed);
    if (end === -1) return "";
    const head_ = this.#received.slice(this.#consumed, end);
    this.#consumed = end + 4;
    // A body (a built-in file) follows: skip it by its length.
    const length = head_.match(/\r\ncontent-length: (\d+)/i);
    if (length) {
      const bodyEnd = this.#consumed + Number(length[1]);
      await waitFor(() => this.#received.length >= bodyEnd, 10_000, "the body");
      this.#consumed = bodyEnd;
    }
    return want === "head" ? head_ : head_.split("\r\n")[0];
  }

  async close(): Promise<void> {
    this.socket.destroy();
    await deadline(this.closed, 5000, "socket close");
  }
}
