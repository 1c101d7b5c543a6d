/**
 * Tokens are secrets: a log line names one by a short hash, never in clear. The hash is the first 8 hex digits of
 * the token's SHA-256, written `#1a2b3c4d`: enough to tell sessions apart and to find a known token's lines
 * (`printf %s TOKEN | sha256sum | cut -c1-8`), too little to recover it.
 *
 *     tokenHash("desk-42");                       // "#6e2f0c1b" (say)
 *     redactTokens("/websockify?token=desk-42");  // "/websockify?token=#6e2f0c1b"
 *
 * @module
 */

import { createHash } from "node:crypto";

/** `#` and the first 8 hex digits of the token's SHA-256 (of its UTF-8 bytes). */
export function tokenHash(token: string): string {
  return "#" + createHash("sha256").update(token).digest("hex").slice(0, 8);
}

/**
 * A request target for a log line: the value of every `token=` query parameter replaced by its hash (of the
 * decoded value, the one token plugins see); everything else as sent.
 */
export function redactTokens(target: string): string {
  const question = target.indexOf("?");
  if (question === -1) return target;
  const query = target.slice(question + 1).split("&").map((part) => {
    if (!part.startsWith("token=")) return part;
    const decoded = new URLSearchParams(part).get("token") ?? "";
    return `token=${tokenHash(decoded)}`;
  });
  return `${target.slice(0, question)}?${query.join("&")}`;
}
