// Generated from web/websock.ts by `deno task build:web`: edit that file, then run the task.
/// <reference lib="dom" />
/**
 * `Websock`: a WebSocket for byte streams, for pages that talk to a TCP service through websockify. Received
 * messages are appended to a receive queue, read with the `rQ*` methods that noVNC's and websockify's users know
 * (numbers are big-endian and unsigned); the `message` event only says that new bytes arrived. Sending takes
 * bytes; `bufferedAmount` and `drain()` let a sender wait for the socket to catch up instead of queueing without
 * bound.
 *
 * Subprotocols: `binary` is asked for by default. A server that selects `base64` (old websockify servers, or a
 * client that offers `["base64"]` alone) gets base64 text messages both ways; this module decodes and encodes
 * them, so the receive queue and `send` always carry plain bytes.
 *
 * ```js
 * import { Websock } from "/websockify/websock.js";
 * const sock = new Websock();
 * sock.on("open", () => sock.send([0x52, 0x46, 0x42]));
 * sock.on("message", () => {
 *   if (sock.rQwait("header", 4)) return; // fewer than 4 bytes so far: wait for the next message
 *   const length = sock.rQshift32();
 *   if (sock.rQwait("body", length, 4)) return; // not all of it yet: put the length back, wait
 *   console.log(sock.rQshiftStr(length));
 * });
 * sock.open("/websockify"); // this page's server, ws:// or wss:// as the page
 * ```
 *
 * @module
 */
/** What a Websock is doing: `unused` before `open`, then the WebSocket's states. */
export type WebsockState = "unused" | "connecting" | "open" | "closing" | "closed";
/** How payload travels: binary messages, or base64 text messages (the `base64` subprotocol). */
export type WebsockMode = "binary" | "base64";
/** The handlers `on` takes, by event name. */
export interface WebsockHandlers {
  /** The connection is open; `protocol` and `mode` are known. */
  open: () => void;
  /** New bytes are in the receive queue. */
  message: () => void;
  /** The connection is closed (the WebSocket's close event: code, reason, wasClean). */
  close: (event: CloseEvent) => void;
  /**
   * The WebSocket failed (an Event), or a message could not be taken (an Error: bad base64, the receive queue
   * full, or an exception thrown by the message handler). The first two also close the connection, with 4007
   * and 4009.
   */
  error: (error: Event | Error) => void;
}
/** Settings of a Websock. */
export interface WebsockOptions {
  /**
   * The receive queue never holds more than this many unread bytes; a message that would overflow it is
   * refused (error event, then close 4009).
   * @default 67108864 (64 MiB)
   */
  maxQueue?: number;
}
/** Bytes `send` takes: a Uint8Array, or numbers 0-255. */
export type Bytes = Uint8Array | ArrayLike<number>;
/** A WebSocket with a receive queue, for byte streams through websockify. */
export declare class Websock {
  #private;
  constructor(options?: WebsockOptions);
  /** The connection's state. */
  get readyState(): WebsockState;
  /** The subprotocol the server selected ("" when it selected none, or before the connection is open). */
  get protocol(): string;
  /** How payload travels on this connection (known once open): `base64` when the server selected it. */
  get mode(): WebsockMode;
  /**
   * Bytes handed to `send` that the browser has not yet put on the network (the WebSocket's own count; in
   * base64 mode it counts the encoded text).
   */
  get bufferedAmount(): number;
  /**
   * Connects to `url` (`ws://` or `wss://`; a relative or http(s) URL is taken against the page's address),
   * asking for `protocols` in order of preference. A Websock that was open is closed first, and the receive
   * queue starts empty.
   */
  open(url: string | URL, protocols?: string | string[]): void;
  /**
   * Closes the connection (when connecting or open); `code` and `reason` as the WebSocket API takes them
   * (1000, or 3000-4999). The close event still follows. Messages that arrive meanwhile are dropped.
   */
  close(code?: number, reason?: string): void;
  /** Sets the handler of an event (one per event; a later `on` replaces it). */
  on<K extends keyof WebsockHandlers>(event: K, handler: WebsockHandlers[K]): void;
  /** Removes the handler of an event. */
  off(event: keyof WebsockHandlers): void;
  /**
   * Sends bytes as one message (base64 text in base64 mode). Numbers are taken modulo 256, as a Uint8Array
   * takes them. Throws when the connection is not open.
   */
  send(bytes: Bytes): void;
  /**
   * Sends a string of character codes 0-255 (one byte each, latin1, as noVNC's `sendString`); a character
   * above 255 is refused with a RangeError. For text in UTF-8, send `new TextEncoder().encode(text)`.
   */
  sendString(text: string): void;
  /**
   * Resolves once `bufferedAmount` is at most `threshold` bytes (at once if it already is); rejects if the
   * connection closes first. A sender that awaits this between messages keeps the browser's buffer bounded.
   */
  drain(threshold?: number): Promise<void>;
  /** The number of unread bytes. */
  rQlen(): number;
  /** The next byte, left in the queue. */
  rQpeek8(): number;
  /** Takes one byte. */
  rQshift8(): number;
  /** Takes a 16-bit big-endian unsigned number. */
  rQshift16(): number;
  /** Takes a 32-bit big-endian unsigned number. */
  rQshift32(): number;
  /** Takes `length` bytes (all unread bytes by default), as a new array. */
  rQshiftBytes(length?: number): Uint8Array;
  /** Copies the next `length` bytes (all unread bytes by default), left in the queue. */
  rQpeekBytes(length?: number): Uint8Array;
  /** Takes `length` bytes (all by default) into `target` (at its start). */
  rQshiftTo(target: Uint8Array, length?: number): void;
  /**
   * Takes `length` bytes (all by default) as a string of character codes 0-255, one per byte (latin1, as
   * noVNC's `rQshiftStr`). For UTF-8 text, decode `rQshiftBytes(length)` with a TextDecoder.
   */
  rQshiftStr(length?: number): string;
  /** Drops the next `length` bytes. */
  rQskipBytes(length: number): void;
  /**
   * Whether to wait for more data: true when fewer than `length` bytes are unread. Then, with `goback`, the
   * last `goback` bytes taken are put back first (the header just read, so that the next message handler reads
   * it again); only bytes taken since the current message arrived can be put back, else it throws (`message`
   * names the wait in the error). False means `length` bytes can be read now.
   */
  rQwait(message: string, length: number, goback?: number): boolean;
}
