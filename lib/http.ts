/**
 * The little HTTP/1.1 this proxy speaks: reading one request head (size-capped, time-bounded), parsing it, and
 * writing status lines with websockify's HTML error bodies.
 *
 * @module
 */

import type { ByteStream } from "./io.ts";
import { hidePathToken, redactTokens } from "./secrets.ts";
import { escapeControls, escapeHtml } from "./text.ts";

/** A parsed request head. Header names are lower-cased; repeated headers are joined with ", ". */
export interface HttpRequest {
  method: string;
  /** The request target as sent, e.g. `/websockify?token=abc`. */
  target: string;
  /** `HTTP/1.1`, `HTTP/1.0`. */
  version: string;
  headers: Map<string, string>;
}

/** The request head could not be parsed. `message` becomes the status line's reason phrase. */
export class BadRequestError extends Error {
  override name = "BadRequestError";
}

/** Default cap on a request head. Bigger heads get 431. */
export const MAX_HEAD_BYTES = 32 * 1024;

/** Index just past the blank line that ends a head (CRLF CRLF, or bare LF LF as lenient servers accept), or -1. */
export function findHeadEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(from, 1); i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (bytes[i - 1] === 0x0a) return i + 1;
    if (bytes[i - 1] === 0x0d && i >= 2 && bytes[i - 2] === 0x0a) return i + 1;
  }
  return -1;
}

const latin1 = new TextDecoder("latin1");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses a complete request head (the bytes up to and including the blank line). Throws BadRequestError. */
export function parseRequestHead(head: Uint8Array): HttpRequest {
  const lines = latin1.decode(head).split(/\r?\n/);
  const requestLine = lines[0];
  const parts = requestLine.split(" ");
  if (parts.length !== 3 || !TOKEN.test(parts[0]) || parts[1] === "") {
    // The line is quoted in the log: a token in it (query or path) is named by its hash.
    const shown = redactTokens(requestLine).split(" ").map(hidePathToken).join(" ");
    throw new BadRequestError(`Bad request syntax (${JSON.stringify(shown.slice(0, 80))})`);
  }
  const [method, target, version] = parts;
  if (!/^HTTP\/1\.[0-9]$/.test(version)) {
    throw new BadRequestError(`Bad request version (${JSON.stringify(version.slice(0, 20))})`);
  }
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      // Only the name is quoted: the value may be a secret (a cookie, a token header, credentials).
      throw new BadRequestError(
        colon > 0
          ? `Bad header line (name ${JSON.stringify(name.slice(0, 40))})`
          : "Bad header line (no colon)",
      );
    }
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    const previous = headers.get(key);
    headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  return { method, target, version, headers };
}

/** How reading a head ended. `rest` holds bytes that followed the head (e.g. the first WebSocket frames). */
export type HeadResult =
  | { kind: "head"; head: Uint8Array; rest: Uint8Array }
  | { kind: "closed" }
  | { kind: "too-large" };

/**
 * Reads until the end of a request head. Grows its buffer as bytes arrive, so a head split over many small
 * writes works and an idle connection costs a small buffer. The caller bounds the time (by closing the stream).
 */
export async function readRequestHead(
  stream: ByteStream,
  initial: Uint8Array = new Uint8Array(0),
  maxBytes = MAX_HEAD_BYTES,
): Promise<HeadResult> {
  let buffer = new Uint8Array(Math.min(Math.max(1024, initial.length * 2), maxBytes + 1));
  buffer.set(initial);
  let fill = initial.length;
  let searched = 0;
  while (true) {
    const end = findHeadEnd(buffer.subarray(0, fill), Math.max(0, searched - 3));
    if (end >= 0) {
      if (end > maxBytes) return { kind: "too-large" };
      return { kind: "head", head: buffer.subarray(0, end), rest: buffer.slice(end, fill) };
    }
    if (fill > maxBytes) return { kind: "too-large" };
    searched = fill;
    if (fill === buffer.length) {
      const grown = new Uint8Array(Math.min(buffer.length * 2, maxBytes + 1));
      grown.set(buffer);
      buffer = grown;
    }
    const n = await stream.read(buffer.subarray(fill));
    if (n === null) return { kind: "closed" };
    fill += n;
  }
}

/** Reason phrases for the statuses this server sends. */
export const STATUS_TEXT: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  206: "Partial Content",
  301: "Moved Permanently",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  416: "Range Not Satisfiable",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};

/** What Python's http.server explains under each error page. */
const STATUS_EXPLANATION: Record<number, string> = {
  400: "Bad request syntax or unsupported method.",
  404: "Nothing matches the given URI.",
  405: "Specified method is invalid for this resource.",
  426: "The client should switch to a different protocol.",
  431: "The server refused this request because the request header fields are too large.",
  501: "Server does not support this operation.",
};

export const SERVER_NAME = `WebSockify Deno/${Deno.version.deno}`;

const encoder = new TextEncoder();

/**
 * Encodes a response head (and body). Reason phrases and header values may quote the client's bytes, so control
 * characters in them are written as escapes (`\x1b`, `\r`): RFC 9112 allows none there, and CR/LF would split the
 * head.
 */
export function formatResponse(
  status: number,
  reason: string,
  headers: [string, string][],
  body?: Uint8Array,
): Uint8Array {
  const safeReason = escapeControls(reason);
  let text = `HTTP/1.1 ${status} ${safeReason}\r\nServer: ${SERVER_NAME}\r\nDate: ${
    new Date().toUTCString()
  }\r\n`;
  for (const [name, value] of headers) text += `${name}: ${escapeControls(value)}\r\n`;
  text += "\r\n";
  const head = encoder.encode(text);
  if (!body || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * An error response in the shape of Python's http.server: the reason phrase is the message, a small HTML page,
 * `Connection: close`. HEAD responses get the headers only.
 */
export function errorResponse(
  status: number,
  message = STATUS_TEXT[status] ?? "Error",
  extraHeaders: [string, string][] = [],
  withBody = true,
): Uint8Array {
  const explanation = STATUS_EXPLANATION[status] ?? STATUS_TEXT[status] ?? "";
  const body = encoder.encode(
    `<!DOCTYPE HTML>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error response</title>\n` +
      `</head>\n<body>\n<h1>Error response</h1>\n<p>Error code: ${status}</p>\n` +
      `<p>Message: ${escapeHtml(message)}.</p>\n<p>Error code explanation: ${status} - ${
        escapeHtml(explanation)
      }</p>\n</body>\n</html>\n`,
  );
  return formatResponse(status, message, [
    ["Connection", "close"],
    ["Content-Type", "text/html;charset=utf-8"],
    ["Content-Length", String(body.length)],
    ...extraHeaders,
  ], withBody ? body : undefined);
}
