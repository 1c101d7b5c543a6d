/**
 * An auth plugin: the client must send `Authorization: Bearer <secret>`. The secret is --auth-source, or, with
 * --auth-source @FILE, the first line of FILE (a command line is visible to every user of the machine).
 * A missing or wrong token gets 401 with a WWW-Authenticate challenge (RFC 6750).
 *
 *     deno task start 6080 localhost:5900 --auth-plugin ./examples/plugins/auth_bearer.ts \
 *       --auth-source @/etc/websockify/bearer
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { AuthRefusal, AuthRequest } from "../../lib/plugin_api.ts";

let expected: Uint8Array | undefined;

/** The secret's SHA-256: compared in constant time, whatever the lengths. */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

export async function init(source?: string): Promise<void> {
  if (!source) throw new Error("needs --auth-source SECRET or --auth-source @FILE");
  const secret = source.startsWith("@")
    ? (await Deno.readTextFile(source.slice(1))).split(/\r?\n/)[0]
    : source;
  if (!secret) throw new Error("the secret is empty");
  expected = digest(secret);
}

export function auth(request: AuthRequest): AuthRefusal | undefined {
  const header = request.headers.get("authorization") ?? "";
  const match = header.match(/^Bearer[ \t]+(\S+)[ \t]*$/i);
  if (!match) {
    return {
      status: 401,
      headers: { "WWW-Authenticate": 'Bearer realm="websockify"' },
      log: "no bearer token",
    };
  }
  if (!expected || !timingSafeEqual(digest(match[1]), expected)) {
    return {
      status: 401,
      headers: { "WWW-Authenticate": 'Bearer realm="websockify", error="invalid_token"' },
      log: "wrong bearer token",
    };
  }
  return undefined; // allowed
}
