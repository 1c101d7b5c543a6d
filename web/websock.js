// Generated from web/websock.ts by `deno task build:web`: edit that file, then run the task.
/* @ts-self-types="./websock.d.ts" */
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
const DEFAULT_MAX_QUEUE = 64 * 1024 * 1024;
const INITIAL_QUEUE = 4096;
/** btoa/atob and String.fromCharCode work in slices of this many bytes (argument limits, memory). */
const CHUNK = 8192;
/** A WebSocket with a receive queue, for byte streams through websockify. */
export class Websock {
  /** The unread bytes are `#rQ[#rQi .. #rQlen)`. */
  #rQ = new Uint8Array(INITIAL_QUEUE);
  #rQi = 0;
  #rQlen = 0;
  #maxQueue;
  #socket;
  #mode = "binary";
  #handlers = {
    open: () => {},
    message: () => {},
    close: () => {},
    error: () => {},
  };
  constructor(options = {}) {
    const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
    if (!Number.isInteger(maxQueue) || maxQueue < 1) {
      throw new RangeError(`maxQueue: a positive integer, not ${maxQueue}`);
    }
    this.#maxQueue = maxQueue;
  }
  // ---- connection -------------------------------------------------------------------------------------------
  /** The connection's state. */
  get readyState() {
    const socket = this.#socket;
    if (!socket) {
      return "unused";
    }
    switch (socket.readyState) {
      case WebSocket.CONNECTING:
        return "connecting";
      case WebSocket.OPEN:
        return "open";
      case WebSocket.CLOSING:
        return "closing";
      default:
        return "closed";
    }
  }
  /** The subprotocol the server selected ("" when it selected none, or before the connection is open). */
  get protocol() {
    return this.#socket?.protocol ?? "";
  }
  /** How payload travels on this connection (known once open): `base64` when the server selected it. */
  get mode() {
    return this.#mode;
  }
  /**
   * Bytes handed to `send` that the browser has not yet put on the network (the WebSocket's own count; in
   * base64 mode it counts the encoded text).
   */
  get bufferedAmount() {
    return this.#socket?.bufferedAmount ?? 0;
  }
  /**
   * Connects to `url` (`ws://` or `wss://`; a relative or http(s) URL is taken against the page's address),
   * asking for `protocols` in order of preference. A Websock that was open is closed first, and the receive
   * queue starts empty.
   */
  open(url, protocols = ["binary"]) {
    this.close();
    const socket = new WebSocket(webSocketUrl(url), protocols);
    socket.binaryType = "arraybuffer";
    this.#rQi = 0;
    this.#rQlen = 0;
    this.#mode = "binary";
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#socket !== socket) {
        return;
      }
      this.#mode = socket.protocol === "base64" ? "base64" : "binary";
      this.#handlers.open();
    };
    socket.onmessage = (event) => {
      if (this.#socket === socket) {
        this.#receive(event.data);
      }
    };
    socket.onclose = (event) => {
      if (this.#socket === socket) {
        this.#handlers.close(event);
      }
    };
    socket.onerror = (event) => {
      if (this.#socket === socket) {
        this.#handlers.error(event);
      }
    };
  }
  /**
   * Closes the connection (when connecting or open); `code` and `reason` as the WebSocket API takes them
   * (1000, or 3000-4999). The close event still follows. Messages that arrive meanwhile are dropped.
   */
  close(code, reason) {
    const socket = this.#socket;
    if (!socket) {
      return;
    }
    if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
      socket.close(code, reason);
    }
    socket.onmessage = null;
  }
  /** Sets the handler of an event (one per event; a later `on` replaces it). */
  on(event, handler) {
    if (!(event in this.#handlers)) {
      throw new TypeError(`Websock has no '${event}' event`);
    }
    this.#handlers[event] = handler;
  }
  /** Removes the handler of an event. */
  off(event) {
    this.on(event, () => {});
  }
  // ---- sending ----------------------------------------------------------------------------------------------
  /**
   * Sends bytes as one message (base64 text in base64 mode). Numbers are taken modulo 256, as a Uint8Array
   * takes them. Throws when the connection is not open.
   */
  send(bytes) {
    const socket = this.#openSocket("send");
    const data = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    socket.send(this.#mode === "base64" ? btoa(latin1(data)) : data);
  }
  /**
   * Sends a string of character codes 0-255 (one byte each, latin1, as noVNC's `sendString`); a character
   * above 255 is refused with a RangeError. For text in UTF-8, send `new TextEncoder().encode(text)`.
   */
  sendString(text) {
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code > 255) {
        throw new RangeError(`sendString: character ${i} (U+${code.toString(16)}) is not one byte`);
      }
      bytes[i] = code;
    }
    this.send(bytes);
  }
  /**
   * Resolves once `bufferedAmount` is at most `threshold` bytes (at once if it already is); rejects if the
   * connection closes first. A sender that awaits this between messages keeps the browser's buffer bounded.
   */
  drain(threshold = 0) {
    const socket = this.#openSocket("drain");
    return new Promise((resolve, reject) => {
      let delay = 1;
      const check = () => {
        if (socket.readyState !== WebSocket.OPEN) {
          reject(
            new Error(
              `Websock.drain: the connection closed with ${socket.bufferedAmount} bytes unsent`,
            ),
          );
        } else if (socket.bufferedAmount <= threshold) {
          resolve();
        } else {
          // The WebSocket API has no drain event: look again, less often while it stays full.
          delay = Math.min(delay * 2, 50);
          setTimeout(check, delay);
        }
      };
      check();
    });
  }
  // ---- the receive queue ------------------------------------------------------------------------------------
  /** The number of unread bytes. */
  rQlen() {
    return this.#rQlen - this.#rQi;
  }
  /** The next byte, left in the queue. */
  rQpeek8() {
    this.#need(1, "rQpeek8");
    return this.#rQ[this.#rQi];
  }
  /** Takes one byte. */
  rQshift8() {
    this.#need(1, "rQshift8");
    return this.#rQ[this.#rQi++];
  }
  /** Takes a 16-bit big-endian unsigned number. */
  rQshift16() {
    this.#need(2, "rQshift16");
    const q = this.#rQ, i = this.#rQi;
    this.#rQi += 2;
    return (q[i] << 8) | q[i + 1];
  }
  /** Takes a 32-bit big-endian unsigned number. */
  rQshift32() {
    this.#need(4, "rQshift32");
    const q = this.#rQ, i = this.#rQi;
    this.#rQi += 4;
    return ((q[i] << 24) | (q[i + 1] << 16) | (q[i + 2] << 8) | q[i + 3]) >>> 0;
  }
  /** Takes `length` bytes (all unread bytes by default), as a new array. */
  rQshiftBytes(length = this.rQlen()) {
    const bytes = this.rQpeekBytes(length);
    this.#rQi += length;
    return bytes;
  }
  /** Copies the next `length` bytes (all unread bytes by default), left in the queue. */
  rQpeekBytes(length = this.rQlen()) {
    this.#need(length, "rQpeekBytes");
    return this.#rQ.slice(this.#rQi, this.#rQi + length);
  }
  /** Takes `length` bytes (all by default) into `target` (at its start). */
  rQshiftTo(target, length = this.rQlen()) {
    this.#need(length, "rQshiftTo");
    target.set(this.#rQ.subarray(this.#rQi, this.#rQi + length));
    this.#rQi += length;
  }
  /**
   * Takes `length` bytes (all by default) as a string of character codes 0-255, one per byte (latin1, as
   * noVNC's `rQshiftStr`). For UTF-8 text, decode `rQshiftBytes(length)` with a TextDecoder.
   */
  rQshiftStr(length = this.rQlen()) {
    return latin1(this.rQshiftBytes(length));
  }
  /** Drops the next `length` bytes. */
  rQskipBytes(length) {
    this.#need(length, "rQskipBytes");
    this.#rQi += length;
  }
  /**
   * Whether to wait for more data: true when fewer than `length` bytes are unread. Then, with `goback`, the
   * last `goback` bytes taken are put back first (the header just read, so that the next message handler reads
   * it again); only bytes taken since the current message arrived can be put back, else it throws (`message`
   * names the wait in the error). False means `length` bytes can be read now.
   */
  rQwait(message, length, goback = 0) {
    if (this.rQlen() >= length) {
      return false;
    }
    if (goback) {
      if (this.#rQi < goback) {
        throw new RangeError(
          `rQwait (${message}): cannot go back ${goback} bytes, only ${this.#rQi}`,
        );
      }
      this.#rQi -= goback;
    }
    return true;
  }
  // ---- private ----------------------------------------------------------------------------------------------
  #openSocket(what) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      throw new Error(`Websock.${what}: the connection is ${this.readyState}, not open`);
    }
    return socket;
  }
  #need(length, what) {
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`${what}: a byte count, not ${length}`);
    }
    if (length > this.rQlen()) {
      throw new RangeError(`${what}: ${length} bytes asked, ${this.rQlen()} in the queue`);
    }
  }
  #receive(data) {
    let bytes;
    try {
      bytes = typeof data === "string"
        ? (this.#mode === "base64" ? fromBase64(data) : new TextEncoder().encode(data))
        : new Uint8Array(data);
      this.#append(bytes);
    } catch (error) {
      this.#handlers.error(error instanceof Error ? error : new Error(String(error)));
      // 1009 and 1007 are the protocol's codes for these, but the WebSocket API only lets a page send 1000 and
      // 3000-4999: 4000 + the protocol's code.
      this.close(error instanceof QueueFullError ? 4009 : 4007, "Websock: message refused");
      return;
    }
    if (bytes.length === 0) {
      return;
    }
    try {
      this.#handlers.message();
    } catch (error) {
      this.#handlers.error(error instanceof Error ? error : new Error(String(error)));
    }
    // Everything read: the queue starts again at its beginning.
    if (this.#rQi === this.#rQlen) {
      this.#rQi = this.#rQlen = 0;
    }
  }
  #append(bytes) {
    const unread = this.#rQlen - this.#rQi;
    if (unread + bytes.length > this.#maxQueue) {
      throw new QueueFullError(
        `Websock: receive queue full (${unread} bytes unread, ${bytes.length} arriving, limit ${this.#maxQueue})`,
      );
    }
    if (this.#rQlen + bytes.length > this.#rQ.length) {
      // Move the unread bytes to the front, into a larger queue (doubled) when that is not room enough.
      let size = this.#rQ.length;
      while (size < unread + bytes.length) {
        size *= 2;
      }
      if (size === this.#rQ.length) {
        this.#rQ.copyWithin(0, this.#rQi, this.#rQlen);
      } else {
        const grown = new Uint8Array(size);
        grown.set(this.#rQ.subarray(this.#rQi, this.#rQlen));
        this.#rQ = grown;
      }
      this.#rQi = 0;
      this.#rQlen = unread;
    }
    this.#rQ.set(bytes, this.#rQlen);
    this.#rQlen += bytes.length;
  }
}
/** A message that does not fit in the receive queue. */
class QueueFullError extends Error {
  name = "QueueFullError";
}
/** Bytes as a string of character codes 0-255. */
function latin1(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    text += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return text;
}
/** Decodes base64 text (whitespace ignored), or throws an Error that says so. */
function fromBase64(text) {
  let binary;
  try {
    binary = atob(text.replace(/\s+/g, ""));
  } catch {
    throw new Error(`Websock: a base64 message that is not base64 (${text.length} characters)`);
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}
/** A ws(s):// URL for `url`: relative and http(s) URLs are taken against the page's address. */
function webSocketUrl(url) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const parsed = new URL(String(url), base);
  if (parsed.protocol === "http:") {
    parsed.protocol = "ws:";
  } else if (parsed.protocol === "https:") {
    parsed.protocol = "wss:";
  }
  return parsed.href;
}
