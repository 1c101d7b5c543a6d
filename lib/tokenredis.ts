/**
 * TokenRedis: the token is a Redis key (`namespace:token` with a namespace), its value the target. Source and
 * value formats are Python websockify's; the connection is not (see redis.ts: one persistent connection, bounded
 * lookups, back-off while Redis is down).
 *
 * @module
 */

import { resolve } from "node:path";
import { parseTokenTarget } from "./plugins.ts";
import { RedisClient, RespError } from "./redis.ts";
import { hideSecret, tokenHash } from "./secrets.ts";
import type { TargetSpec } from "./settings.ts";

/** What a TokenRedis source names. The password is given, or read from the file an `@` names. */
export interface RedisSource {
  hostname: string;
  port: number;
  db: number;
  password: string | { file: string } | undefined;
  namespace: string;
  tls: boolean;
}

export const REDIS_SOURCE_FORMAT = "host[:port[:db[:password[:namespace[:ssl]]]]]";

/**
 * Splits a source at its colons, as Python's `parse_source_args` does: a field that is wholly wrapped in double
 * quotes (`"a:b"`, between colons or the ends) keeps its colons and loses its quotes; any other quote is an
 * ordinary character.
 */
export function splitSourceFields(source: string): string[] {
  const fields: string[] = [];
  let at = 0;
  for (;;) {
    let end: number;
    let field: string;
    const close = source[at] === '"' ? source.indexOf('"', at + 1) : -1;
    if (close > at + 1 && (close + 1 === source.length || source[close + 1] === ":")) {
      field = source.slice(at + 1, close);
      end = close + 1;
    } else {
      end = source.indexOf(":", at);
      if (end === -1) end = source.length;
      field = source.slice(at, end);
    }
    fields.push(field);
    if (end >= source.length) return fields;
    at = end + 1;
  }
}

const TLS_ON = ["1", "true", "ssl", "yes"];
const TLS_OFF = ["", "0", "false", "no"];

/**
 * Parses `host[:port[:db[:password[:namespace[:ssl]]]]]`; empty fields take the defaults (6379, 0, no password,
 * no namespace, no TLS). A password `@FILE` is read from FILE (relative to `cwd`). Throws, naming the format, for
 * anything else.
 */
export function parseRedisSource(source: string, cwd: string): RedisSource {
  const fields = splitSourceFields(source);
  const bad = (why: string) =>
    new Error(`--token-source '${source}': ${why} (expected ${REDIS_SOURCE_FORMAT})`);
  if (fields.length > 6) throw bad("too many fields");
  const [host, port = "", db = "", password = "", namespace = "", ssl = ""] = fields;
  const hostname = host.replace(/^\[(.*)\]$/, "$1");
  if (hostname === "") throw bad("no host");
  const portNumber = port === "" ? 6379 : Number(port);
  if (
    !/^\d*$/.test(port) || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535
  ) {
    throw bad(`bad port '${port}'`);
  }
  const dbNumber = db === "" ? 0 : Number(db);
  if (!/^\d*$/.test(db) || dbNumber > 2 ** 31) throw bad(`bad db '${db}'`);
  const tlsWord = ssl.toLowerCase();
  if (!TLS_ON.includes(tlsWord) && !TLS_OFF.includes(tlsWord)) {
    throw bad(`bad ssl field '${ssl}' (1, true, ssl or yes to use TLS)`);
  }
  return {
    hostname,
    port: portNumber,
    db: dbNumber,
    password: password === ""
      ? undefined
      : password.startsWith("@")
      ? { file: resolve(cwd, password.slice(1)) }
      : password,
    namespace,
    tls: TLS_ON.includes(tlsWord),
  };
}

/** A parsed source written back in the source syntax (fields with colons quoted); it parses to the same. */
export function formatRedisSource(source: RedisSource): string {
  const quote = (field: string) => field.includes(":") ? `"${field}"` : field;
  const password = source.password === undefined
    ? ""
    : typeof source.password === "object"
    ? `@${source.password.file}`
    : source.password;
  return [
    quote(source.hostname),
    String(source.port),
    String(source.db),
    quote(password),
    quote(source.namespace),
    source.tls ? "ssl" : "",
  ].join(":");
}

/**
 * A stored value as a target: JSON `{"host": "h:p"}` (or `{"host": "h", "port": p}`) or plain `h:p`, blanks
 * around it allowed; IPv6 as `[v6]:p`. Undefined for anything else.
 */
export function redisTarget(value: string): TargetSpec | undefined {
  const text = value.trim();
  if (text.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof parsed !== "object" || parsed === null) return undefined;
    const { host, port } = parsed as { host?: unknown; port?: unknown };
    if (typeof host !== "string") return undefined;
    const target = port === undefined ? parseTokenTarget(host) : parseTokenTarget(
      `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`,
    );
    return target?.kind === "tcp" ? target : undefined;
  }
  const target = parseTokenTarget(text);
  return target?.kind === "tcp" ? target : undefined;
}

/** How a TokenRedis plugin reports what it found. */
export interface RedisTokens {
  readonly name: "TokenRedis";
  lookup(token: string): Promise<TargetSpec | undefined>;
  close(): void;
  reload(): Promise<void>;
}

/**
 * The TokenRedis plugin over a parsed source (the password file, if any, is read here, once). It tries Redis
 * once at start: a Redis that is down or refuses the password is a warning, not a failure to start (sessions
 * are refused until it answers).
 */
export async function redisTokens(
  source: RedisSource,
  warn: (message: string) => void,
): Promise<RedisTokens> {
  const readPassword = async () =>
    typeof source.password === "object"
      ? (await Deno.readTextFile(source.password.file)).replace(/\r?\n$/, "")
      : source.password;
  let password = await readPassword();
  const connect = () =>
    new RedisClient({
      hostname: source.hostname,
      port: source.port,
      tls: source.tls,
      password,
      db: source.db,
    });
  let client = connect();
  const prefix = source.namespace === "" ? "" : `${source.namespace}:`;
  try {
    const reply = await client.command(["PING"]);
    if (reply instanceof RespError) throw new Error(reply.message);
  } catch (error) {
    warn(
      `TokenRedis: Redis ${client.address} does not answer now (${
        (error as Error).message
      }); sessions with tokens are refused until it does`,
    );
  }
  return {
    name: "TokenRedis",
    async lookup(token) {
      const key = prefix + token;
      // Redis's words may quote the key: "ERR unknown command 'GET', with args beginning with: 'ns:...'" where
      // GET is renamed away. The log names the token by its hash, never in clear (secrets.ts).
      const failure = (why: string) =>
        new Error(
          `Redis ${client.address}: ${
            hideSecret(hideSecret(why, key, tokenHash(token)), token, tokenHash(token))
          }`,
        );
      let reply;
      try {
        reply = await client.command(["GET", key]);
      } catch (error) {
        throw failure((error as Error).message);
      }
      if (reply === null) return undefined;
      if (reply instanceof RespError) throw failure(reply.message);
      const target = typeof reply === "string" ? redisTarget(reply) : undefined;
      if (!target) {
        throw new Error(
          `Redis ${client.address}: the value of the token's key is not a target ({"host": "h:p"} or h:p expected)`,
        );
      }
      return target;
    },
    close: () => client.close(),
    // SIGHUP: a password file that changed (a rotated secret) gives a new connection; lookups under way finish
    // on the old one.
    async reload() {
      const now = await readPassword();
      if (now === password) return;
      password = now;
      const old = client;
      client = connect();
      Deno.unrefTimer(setTimeout(() => old.close(), 5000));
    },
  };
}
