/**
 * permessage-deflate (RFC 7692) for `--compress`: the negotiation (pure), and the two directions' codecs over
 * Deno's node:zlib (raw deflate, a sync flush per message: no hand-written deflate).
 *
 * The choice, and why: every message is compressed on its own, both ways (the response asks for
 * `client_no_context_takeover` and gives `server_no_context_takeover`). So no zlib state lives between messages:
 * an idle session costs no compression memory at all (a context kept per session would cost a few hundred KiB
 * each, at thousands of sessions), and each message is one synchronous call that fits the relay's pumps.
 * - Client to proxy: a message is inflated in one call with an output bound (`maxOutputLength`): one that would
 *   inflate past `--max-message-size` fails at the bound, before it is inflated whole (a deflate bomb costs
 *   nothing).
 * - Proxy to client: what one target read gives is one message, compressed when it is at least
 *   MIN_COMPRESSED_SIZE bytes and compression makes it smaller (RSV1 is per message); smaller ones go as they
 *   are. What is lost: repeats across messages (a terminal's small echoes) are not found.
 *
 * @module
 */

import zlib from "node:zlib";

/** One extension offer (or response) from Sec-WebSocket-Extensions: its name and parameters. */
export interface ExtensionOffer {
  name: string;
  /** Parameter -> value (`true` for a parameter without a value). */
  params: Map<string, string | true>;
  /** A parameter was given more than once (the first is in `params`): an offer to decline. */
  repeated?: true;
}

/**
 * Parses a Sec-WebSocket-Extensions value (RFC 6455 §9.1): offers separated by commas, parameters by
 * semicolons, values as tokens or quoted strings. Returns undefined for a value it cannot read.
 */
export function parseExtensions(value: string): ExtensionOffer[] | undefined {
  const offers: ExtensionOffer[] = [];
  let at = 0;
  const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;
  const skipSpace = () => {
    while (value[at] === " " || value[at] === "\t") at++;
  };
  const readToken = (): string | undefined => {
    const match = value.slice(at).match(token);
    if (!match) return undefined;
    at += match[0].length;
    return match[0];
  };
  while (at < value.length) {
    skipSpace();
    if (value[at] === ",") {
      at++; // an empty element
      continue;
    }
    const name = readToken();
    if (!name) return undefined;
    const params = new Map<string, string | true>();
    let repeated = false;
    skipSpace();
    while (value[at] === ";") {
      at++;
      skipSpace();
      const param = readToken();
      if (!param) return undefined;
      skipSpace();
      let paramValue: string | true = true;
      if (value[at] === "=") {
        at++;
        skipSpace();
        if (value[at] === '"') {
          // A quoted string: `\` escapes the character after it (RFC 9110 §5.6.4).
          let text = "";
          at++;
          while (at < value.length && value[at] !== '"') {
            if (value[at] === "\\") at++;
            if (at < value.length) text += value[at++];
          }
          if (at >= value.length) return undefined;
          at++;
          paramValue = text;
        } else {
          const text = readToken();
          if (text === undefined) return undefined;
          paramValue = text;
        }
      }
      // A parameter given twice makes this offer one to decline (RFC 7692 §5), not the whole header.
      if (params.has(param.toLowerCase())) repeated = true;
      else params.set(param.toLowerCase(), paramValue);
      skipSpace();
    }
    offers.push({ name: name.toLowerCase(), params, ...(repeated ? { repeated } : {}) });
    skipSpace();
    if (at < value.length && value[at] !== ",") return undefined;
    at++;
  }
  return offers;
}

/** What was agreed for a session. */
export interface DeflateAgreement {
  /** The window our messages are compressed with (8 is used as 9, as zlib requires). */
  serverWindowBits: number;
  /** The Sec-WebSocket-Extensions value of the 101. */
  response: string;
}

/** The window the proxy compresses with unless the client asks for less: zlib's largest (32 KiB). */
export const DEFLATE_WINDOW_BITS = 15;
/** zlib's memLevel for each message's deflate (1-9; zlib's default). */
export const DEFLATE_MEM_LEVEL = 8;

/** A window-bits value as RFC 7692 allows it: 8 to 15, decimal digits without a leading zero. */
function windowBits(value: string | true): number | undefined {
  if (value === true || !/^(8|9|1[0-5])$/.test(value)) return undefined;
  return Number(value);
}

/**
 * The first permessage-deflate offer the proxy can honour, and the response to it; undefined when there is
 * none (then the session runs uncompressed). An offer with an unknown parameter, a repeated one, or a bad
 * value is declined (RFC 7692 §5).
 */
export function negotiateDeflate(offers: readonly ExtensionOffer[]): DeflateAgreement | undefined {
  for (const offer of offers) {
    if (offer.name !== "permessage-deflate" || offer.repeated) continue;
    let serverWindowBits = DEFLATE_WINDOW_BITS;
    let acceptable = true;
    for (const [param, value] of offer.params) {
      if (param === "server_no_context_takeover" && value === true) {
        // We give it anyway.
      } else if (param === "client_no_context_takeover" && value === true) {
        // We ask for it anyway.
      } else if (param === "server_max_window_bits") {
        const bits = windowBits(value);
        if (bits === undefined) acceptable = false;
        else serverWindowBits = Math.min(serverWindowBits, bits);
      } else if (param === "client_max_window_bits") {
        // With or without a value: the client may use any window up to it; we inflate whatever it uses.
        if (value !== true && windowBits(value) === undefined) acceptable = false;
      } else {
        acceptable = false;
      }
    }
    if (!acceptable) continue;
    return {
      serverWindowBits: Math.max(serverWindowBits, 9), // zlib's raw deflate does not do 8
      response: [
        "permessage-deflate",
        "client_no_context_takeover",
        "server_no_context_takeover",
        `server_max_window_bits=${serverWindowBits}`,
      ].join("; "),
    };
  }
  return undefined;
}

/** The four bytes a sync flush ends with, which RFC 7692 removes from each message (and the reader puts back). */
const SYNC_TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
/**
 * What the reader puts after SYNC_TAIL: an empty final block (BFINAL, fixed Huffman codes, end of block). A whole
 * message (ending, with its tail, on a block boundary) then makes a complete deflate stream; one cut short does
 * not (zlib says "unexpected end of file") instead of passing for a shorter message, or for garbage.
 */
const FINAL_BLOCK = new Uint8Array([0x03, 0x00]);

/** A compressed message that inflates past the bound. */
export class MessageTooBig extends Error {
  override name = "MessageTooBig";
}

/**
 * Inflates one client message (its compressed payload, every frame's piece joined) into at most `limit` bytes;
 * throws MessageTooBig past that (zlib stops there), an Error for data that is not deflate or is cut short. An
 * empty payload is an empty message.
 */
export function inflateMessage(compressed: Uint8Array, limit: number): Uint8Array {
  if (compressed.length === 0) return new Uint8Array(0);
  const input = new Uint8Array(compressed.length + SYNC_TAIL.length + FINAL_BLOCK.length);
  input.set(compressed);
  input.set(SYNC_TAIL, compressed.length);
  input.set(FINAL_BLOCK, compressed.length + SYNC_TAIL.length);
  try {
    const output = zlib.inflateRawSync(input, { maxOutputLength: Math.max(limit, 1) });
    return new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
  } catch (error) {
    if (
      error instanceof RangeError || (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE"
    ) {
      throw new MessageTooBig(`a compressed message inflates past ${limit} bytes`);
    }
    throw new Error(`not deflate data: ${(error as Error).message}`);
  }
}

/** Messages shorter than this go uncompressed: the header and the block cost more than they save. */
export const MIN_COMPRESSED_SIZE = 64;
/** How much of a large message is tried first to see whether it compresses at all. */
const SAMPLE_SIZE = 4096;

/**
 * One message's compressed payload (raw deflate, a sync flush, its 00 00 ff ff tail removed), or undefined
 * when it is too short to gain or compression would not make it smaller (then it goes uncompressed).
 */
export function deflateMessage(data: Uint8Array, windowBits: number): Uint8Array | undefined {
  if (data.length < MIN_COMPRESSED_SIZE) return undefined;
  // Data that does not compress (what Tight or ZRLE already compressed, TLS, media) is found on a sample at
  // zlib's fastest level: trying the whole of it would cost 25 ms per MB for nothing.
  if (data.length >= 2 * SAMPLE_SIZE) {
    const sample = zlib.deflateRawSync(data.subarray(0, SAMPLE_SIZE), {
      level: 1,
      windowBits: 9,
      memLevel: 1,
    });
    if (sample.length > SAMPLE_SIZE * 0.9) return undefined;
  }
  // Each message is compressed on its own: no window (or hash table) larger than the message is of use, and
  // smaller ones cost less memory for the call.
  const bits = Math.min(windowBits, Math.max(9, Math.ceil(Math.log2(data.length))));
  const output = zlib.deflateRawSync(data, {
    windowBits: bits,
    memLevel: Math.min(DEFLATE_MEM_LEVEL, Math.max(1, bits - 6)),
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  const compressed = new Uint8Array(
    output.buffer,
    output.byteOffset,
    output.byteLength - SYNC_TAIL.length,
  );
  return compressed.length < data.length ? compressed : undefined;
}
