/**
 * Bytes and text for tests: joining chunks, reading a stream to its end, reproducible pseudo-random data, the control characters no log shows
 * raw, a regular expression matching a literal text.
 */

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Reads a stream until EOF (or an error, which ends it too). */
export async function readToEnd(
  stream: { read(buffer: Uint8Array): Promise<number | null> },
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  try {
    while (true) {
      const n = await stream.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
    }
  } catch { /* reset: what arrived is what we have */ }
  return concat(parts);
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Control characters that must never reach a log raw (a newline only ends a line). */
// deno-lint-ignore no-control-regex
export const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** `text` with the regular expression syntax escaped, to match it literally inside a RegExp. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
