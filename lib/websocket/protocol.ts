/**
 * The server side of one proxied WebSocket session as pure code: client bytes and target bytes in; what to
 * forward to the target, what to send to the client, and how the session stands, out. No sockets, no timers:
 * the relay (lib/relay.ts) does the I/O and asks this what it means.
 *
 * Rules kept here: the close is sent once and records who ended the session; a client close is echoed (its code,
 * or 1000) after every byte before it was forwarded; pings are answered until we are closing; a protocol error
 * closes with its code and ends the session on the client's next bytes (nothing after a failure is decoded); a
 * message over `maxMessageSize` closes with 1009, nothing more is forwarded, and decoding goes on to the client's
 * close reply;
 * base64 framing both ways; heartbeat accounting (two unanswered pings: dead).
 *
 *     const session = new ServerSession("binary");
 *     for (const action of session.receive(chunk)) ...   // forward / send / end
 *     const frame = session.frameTargetData(buffer, headroom, n);
 *
 * @module
 */

import { Base64MessageDecoder, encodeBase64 } from "./base64.ts";
import {
  CloseCode,
  encodeClosePayload,
  encodeFrame,
  MAX_SERVER_HEADER,
  Opcode,
  writeHeaderBefore,
} from "./frames.ts";
import type { Framing } from "./handshake.ts";
import { deflateMessage, inflateMessage, MessageTooBig } from "./deflate.ts";
import { concatBytes } from "../io.ts";
import { Receiver } from "./receiver.ts";
import { Utf8Validator } from "./utf8.ts";

/** encodeFrame's `rsv` for RSV1 (permessage-deflate: the message is compressed). */
const RSV1 = 4;

/** Who ended the session. */
export type ClosedBy = "client" | "target" | "server" | "client-dropped" | "heartbeat";

/** What the relay must do with one read's worth of client bytes, in this order. */
export type SessionAction =
  /** Write these bytes to the target (a view into the chunk given to `receive`). */
  | { kind: "forward"; bytes: Uint8Array }
  /** Send this frame to the client; `closing` when it is our close frame (the closing wait starts). */
  | { kind: "send"; frame: Uint8Array; closing: boolean }
  /** The client side is finished: once what was sent to it is written, close it. */
  | { kind: "end" };

/** A close frame, ready to send. */
export function closeFrame(code: number, reason = ""): Uint8Array {
  return encodeFrame(Opcode.Close, encodeClosePayload(code, reason));
}

/** The room a target read needs in front of its bytes for `frameTargetData` to frame them in place. */
export const TARGET_HEADROOM = MAX_SERVER_HEADER;

/** Limits on what the client sends. */
export interface SessionLimits {
  /** The largest client message in bytes (as framed on the wire; base64 text counts as sent); 0: no limit. */
  maxMessageSize?: number;
  /** permessage-deflate was agreed (--compress): how the proxy compresses what it sends. */
  deflate?: { windowBits: number };
}

/**
 * With permessage-deflate and no --max-message-size, a client message may still inflate to at most this many
 * bytes (and arrive compressed in at most as many): compressed messages are the one place the proxy must hold a
 * message whole, so they are always bounded.
 */
export const DEFAULT_INFLATE_LIMIT = 16 * 1024 * 1024;

export class ServerSession {
  readonly framing: Framing;
  readonly #receiver: Receiver;
  readonly #deflate: { windowBits: number } | undefined;
  /** The most a compressed client message may inflate to (and be held compressed). */
  readonly #inflateLimit: number;
  /** The compressed pieces of the client message being received (permessage-deflate). */
  #compressed: Uint8Array[] = [];
  #compressedSize = 0;
  readonly #base64 = new Base64MessageDecoder();
  #closeSent = false;
  #closeReceived = false;
  /** The client can no longer be sent anything (it left, or was given up). */
  #clientGone = false;
  /** Client payload still goes to the target (not after a failure or a bad base64 message). */
  #forwarding = true;
  /** The client broke the protocol: its next bytes end the session. */
  #failed = false;
  #unansweredPings = 0;
  #code: number = CloseCode.Abnormal;
  #reason = "Connection closed abnormally";
  #closedBy: ClosedBy = "client-dropped";

  constructor(framing: Framing, limits: SessionLimits = {}) {
    this.framing = framing;
    this.#deflate = limits.deflate;
    this.#inflateLimit = limits.maxMessageSize || DEFAULT_INFLATE_LIMIT;
    this.#receiver = new Receiver({
      maxMessageSize: limits.maxMessageSize,
      perMessageDeflate: limits.deflate !== undefined,
    });
  }

  /** The session's close code (1006 while nobody closed it). */
  get code(): number {
    return this.#code;
  }
  get reason(): string {
    return this.#reason;
  }
  get closedBy(): ClosedBy {
    return this.#closedBy;
  }
  /** A close frame was sent or received: target data is no longer framed to the client. */
  get closing(): boolean {
    return this.#closeSent || this.#closeReceived || this.#clientGone;
  }

  /**
   * Decodes one read of client bytes. Consecutive binary payload pieces are moved together in place in `chunk`,
   * over the frame headers between them, so one read becomes one target write. The forwarded views point into
   * `chunk`: it must not be reused until they have been written.
   */
  receive(chunk: Uint8Array): SessionAction[] {
    if (this.#failed) return [{ kind: "end" }];
    // Any bytes from the client show it is alive: a pong can sit behind data the target was slow to take.
    if (chunk.length > 0) this.#unansweredPings = 0;
    const actions: SessionAction[] = [];
    // Payload is packed towards the front of the chunk: chunk[pending, fill) waits to be forwarded, and what
    // lies before `pending` was already handed out in a forward action, so it is never written over.
    let pending = 0;
    let fill = 0;
    for (const event of this.#receiver.receive(chunk)) {
      switch (event.kind) {
        case "data": {
          if (event.compressed) {
            pending = this.#flush(chunk, pending, fill, actions);
            this.#receiveCompressed(event.payload, event.text, event.messageEnd, actions);
            continue;
          }
          if (this.framing === "base64" && event.text) {
            pending = this.#flush(chunk, pending, fill, actions);
            this.#decodeBase64(event.payload, event.messageEnd, actions);
            continue;
          }
          const piece = event.payload;
          const from = piece.byteOffset - chunk.byteOffset;
          if (from !== fill) chunk.copyWithin(fill, from, from + piece.length);
          fill += piece.length;
          continue;
        }
        case "ping":
          pending = this.#flush(chunk, pending, fill, actions);
          if (!this.closing) {
            actions.push({
              kind: "send",
              frame: encodeFrame(Opcode.Pong, event.payload),
              closing: false,
            });
          }
          continue;
        case "pong":
          this.#unansweredPings = 0;
          continue;
        case "close": {
          pending = this.#flush(chunk, pending, fill, actions);
          this.#closeReceived = true;
          // An echo of the client's close: its code (or 1000 when it sent none) and reason.
          const echo = this.#beginClose(event.code ?? CloseCode.Normal, event.reason, "client");
          if (echo) actions.push({ kind: "send", frame: echo, closing: true });
          actions.push({ kind: "end" });
          return actions;
        }
        case "too-big":
          pending = this.#flush(chunk, pending, fill, actions);
          // Over the limit: nothing more goes to the target. Unlike a protocol error, the frames can still be
          // read, so the client's close reply is seen and the close is clean.
          this.#stopForwarding(CloseCode.TooBig, `Message over ${event.limit} bytes`, actions);
          continue;
        case "error": {
          pending = this.#flush(chunk, pending, fill, actions);
          // The connection has failed: nothing more the client sends can be decoded. Our close goes out; the
          // client's next bytes (its close reply) or its EOF end the session.
          const frame = this.#beginClose(event.code, event.reason, "server");
          if (frame) actions.push({ kind: "send", frame, closing: true });
          this.#forwarding = false;
          this.#failed = true;
          return actions;
        }
      }
    }
    this.#flush(chunk, pending, fill, actions);
    return actions;
  }

  /**
   * Forwards the packed payload chunk[pending, fill), if any; returns the new `pending`. (A method, not a
   * closure in `receive`: that would be an allocation per read.)
   */
  #flush(chunk: Uint8Array, pending: number, fill: number, actions: SessionAction[]): number {
    if (fill > pending && this.#forwarding) {
      actions.push({ kind: "forward", bytes: chunk.subarray(pending, fill) });
    }
    return fill;
  }

  /**
   * A piece of a compressed client message: held (copied: the chunk is reused) until the message ends, then
   * inflated within the limit, checked as UTF-8 if it is text, and forwarded (or base64-decoded).
   */
  #receiveCompressed(
    piece: Uint8Array,
    text: boolean,
    messageEnd: boolean,
    actions: SessionAction[],
  ): void {
    if (!this.#forwarding) return;
    this.#compressedSize += piece.length;
    if (this.#compressedSize > this.#inflateLimit) {
      this.#stopForwarding(CloseCode.TooBig, `Message over ${this.#inflateLimit} bytes`, actions);
      return;
    }
    if (piece.length > 0) this.#compressed.push(piece.slice());
    if (!messageEnd) return;
    const pieces = this.#compressed;
    const whole = pieces.length === 1 ? pieces[0] : concatBytes(pieces);
    this.#compressed = [];
    this.#compressedSize = 0;
    let bytes: Uint8Array;
    try {
      bytes = inflateMessage(whole, this.#inflateLimit);
    } catch (error) {
      if (error instanceof MessageTooBig) {
        this.#stopForwarding(CloseCode.TooBig, `Message over ${this.#inflateLimit} bytes`, actions);
      } else {
        this.#stopForwarding(CloseCode.InvalidData, "Invalid compressed data", actions);
      }
      return;
    }
    if (text && this.framing === "base64") {
      this.#decodeBase64(bytes, true, actions);
      return;
    }
    if (text) {
      const utf8 = new Utf8Validator();
      if (!utf8.push(bytes) || !utf8.end()) {
        this.#stopForwarding(CloseCode.InvalidData, "Invalid UTF-8 in text message", actions);
        return;
      }
    }
    if (bytes.length > 0) actions.push({ kind: "forward", bytes });
  }

  /**
   * A client message that cannot be forwarded (too big, bad compressed data, bad UTF-8 or base64): our close,
   * and nothing more to the target; the frames are still decoded, so the client's close reply ends it cleanly.
   */
  #stopForwarding(code: number, reason: string, actions: SessionAction[]): void {
    this.#compressed = [];
    this.#compressedSize = 0;
    const frame = this.#beginClose(code, reason, "server");
    if (frame) actions.push({ kind: "send", frame, closing: true });
    this.#forwarding = false;
  }

  #decodeBase64(payload: Uint8Array, messageEnd: boolean, actions: SessionAction[]): void {
    let bytes: Uint8Array;
    try {
      bytes = this.#base64.push(payload, messageEnd);
    } catch {
      this.#stopForwarding(CloseCode.InvalidData, "Invalid base64 data", actions);
      return;
    }
    if (bytes.length > 0 && this.#forwarding) actions.push({ kind: "forward", bytes });
  }

  /**
   * Target bytes, read into `buffer` after `headroom` (at least TARGET_HEADROOM) bytes: the frame to send to
   * the client (binary: the header written into the headroom, no copy; base64: a new text frame), or undefined
   * when the session is closing and they are dropped.
   */
  frameTargetData(buffer: Uint8Array, headroom: number, n: number): Uint8Array | undefined {
    if (this.closing) return undefined;
    if (this.framing === "base64") {
      const text = new TextEncoder().encode(encodeBase64(buffer.subarray(headroom, headroom + n)));
      const compressed = this.#deflate && deflateMessage(text, this.#deflate.windowBits);
      return compressed
        ? encodeFrame(Opcode.Text, compressed, { rsv: RSV1 })
        : encodeFrame(Opcode.Text, text);
    }
    if (this.#deflate) {
      // permessage-deflate: the message compressed when that makes it smaller (RSV1 says so), else as it is.
      const compressed = deflateMessage(
        buffer.subarray(headroom, headroom + n),
        this.#deflate.windowBits,
      );
      if (compressed) return encodeFrame(Opcode.Binary, compressed, { rsv: RSV1 });
    }
    const start = writeHeaderBefore(buffer, headroom, Opcode.Binary, n);
    return buffer.subarray(start, headroom + n);
  }

  /**
   * Closes the session from our side (target EOF 1000, target error 1011, shutdown 1001): the close frame to
   * send, or undefined when a close was already sent or the client is gone. The first close decides the code,
   * the reason and who ended the session.
   */
  close(code: number, reason: string, by: ClosedBy): Uint8Array | undefined {
    return this.#beginClose(code, reason, by);
  }

  /** Client bytes arrived that are not decoded yet: the client is alive (heartbeat accounting). */
  clientActive(): void {
    this.#unansweredPings = 0;
  }

  /** The client left without a close frame (`reason` says how, for the log). Nothing more is sent to it. */
  clientGone(reason?: string): void {
    if (!this.#closeSent && !this.#closeReceived && reason) this.#reason = reason;
    this.#clientGone = true;
  }

  /**
   * A heartbeat tick: an empty ping to send, "dead" when the client sent nothing at all (no pong, no data)
   * since the last two pings (the session ends as closed by the heartbeat), or undefined while closing. With
   * `judge` false the ping is sent but not counted (the client's answer could not be seen yet).
   */
  heartbeat(judge = true): Uint8Array | "dead" | undefined {
    if (this.closing) return undefined;
    if (!judge) return encodeFrame(Opcode.Ping);
    if (this.#unansweredPings >= 2) {
      this.#code = CloseCode.Abnormal;
      this.#reason = "No answer to 2 heartbeat pings";
      this.#closedBy = "heartbeat";
      this.#clientGone = true;
      return "dead";
    }
    this.#unansweredPings++;
    return encodeFrame(Opcode.Ping);
  }

  #beginClose(code: number, reason: string, by: ClosedBy): Uint8Array | undefined {
    if (this.#closeSent || this.#clientGone) return undefined;
    this.#closeSent = true;
    this.#code = code;
    this.#reason = reason;
    this.#closedBy = by;
    return closeFrame(code, reason);
  }
}
