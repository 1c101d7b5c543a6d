/**
 * Tokens are secrets: a log line names one by a short hash, never in clear. The hash is the first 8 hex digits of
 * the token's SHA-256, written `#1a2b3c4d`: enough to tell sessions apart and to find a known token's lines
 * (`printf %s TOKEN | sha256sum | cut -c1-8`), too little to recover it.
 *
 *     tokenHash("desk-42");                       // "#6e2f0c1b" (say)
 *     redactTokens("/websockify?token=desk-42");  // "/websockify?token=#6e2f0c1b"
 *     redactTokens("/websockify/desk-42", true);  // "/websockify/#6e2f0c1b"
 *
 * @module
 */

import { createHash } from "node:crypto";
import { rawPathToken } from "./token_from.ts";

/** `#` and the first 8 hex digits of the token's SHA-256 (of its UTF-8 bytes). */
export function tokenHash(token: string): string {
  return "#" + createHash("sha256").update(token).digest("hex").slice(0, 8);
}

/**
 * A request target for a log line: every `token` query parameter becomes `token=` and the hash of its value (of the
 * token a plugin sees: the name and value decoded, a trailing newline dropped, as lib/token_from.ts `queryToken`
 * reads it), however the request spells the name (`%74oken=`); everything else as sent. A fragment is split the
 * same way: a token there is not used, but is still a secret. With `hidePath` (`--token-from path`), the path's
 * token (`/websockify/TOKEN`, as lib/token_from.ts `pathToken` reads it) becomes its hash too.
 */
export function redactTokens(target: string, hidePath = false): string {
  if (hidePath) target = hidePathToken(target);
  const question = target.indexOf("?");
  if (question === -1) return target;
  const rest = target.slice(question + 1).replace(/[^&#]+/g, (part) => {
    if (!part.includes("=")) return part;
    const [entry] = new URLSearchParams(part);
    if (entry?.[0] !== "token") return part;
    return `token=${tokenHash(entry[1].replace(/[\r\n]+$/, ""))}`;
  });
  return `${target.slice(0, question + 1)}${rest}`;
}

/**
 * A request target with its path's token segment, if it has one (lib/token_from.ts `rawPathToken`), as the hash
 * of the decoded token (of the raw one if its encoding is broken); the query is left as it is.
 */
export function hidePathToken(target: string): string {
  const end = target.search(/[?#]/);
  const path = end === -1 ? target : target.slice(0, end);
  const raw = rawPathToken(path);
  if (raw === undefined) return target;
  let token = raw;
  try {
    token = decodeURIComponent(raw);
  } catch {
    // Not a token a plugin would see, but hidden all the same.
  }
  return `${path.slice(0, path.length - raw.length)}${tokenHash(token)}${
    target.slice(path.length)
  }`;
}

/**
 * `text` with the secret's characters replaced by `name` wherever they show: whole, or cut (a server quoting the
 * start of what it got), or in pieces (a server that replaced some characters, as Redis does CR and LF in its
 * error lines). A run of text is hidden when each of its characters is inside a copy of some 6-character piece of
 * the secret (of the whole secret, if shorter).
 */
export function hideSecret(text: string, secret: string, name: string): string {
  if (secret === "") return text;
  const width = Math.min(secret.length, 6);
  const pieces = new Set<string>();
  for (let i = 0; i + width <= secret.length; i++) pieces.add(secret.slice(i, i + width));
  const hidden = new Uint8Array(text.length);
  for (let i = 0; i + width <= text.length; i++) {
    if (pieces.has(text.slice(i, i + width))) hidden.fill(1, i, i + width);
  }
  let out = "";
  for (let i = 0; i < text.length; i++) {
    if (!hidden[i]) out += text[i];
    else if (i === 0 || !hidden[i - 1]) out += name;
  }
  return out;
}
