/**
 * A streaming RFC 6455 frame decoder (sans I/O): feed it bytes as they arrive, get events back.
 *
 * Data payloads are unmasked in place and handed out as views into the chunk that was fed, piece by piece, so a
 * message is never buffered whole and an announced huge length allocates nothing. Only control frames (at most
 * 125 bytes) and a partial header (at most 14 bytes) are kept between calls. With `maxMessageSize`, a message is
 * judged by the frame headers as they come (the sizes they announce, added up over its fragments): the frame that
 * would take it past the limit is reported (`too-big`) before any of its payload is handed out, and the rest of
 * that message is skipped, while decoding goes on (the peer's close reply is still read).
 *
 * @example
 * ```ts
 * const receiver = new Receiver();
 * for (const event of receiver.receive(chunk)) {
 *   if (event.kind === "data") await target.write(event.payload); // use it before the next receive()
 * }
 * ```
 *
 * @module
 */

import {
  applyMask,
  CloseCode,
  isSendableCloseCode,
  MAX_CONTROL_PAYLOAD,
  Opcode,
} from "./frames.ts";
import { Utf8Validator } from "./utf8.ts";

/** What the decoder found in the bytes it was fed. */
export type ReceiverEvent =
  /** A piece of a data message. `payload` is a view into the fed chunk: use it before the next `receive`. */
  /** With permessage-deflate, `compressed` marks a compressed message's (still compressed) pieces. */
  | { kind: "data"; payload: Uint8Array; text: boolean; messageEnd: boolean; compressed?: boolean }
  | { kind: "ping"; payload: Uint8Array }
  | { kind: "pong"; payload: Uint8Array }
  /** A close frame. `code` is undefined when the frame carried no status. */
  | { kind: "close"; code: number | undefined; reason: string }
  /** A protocol violation: close the connection with this code and reason. The receiver stops decoding. */
  | { kind: "error"; code: number; reason: string }
  /**
   * A message larger than `maxMessageSize` (close with 1009): none of it past the frames already handed out is
   * given; the rest of the message is skipped and decoding goes on.
   */
  | { kind: "too-big"; limit: number };

export interface ReceiverOptions {
  /** Reject unmasked frames (a server must). Default true. */
  requireMask?: boolean;
  /** The largest data message (its fragments' payloads added up) in bytes; 0: no limit. Default 0. */
  maxMessageSize?: number;
  /**
   * permessage-deflate was negotiated: RSV1 on a message's first frame marks it compressed (its pieces are
   * handed out as they come, still compressed, and its UTF-8 is for the inflater to check). Default false.
   */
  perMessageDeflate?: boolean;
}

const enum State {
  Header,
  Payload,
  Failed,
}

const MAX_HEADER = 14;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The decoder. One per connection direction. */
export class Receiver {
  readonly #requireMask: boolean;
  readonly #maxMessageSize: number;
  readonly #perMessageDeflate: boolean;
  /** The current message came with RSV1 (permessage-deflate). */
  #messageCompressed = false;
  #state = State.Header;

  // Header bytes gathered so far (a header may be split between reads).
  readonly #header = new Uint8Array(MAX_HEADER);
  #headerFill = 0;

  // The frame being read.
  #fin = false;
  #opcode = 0;
  #masked = false;
  readonly #mask = new Uint8Array(4);
  #maskPhase = 0;
  #remaining = 0;

  // The data message in progress (fragmentation state).
  #inMessage = false;
  #messageIsText = false;
  /** Payload bytes the message in progress has announced so far (its frames' lengths). */
  #messageSize = 0;
  /** The message in progress went over the limit: its payload is skipped. */
  #skipping = false;
  readonly #utf8 = new Utf8Validator();

  // A control frame's payload, gathered until complete.
  #control: Uint8Array | undefined;
  #controlFill = 0;

  constructor(options: ReceiverOptions = {}) {
    this.#requireMask = options.requireMask ?? true;
    this.#maxMessageSize = options.maxMessageSize ?? 0;
    this.#perMessageDeflate = options.perMessageDeflate ?? false;
  }

  /** True once a protocol error was reported; further input is ignored. */
  get failed(): boolean {
    return this.#state === State.Failed;
  }

  /**
   * Decodes `chunk`, unmasking payload bytes in place (the chunk is modified). Returns the events in order.
   * After an `error` event nothing more is decoded.
   */
  receive(chunk: Uint8Array): ReceiverEvent[] {
    const events: ReceiverEvent[] = [];
    let offset = 0;
    while (offset < chunk.length && this.#state !== State.Failed) {
      if (this.#state === State.Header) {
        offset = this.#readHeader(chunk, offset, events);
      } else {
        offset = this.#readPayload(chunk, offset, events);
      }
    }
    return events;
  }

  #fail(events: ReceiverEvent[], code: number, reason: string): void {
    this.#state = State.Failed;
    events.push({ kind: "error", code, reason });
  }

  #readHeader(chunk: Uint8Array, offset: number, events: ReceiverEvent[]): number {
    const header = this.#header;
    // Gather the 2 fixed bytes, then as many more as they announce.
    while (this.#headerFill < 2 && offset < chunk.length) {
      header[this.#headerFill++] = chunk[offset++];
    }
    if (this.#headerFill < 2) return offset;
    const length7 = header[1] & 0x7f;
    const masked = (header[1] & 0x80) !== 0;
    const needed = 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    while (this.#headerFill < needed && offset < chunk.length) {
      header[this.#headerFill++] = chunk[offset++];
    }
    if (this.#headerFill < needed) return offset;
    this.#headerFill = 0;

    const fin = (header[0] & 0x80) !== 0;
    const rsv = header[0] & 0x70;
    const opcode = header[0] & 0x0f;
    let position = 2;
    let length = length7;
    if (length7 === 126) {
      length = (header[2] << 8) | header[3];
      position = 4;
    } else if (length7 === 127) {
      const high = ((header[2] << 24) | (header[3] << 16) | (header[4] << 8) | header[5]) >>> 0;
      const low = ((header[6] << 24) | (header[7] << 16) | (header[8] << 8) | header[9]) >>> 0;
      if (high >= 0x80000000) {
        this.#fail(
          events,
          CloseCode.ProtocolError,
          "Frame length has its most significant bit set",
        );
        return offset;
      }
      length = high * 0x100000000 + low;
      if (!Number.isSafeInteger(length)) {
        this.#fail(events, CloseCode.TooBig, "Frame too large");
        return offset;
      }
      position = 10;
    }
    if (masked) this.#mask.set(header.subarray(position, position + 4));

    const isControl = (opcode & 0x8) !== 0;
    // RSV1 is permessage-deflate's, on the first frame of a data message only.
    const compressedStart = rsv === 0x40 && this.#perMessageDeflate && !isControl &&
      opcode !== Opcode.Continuation;
    if (rsv !== 0 && !compressedStart) {
      this.#fail(
        events,
        CloseCode.ProtocolError,
        this.#perMessageDeflate
          ? "Reserved bits set where permessage-deflate allows none"
          : "Reserved bits set but no extension negotiated",
      );
    } else if (!isKnownOpcode(opcode)) {
      this.#fail(
        events,
        CloseCode.ProtocolError,
        `Unknown opcode 0x${opcode.toString(16).padStart(2, "0")}`,
      );
    } else if (this.#requireMask && !masked) {
      this.#fail(events, CloseCode.ProtocolError, "Frame not masked");
    } else if (isControl && !fin) {
      this.#fail(events, CloseCode.ProtocolError, "Fragmented control frame");
    } else if (isControl && length > MAX_CONTROL_PAYLOAD) {
      this.#fail(events, CloseCode.ProtocolError, "Control frame payload over 125 bytes");
    } else if (opcode === Opcode.Continuation && !this.#inMessage) {
      this.#fail(events, CloseCode.ProtocolError, "Unexpected continuation frame");
    } else if (!isControl && opcode !== Opcode.Continuation && this.#inMessage) {
      this.#fail(
        events,
        CloseCode.ProtocolError,
        "Unexpected new frame inside a fragmented message",
      );
    }
    if (this.failed) return offset;

    this.#fin = fin;
    this.#opcode = opcode;
    this.#masked = masked;
    this.#maskPhase = 0;
    this.#remaining = length;
    if (isControl) {
      this.#control = new Uint8Array(length);
      this.#controlFill = 0;
    } else {
      if (opcode !== Opcode.Continuation) {
        this.#inMessage = true;
        this.#messageIsText = opcode === Opcode.Text;
        this.#messageCompressed = compressedStart;
        this.#messageSize = 0;
      }
      this.#messageSize += length;
      if (this.#maxMessageSize > 0 && this.#messageSize > this.#maxMessageSize && !this.#skipping) {
        // Judged on the header: none of this frame's payload is handed out.
        this.#skipping = true;
        this.#utf8.reset();
        events.push({ kind: "too-big", limit: this.#maxMessageSize });
      }
    }
    this.#state = State.Payload;
    if (length === 0) this.#finishFrame(new Uint8Array(0), events);
    return offset;
  }

  #readPayload(chunk: Uint8Array, offset: number, events: ReceiverEvent[]): number {
    const take = Math.min(this.#remaining, chunk.length - offset);
    const piece = chunk.subarray(offset, offset + take);
    // (A skipped message's payload is never looked at: no need to unmask it.)
    if (this.#masked && (this.#control || !this.#skipping)) {
      this.#maskPhase = applyMask(piece, this.#mask, this.#maskPhase);
    }
    this.#remaining -= take;
    if (this.#control) {
      this.#control.set(piece, this.#controlFill);
      this.#controlFill += take;
      if (this.#remaining === 0) this.#finishFrame(this.#control, events);
    } else if (this.#remaining === 0) {
      this.#finishFrame(piece, events);
    } else if (take > 0 && !this.#skipping) {
      this.#emitData(piece, false, events);
    }
    return offset + take;
  }

  /** The last piece of the current frame has arrived (possibly empty). */
  #finishFrame(lastPiece: Uint8Array, events: ReceiverEvent[]): void {
    this.#state = State.Header;
    const control = this.#control;
    this.#control = undefined;
    switch (this.#opcode) {
      case Opcode.Ping:
        events.push({ kind: "ping", payload: lastPiece });
        return;
      case Opcode.Pong:
        events.push({ kind: "pong", payload: lastPiece });
        return;
      case Opcode.Close:
        this.#readClose(control ?? lastPiece, events);
        return;
      default:
        if (!this.#skipping) {
          this.#emitData(lastPiece, this.#fin, events);
        } else if (this.#fin) {
          // The skipped message is over: the next one is decoded (and judged) afresh.
          this.#skipping = false;
          this.#inMessage = false;
        }
    }
  }

  #emitData(piece: Uint8Array, messageEnd: boolean, events: ReceiverEvent[]): void {
    const text = this.#messageIsText;
    if (this.#messageCompressed) {
      if (messageEnd) this.#inMessage = false;
      events.push({ kind: "data", payload: piece, text, messageEnd, compressed: true });
      return;
    }
    if (text) {
      const valid = this.#utf8.push(piece) && (!messageEnd || this.#utf8.end());
      if (!valid) {
        this.#utf8.reset();
        this.#fail(events, CloseCode.InvalidData, "Invalid UTF-8 in text message");
        return;
      }
    }
    if (messageEnd) this.#inMessage = false;
    events.push({ kind: "data", payload: piece, text, messageEnd });
  }

  #readClose(payload: Uint8Array, events: ReceiverEvent[]): void {
    if (payload.length === 0) {
      events.push({ kind: "close", code: undefined, reason: "" });
      return;
    }
    if (payload.length === 1) {
      this.#fail(events, CloseCode.ProtocolError, "Close frame with a 1-byte payload");
      return;
    }
    const code = (payload[0] << 8) | payload[1];
    if (!isSendableCloseCode(code)) {
      this.#fail(events, CloseCode.ProtocolError, `Invalid close code ${code}`);
      return;
    }
    let reason: string;
    try {
      reason = decoder.decode(payload.subarray(2));
    } catch {
      this.#fail(events, CloseCode.InvalidData, "Invalid UTF-8 in close reason");
      return;
    }
    events.push({ kind: "close", code, reason });
  }
}

function isKnownOpcode(opcode: number): boolean {
  return opcode <= Opcode.Binary || (opcode >= Opcode.Close && opcode <= Opcode.Pong);
}
