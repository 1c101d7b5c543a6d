/**
 * What a connection's first bytes say it is, and the one answer given before any HTTP: the Flash cross-domain
 * policy of old web-socket-js clients.
 *
 * @module
 */

import type { Deadline } from "./deadline.ts";
import { type ByteStream, writeAll } from "./io.ts";

/** `tls`: a TLS ClientHello (0x16, or 0x80 for the SSLv2-style hello); `policy`: maybe the Flash request. */
export type FirstBytes = "tls" | "policy" | "plain";

/** Classifies a connection by its first byte. */
export function classifyFirstBytes(first: Uint8Array): FirstBytes {
  if (first[0] === 0x16 || first[0] === 0x80) return "tls";
  if (first[0] === 0x3c) return "policy";
  return "plain";
}

/**
 * One read of at most `size` bytes; undefined at EOF. The bytes come in an array of their own size (a view
 * would keep the whole read buffer alive as long as anything keeps the bytes).
 */
export async function readSome(stream: ByteStream, size: number): Promise<Uint8Array | undefined> {
  const buffer = new Uint8Array(size);
  const n = await stream.read(buffer);
  return n === null ? undefined : buffer.slice(0, n);
}

/** Old Flash clients (web-socket-js) asked for this before connecting. */
const FLASH_REQUEST = "<policy-file-request/>";
const FLASH_POLICY = new TextEncoder().encode(
  '<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>\0',
);
const latin1 = new TextDecoder("latin1");

/**
 * The Flash cross-domain policy request: answered, then the connection is done (undefined). Anything else: the
 * bytes read so far, for the HTTP parser. More bytes are read within the connection's deadline.
 */
export async function answerFlashPolicy(
  stream: ByteStream,
  first: Uint8Array,
  deadline: Deadline,
): Promise<Uint8Array | undefined> {
  let bytes = first;
  while (bytes.length < FLASH_REQUEST.length && FLASH_REQUEST.startsWith(latin1.decode(bytes))) {
    const more = await deadline.race(readSome(stream, 64));
    if (!more) return undefined;
    const joined = new Uint8Array(bytes.length + more.length);
    joined.set(bytes);
    joined.set(more, bytes.length);
    bytes = joined;
  }
  if (!latin1.decode(bytes).startsWith(FLASH_REQUEST)) return bytes;
  await writeAll(stream, FLASH_POLICY).catch(() => {});
  return undefined;
}
