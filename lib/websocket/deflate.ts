/**
 * permessage-deflate (RFC 7692) for `--compress`: the negotiation (pure), and the two directions' codecs over
 * Deno's node:zlib (raw deflate, a sync flush per message: no hand-written deflate).
 *
 * The choices, and why:
 * - Client to proxy: the response asks for `client_no_context_takeover`, so each client message is compressed on
 *   its own; the proxy inflates it in one call with an output bound (`maxOutputLength`): a message that would
 *   inflate past `--max-message-size` fails at the bound, before it is inflated whole (a deflate bomb costs
 *   nothing), and no inflate state is kept between messages (no memory per idle session). Client messages of
 *   the traffic this carries (keystrokes, pointer events, requests) are small: context gains little there.
 * - Proxy to client: one deflate stream per session, with context takeover (what the target sends, a terminal's
 *   screen or a log, repeats across messages: that is where compression pays), its window set by
 *   `server_max_window_bits` (DEFLATE_WINDOW_BITS unless the client asks for less) and a small memLevel, so its
 *   memory is bounded and stated (README).
 *
 * @module
 */

import zlib from "node:zlib";

/** One extension offer (or response) from Sec-WebSocket-Extensions: its name and parameters. */
export interface ExtensionOffer {
  name: string;
  /** Parameter -> value (`true` for a parameter without a value). */
  params: Map<string, string | true>;
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
          const end = value.indexOf('"', at + 1);
          if (end === -1) return undefined;
          paramValue = value.slice(at + 1, end);
          at = end + 1;
        } else {
          const text = readToken();
          if (text === undefined) return undefined;
          paramValue = text;
        }
      }
      if (params.has(param.toLowerCase())) return undefined; // a parameter given twice: not a valid offer
      params.set(param.toLowerCase(), paramValue);
      skipSpace();
    }
    offers.push({ name: name.toLowerCase(), params });
    skipSpace();
    if (at < value.length && value[at] !== ",") return undefined;
    at++;
  }
  return offers;
}

/** What was agreed for a session. */
export interface DeflateAgreement {
  /** The window our deflate stream uses (8 is used as 9, as zlib requires). */
  serverWindowBits: number;
  /** Whether our deflate stream is reset after each message (the client asked). */
  serverNoContextTakeover: boolean;
  /** The Sec-WebSocket-Extensions value of the 101. */
  response: string;
}

/** The proxy's own deflate window unless the client asks for less: 8 KiB (see the module comment). */
export const DEFLATE_WINDOW_BITS = 13;
/** zlib's memLevel for the proxy's deflate stream (1-9; 8 is zlib's default). */
export const DEFLATE_MEM_LEVEL = 7;

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
    if (offer.name !== "permessage-deflate") continue;
    let serverWindowBits = DEFLATE_WINDOW_BITS;
    let serverNoContextTakeover = false;
    let acceptable = true;
    for (const [param, value] of offer.params) {
      if (param === "server_no_context_takeover" && value === true) {
        serverNoContextTakeover = true;
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
    const parts = ["permessage-deflate", "client_no_context_takeover"];
    if (serverNoContextTakeover) parts.push("server_no_context_takeover");
    parts.push(`server_max_window_bits=${serverWindowBits}`);
    return {
      serverWindowBits: Math.max(serverWindowBits, 9), // zlib's raw deflate does not do 8
      serverNoContextTakeover,
      response: parts.join("; "),
    };
  }
  return undefined;
}

/** The four bytes a sync flush ends with, which RFC 7692 removes from each message (and the reader puts back). */
const SYNC_TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/** A compressed message that inflates past the bound. */
export class MessageTooBig extends Error {
  override name = "MessageTooBig";
}

/**
 * Inflates one client message (its compressed payload, every frame's piece joined) into at most `limit` bytes;
 * throws MessageTooBig past that (zlib stops there), an Error for data that is not deflate.
 */
export function inflateMessage(compressed: Uint8Array, limit: number): Uint8Array {
  const input = new Uint8Array(compressed.length + SYNC_TAIL.length);
  input.set(compressed);
  input.set(SYNC_TAIL, compressed.length);
  try {
    const output = zlib.inflateRawSync(input, {
      maxOutputLength: Math.max(limit, 1),
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    return new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
  } catch (error) {
    if (error instanceof RangeError || (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new MessageTooBig(`a compressed message inflates past ${limit} bytes`);
    }
    throw new Error(`not deflate data: ${(error as Error).message}`);
  }
}

/**
 * The proxy's side of one session: each message it sends is compressed with a sync flush on one deflate stream
 * (context kept between messages unless the client asked otherwise). One message at a time.
 */
export class MessageDeflater {
  readonly #stream: zlib.DeflateRaw;
  readonly #resetEachMessage: boolean;
  #chunks: Uint8Array[] = [];
  #failure: Error | undefined;

  constructor(agreement: Pick<DeflateAgreement, "serverWindowBits" | "serverNoContextTakeover">) {
    this.#stream = zlib.createDeflateRaw({
      windowBits: agreement.serverWindowBits,
      memLevel: DEFLATE_MEM_LEVEL,
    });
    this.#resetEachMessage = agreement.serverNoContextTakeover;
    this.#stream.on("data", (chunk: Uint8Array) => this.#chunks.push(chunk));
    this.#stream.on("error", (error: Error) => this.#failure = error);
  }

  /** The message's compressed payload (the sync flush's tail removed). */
  compress(data: Uint8Array): Promise<Uint8Array> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#stream.write(data);
      this.#stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        if (this.#failure) return reject(this.#failure);
        const chunks = this.#chunks;
        this.#chunks = [];
        const size = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
        const out = new Uint8Array(size);
        let offset = 0;
        for (const chunk of chunks) {
          out.set(chunk, offset);
          offset += chunk.length;
        }
        if (this.#resetEachMessage) this.#stream.reset();
        // A sync flush ends with 00 00 ff ff; the message carries what comes before it.
        resolve(out.subarray(0, Math.max(out.length - SYNC_TAIL.length, 0)));
      });
    });
  }

  /** Frees the stream's memory. */
  close(): void {
    this.#stream.close();
  }
}
