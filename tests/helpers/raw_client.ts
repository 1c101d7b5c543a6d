/**
 * A raw WebSocket client that speaks bytes (for what browsers' WebSocket cannot send), the handshake request it
 * sends, and the start of a TLS ClientHello. Every wait is bounded.
 */

import { findHeadEnd } from "../../lib/http.ts";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame } from "../../lib/websocket/frames.ts";
import { Receiver, type ReceiverEvent } from "../../lib/websocket/receiver.ts";
import { concat, readToEnd } from "./bytes.ts";
import { deadline } from "./waits.ts";

/** The start of a TLS ClientHello: enough for the proxy to begin a handshake, not to finish one. */
// deno-fmt-ignore
export const TLS_START = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]);

/** The mask on the raw client's frames (fixed, so the bytes on the wire are known). */
export const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** A WebSocket client that sends exactly the bytes a test chooses and decodes what the server sends. */
export class RawClient {
  readonly conn: Deno.Conn;
  readonly #receiver = new Receiver({ requireMask: false });
  readonly #events: ReceiverEvent[] = [];
  #buffered = new Uint8Array(0);
  #eof = false;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** A client over an already open connection (no handshake sent yet). */
  static wrap(conn: Deno.Conn): RawClient {
    return new RawClient(conn);
  }

  /** Connects over TLS (to "localhost", trusting `caCert`) and completes a handshake. */
  static async openTls(
    port: number,
    caCert: string,
    headers: Record<string, string> = {},
  ): Promise<RawClient> {
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [caCert] });
    const client = new RawClient(conn);
    const response = await client.request(upgradeRequest(headers));
    if (!response.startsWith("HTTP/1.1 101")) throw new Error(`no 101:\n${response}`);
    return client;
  }

  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connects and completes a handshake; throws unless the answer is 101. */
  static async open(port: number, headers: Record<string, string> = {}): Promise<RawClient> {
    const client = await RawClient.connect(port);
    const response = await client.request(upgradeRequest(headers));
    if (!response.startsWith("HTTP/1.1 101")) throw new Error(`no 101:\n${response}`);
    return client;
  }

  async send(bytes: Uint8Array): Promise<void> {
    await writeAll(this.conn, bytes);
  }

  /** Sends a masked frame. */
  sendFrame(opcode: number, payload: Uint8Array | string = new Uint8Array(0), fin = true) {
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    return this.send(encodeFrame(opcode, bytes, { fin, mask: MASK }));
  }

  /** Sends a request and returns the response head (the text up to the blank line). */
  async request(text: string): Promise<string> {
    await this.send(new TextEncoder().encode(text));
    return await this.readHead();
  }

  async readHead(ms = 5000): Promise<string> {
    const parts: Uint8Array[] = [this.#buffered];
    const buffer = new Uint8Array(4096);
    await deadline(
      (async () => {
        while (findHeadEnd(concat(parts)) < 0) {
          const n = await this.conn.read(buffer);
          if (n === null) throw new Error(`closed before a response head: ${concatText(parts)}`);
          parts.push(buffer.slice(0, n));
        }
      })(),
      ms,
      "response head",
    );
    const all = concat(parts);
    const end = findHeadEnd(all);
    this.#buffered = all.slice(end);
    return new TextDecoder().decode(all.subarray(0, end));
  }

  /** Reads until the server closes; returns all the bytes after anything already consumed. */
  async readRest(ms = 5000): Promise<Uint8Array> {
    const rest = await deadline(readToEnd(this.conn), ms, "server close");
    const out = concat([this.#buffered, rest]);
    this.#buffered = new Uint8Array(0);
    this.#eof = true;
    return out;
  }

  /** The next decoded event from the server; undefined at EOF. */
  async next(ms = 5000): Promise<ReceiverEvent | undefined> {
    return await deadline(this.#next(), ms, "next frame");
  }

  async #next(): Promise<ReceiverEvent | undefined> {
    const buffer = new Uint8Array(65536);
    while (this.#events.length === 0) {
      if (this.#buffered.length > 0) {
        const chunk = this.#buffered;
        this.#buffered = new Uint8Array(0);
        this.#collect(chunk);
        continue;
      }
      if (this.#eof) return undefined;
      let n: number | null;
      try {
        n = await this.conn.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#eof = true;
        return undefined;
      }
      this.#collect(buffer.subarray(0, n));
    }
    return this.#events.shift();
  }

  #collect(chunk: Uint8Array): void {
    for (const event of this.#receiver.receive(chunk)) {
      // Data views point into a reused buffer: copy them out.
      this.#events.push(
        event.kind === "data" ? { ...event, payload: event.payload.slice() } : event,
      );
    }
  }

  /** Collects data payload bytes until `count` bytes arrived; fails on a close or EOF first. */
  async readData(count: number, ms = 10000): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    const end = performance.now() + ms;
    while (have < count) {
      const event = await this.next(Math.max(1, end - performance.now()));
      if (!event) throw new Error(`EOF after ${have} of ${count} bytes`);
      if (event.kind === "data") {
        parts.push(event.payload);
        have += event.payload.length;
      } else if (event.kind === "close" || event.kind === "error") {
        throw new Error(`${event.kind} ${JSON.stringify(event)} after ${have} of ${count} bytes`);
      }
    }
    return concat(parts);
  }

  /** The next close event, skipping data; undefined if the server closed TCP without one. */
  async nextClose(ms = 5000): Promise<{ code: number | undefined; reason: string } | undefined> {
    const end = performance.now() + ms;
    while (true) {
      const event = await this.next(Math.max(1, end - performance.now()));
      if (!event) return undefined;
      if (event.kind === "close") return event;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

function concatText(parts: Uint8Array[]): string {
  return JSON.stringify(new TextDecoder().decode(concat(parts)).slice(0, 200));
}

/** A handshake request; `headers` override or add (an empty value removes a header). */
export function upgradeRequest(headers: Record<string, string> = {}, path = "/"): string {
  const all: Record<string, string> = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    ...headers,
  };
  let text = `GET ${path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(all)) {
    if (value !== "") text += `${name}: ${value}\r\n`;
  }
  return text + "\r\n";
}
