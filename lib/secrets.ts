/**
 * Naming secrets in log lines without writing them: a token is logged as a short hash that an operator holding
 * the token can match (`printf %s "$token" | sha256sum | cut -c1-8`), not read back.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** `sha256:` and the first 8 hex digits of the SHA-256 of `token` (UTF-8). */
export function tokenHash(token: string): string {
  return `sha256:${createHash("sha256").update(token).digest("hex").slice(0, 8)}`;
}
