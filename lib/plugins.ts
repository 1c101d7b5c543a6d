/**
 * Per-connection target selection (token plugins) and authentication (auth plugins), by Python websockify's
 * names and semantics (reference §5, §6). Python class paths cannot be loaded here; modules written for this
 * proxy can (plugin_modules.ts, their interface in plugin_api.ts). The built-in plugins (their names are typed
 * lists in settings.ts, and the command line refuses any other name) are:
 *
 * - token: `TokenFile` (file or directory, re-read on every lookup), `ReadOnlyTokenFile` (read once),
 *   `TokenFileName` (the token names a file holding `host:port`), `UnixDomainSocketDirectory` (the token names a
 *   unix socket in a directory), `ReverseConnection` (the token is the ID a server that dialed in sent: reverse.ts).
 * - auth: `BasicHTTPAuth` (`user:password`), `ExpectOrigin` (allowed origins), `ClientCertCNAuth` (allowed
 *   client-certificate CNs; needs --verify-client).
 *
 * Quirks of Python's TokenFile fixed here: blank lines are not syntax errors, `[::1]:5900` works, a line's token
 * is trimmed.
 *
 * @module
 */

import { createHash, createPublicKey } from "node:crypto";
import { basename } from "node:path";
import { parsePort, splitHostPort } from "./hostport.ts";
import type { HttpRequest } from "./http.ts";
import { concatBytes } from "./io.ts";
import type { ClientInfo } from "./plugin_api.ts";
import { loadAuthModule, loadTokenModule } from "./plugin_modules.ts";
import type { AuthPluginName, Settings, TargetSpec, TokenPluginName } from "./settings.ts";
import { ReverseConnections } from "./reverse.ts";
import { parseRedisSource, redisTokens } from "./tokenredis.ts";

/** Finds a session's target from its token; undefined when the token is unknown. */
export interface TokenPlugin {
  readonly name: string;
  lookup(token: string, caller: Caller): Promise<TargetSpec | undefined>;
  /** Lets go of what the plugin holds open (TokenRedis: its connection). */
  close?(): void;
  /** SIGHUP: reads its source again (a failure throws; the plugin then serves as before). */
  reload?(): Promise<void>;
}

/** Who asks, for plugins that look beyond the token (modules, plugin_modules.ts). */
export interface Caller {
  /** The request, its headers as sanitizeHeaders gives them. */
  request: HttpRequest;
  client: ClientInfo;
  /** The TLS client certificate's subject CN, when one was verified. */
  clientCertCN: string | undefined;
}

/** The outcome of a token file parse: targets by token, and the lines that were not `token: host:port`. */
export interface ParsedTokens {
  targets: Map<string, TargetSpec>;
  syntaxErrors: number[];
}

/** A target as a token file writes it: `host:port`, `[v6]:port`, `v6:port`, or `unix_socket:/path`. */
export function parseTokenTarget(text: string): TargetSpec | undefined {
  const value = text.trim();
  if (value.startsWith("unix_socket:")) {
    const path = value.slice("unix_socket:".length).trim();
    return path ? { kind: "unix", path } : undefined;
  }
  const parts = splitHostPort(value);
  // Blanks between the colon and the port are allowed (`host: 5900`).
  const port = parts && parsePort(parts.port.trim());
  if (!parts?.host || port === undefined) return undefined;
  return { kind: "tcp", hostname: parts.host, port };
}

/**
 * Parses token file text: `token: target` lines (a colon and one whitespace character separate them), `#`
 * comments, blank lines. Later duplicates win. `firstLine` numbers lines across a directory's files.
 */
export function parseTokenFile(text: string, into: ParsedTokens, firstLine = 1): number {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, i) => {
    if (line.trim() === "" || line.startsWith("#")) return;
    const parts = line.split(/:\s/);
    const target = parts.length >= 2 ? parseTokenTarget(parts.slice(1).join(": ")) : undefined;
    const token = parts[0].trim();
    if (parts.length < 2 || !token || !target) {
      into.syntaxErrors.push(firstLine + i);
      return;
    }
    into.targets.set(token, target);
  });
  return firstLine + lines.length;
}

/**
 * Every token of a file, or of each regular file of a directory (not recursive, in name order), and a digest of
 * what was read (file names and contents), which changes when the source does.
 */
async function readTokens(source: string): Promise<ParsedTokens & { digest: string }> {
  const parsed: ParsedTokens = { targets: new Map(), syntaxErrors: [] };
  const hash = createHash("sha256");
  const info = await Deno.stat(source);
  if (!info.isDirectory) {
    const text = await Deno.readTextFile(source);
    parseTokenFile(text, parsed);
    return { ...parsed, digest: hash.update(text).digest("hex") };
  }
  const names: string[] = [];
  for await (const entry of Deno.readDir(source)) if (entry.isFile) names.push(entry.name);
  let line = 1;
  for (const name of names.sort()) {
    const text = await Deno.readTextFile(`${source}/${name}`);
    hash.update(`${name.length}:${name}${text.length}:`).update(text);
    line = parseTokenFile(text, parsed, line);
  }
  return { ...parsed, digest: hash.digest("hex") };
}

/**
 * Builds a token plugin. Throws with a clear message for a source it cannot use. (The command line has checked
 * the name and that a source was given.)
 */
export async function createTokenPlugin(
  name: TokenPluginName,
  source: string,
  warn: (message: string) => void,
  info: (message: string) => void = () => {},
): Promise<TokenPlugin> {
  switch (name) {
    case "TokenFile": {
      // The syntax errors are reported once per version of the source, not on every lookup.
      let reported: string | undefined;
      return {
        name,
        async lookup(token) {
          // Re-read on every lookup: edits apply without a restart.
          const parsed = await readTokens(source);
          if (parsed.digest !== reported) {
            reported = parsed.digest;
            for (const line of parsed.syntaxErrors) {
              warn(`Syntax error in ${source} on line ${line}`);
            }
          }
          return parsed.targets.get(token);
        },
      };
    }
    case "ReadOnlyTokenFile": {
      // Read once, and again on SIGHUP (a source that cannot be read then leaves the tokens as they were).
      const load = async () => {
        const parsed = await readTokens(source);
        for (const line of parsed.syntaxErrors) warn(`Syntax error in ${source} on line ${line}`);
        return parsed.targets;
      };
      let targets = await load();
      return {
        name,
        lookup: (token) => Promise.resolve(targets.get(token)),
        async reload() {
          targets = await load();
        },
      };
    }
    case "TokenFileName": {
      if (!(await Deno.stat(source)).isDirectory) {
        throw new Error(`--token-source ${source}: not a directory`);
      }
      return {
        name,
        async lookup(token) {
          try {
            return parseTokenTarget(await Deno.readTextFile(`${source}/${basename(token)}`));
          } catch {
            return undefined;
          }
        },
      };
    }
    case "BaseTokenAPI":
    case "JSONTokenApi":
      return tokenService(name, source);
    case "JWTTokenApi":
      return await jwtTokens(source);
    case "TokenRedis":
      return await redisTokens(parseRedisSource(source, Deno.cwd()), warn);
    case "ReverseConnection":
      // Servers dial in to its own listener (reverse.ts); the token is the ID they send.
      return ReverseConnections.open(source, { info, warning: warn });
    case "UnixDomainSocketDirectory": {
      const root = await Deno.realPath(source);
      return {
        name,
        async lookup(token) {
          try {
            const path = await Deno.realPath(`${root}/${basename(token)}`);
            const inside = path.startsWith(root + "/");
            return inside && (await Deno.stat(path)).isSocket ? { kind: "unix", path } : undefined;
          } catch {
            return undefined;
          }
        },
      };
    }
  }
}

/** A token that names no target for a reason worth a line (expired, bad signature, ...): not an error. */
export class TokenRefused extends Error {
  override name = "TokenRefused";
}

/** The signature algorithms a JWT may use; `none`, and JWE (encrypted tokens), never. */
const JWT_PUBLIC_KEY_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
];
const JWT_SECRET_ALGORITHMS = ["HS256", "HS384", "HS512"];

/** A JWTTokenApi key: a public key (from a PEM public or private key) or an HMAC secret. */
type JwtKey =
  | { kind: "pem"; spki: string }
  | { kind: "secret"; bytes: Uint8Array };

/**
 * Reads a JWTTokenApi key file. PEM (a public or a private key; only its public half is kept): RS, PS and ES
 * algorithms. Anything else is an HMAC secret written as Python's websockify reads it, the base64url `k` of a
 * JWK: HS algorithms. Throws with the reason for a file it cannot use.
 */
export function parseJwtKey(text: string, file: string): JwtKey {
  if (text.includes("-----BEGIN")) {
    try {
      const spki = createPublicKey(text).export({ type: "spki", format: "pem" }).toString();
      return { kind: "pem", spki };
    } catch (error) {
      throw new Error(`${file}: not a usable PEM key (${(error as Error).message})`);
    }
  }
  const encoded = text.trim();
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(encoded)) {
    throw new Error(
      `${file}: neither a PEM key nor a base64url secret (the k of an oct JWK, as in Python)`,
    );
  }
  const binary = atob(encoded.replaceAll("-", "+").replaceAll("_", "/").replace(/=+$/, ""));
  return { kind: "secret", bytes: Uint8Array.from(binary, (c) => c.charCodeAt(0)) };
}

/**
 * JWTTokenApi: the token is a compact JWS signed with the key in `source`; its `host` and `port` claims are
 * the target, `nbf` and `exp` are honoured. The key file is read again when it changes (key rotation without a
 * restart). A token that fails says why (expired, bad signature, ...), never what it was.
 */
async function jwtTokens(source: string): Promise<TokenPlugin> {
  // Loaded only for this plugin: every other run starts without it.
  const { errors: joseErrors, importSPKI, jwtVerify } = await import("jose");
  let stamp = "";
  let key: JwtKey | undefined;
  /** Reads the key file again if it changed (its time, size or inode); the first call reads it. */
  const refresh = async (): Promise<JwtKey> => {
    const info = await Deno.stat(source);
    const now = `${info.mtime?.getTime()}:${info.size}:${info.ino}`;
    if (key === undefined || now !== stamp) {
      key = parseJwtKey(await Deno.readTextFile(source), source);
      stamp = now;
    }
    return key;
  };
  await refresh(); // a file that is no key stops the start
  return {
    name: "JWTTokenApi",
    async lookup(token) {
      const current = await refresh();
      let claims: Record<string, unknown>;
      try {
        ({ payload: claims } = current.kind === "pem"
          ? await jwtVerify(token, (header) => importSPKI(current.spki, header.alg), {
            algorithms: JWT_PUBLIC_KEY_ALGORITHMS,
          })
          : await jwtVerify(token, current.bytes, { algorithms: JWT_SECRET_ALGORITHMS }));
      } catch (error) {
        throw new TokenRefused(jwtRefusal(error, joseErrors));
      }
      const target = jsonTarget(JSON.stringify({ host: claims.host, port: claims.port }));
      if (!target) throw new TokenRefused("JWT without a usable host and port claim");
      return target;
    },
  };
}

/** Why jose refused a token, in a few words (its messages can quote the token's claims). */
function jwtRefusal(error: unknown, joseErrors: typeof import("jose").errors): string {
  if (error instanceof joseErrors.JWTExpired) return "JWT expired";
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return `JWT not valid now (${error.claim} claim)`;
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return "JWT signature does not verify";
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "JWT algorithm not allowed";
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) {
    return "not a signed JWT (JWS compact form)";
  }
  return `JWT refused (${(error as Error).name})`;
}

/** How long a token service has to answer (Python's websockify gives its requests 5 s). */
export const TOKEN_SERVICE_TIMEOUT_MS = 5000;
/** A token service's answer is a target: anything longer is not one. */
const TOKEN_SERVICE_MAX_ANSWER = 64 * 1024;

/**
 * BaseTokenAPI and JSONTokenApi: a GET of the source URL with the URL-encoded token in place of `%s`. A 2xx
 * answer's body is the target, `host:port` (BaseTokenAPI) or `{"host": ..., "port": ...}` (JSONTokenApi); any
 * other status means no such token. A service that does not answer within TOKEN_SERVICE_TIMEOUT_MS, cannot be
 * reached or answers with something that is not a target fails the lookup with the reason (the session is
 * refused); the token never appears in the reason.
 */
function tokenService(name: "BaseTokenAPI" | "JSONTokenApi", source: string): TokenPlugin {
  const service = new URL(source.replaceAll("%s", "")).host;
  return {
    name,
    async lookup(token) {
      const url = source.replaceAll("%s", encodeURIComponent(token));
      let response: Response;
      try {
        response = await fetch(url, { signal: AbortSignal.timeout(TOKEN_SERVICE_TIMEOUT_MS) });
      } catch (error) {
        const reason = (error as Error).name === "TimeoutError"
          ? `no answer within ${TOKEN_SERVICE_TIMEOUT_MS / 1000} s`
          : (error as Error).message.replaceAll(url, source);
        throw new Error(`token service ${service}: ${reason}`);
      }
      if (!response.ok) {
        await response.body?.cancel();
        return undefined;
      }
      const text = await readAnswer(response, service);
      const target = name === "BaseTokenAPI" ? parseTokenTarget(text) : jsonTarget(text);
      if (target?.kind !== "tcp") {
        throw new Error(
          `token service ${service}: the answer is not a target (${
            name === "BaseTokenAPI" ? "host:port" : '{"host": ..., "port": ...}'
          } expected)`,
        );
      }
      return target;
    },
  };
}

/** A token service's answer body, at most TOKEN_SERVICE_MAX_ANSWER bytes. */
async function readAnswer(response: Response, service: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > TOKEN_SERVICE_MAX_ANSWER) {
      await response.body?.cancel().catch(() => {});
      throw new Error(`token service ${service}: answer over ${TOKEN_SERVICE_MAX_ANSWER} bytes`);
    }
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

/** `{"host": "h", "port": 5900}` (the port may be a string of digits, as Python takes it). */
export function jsonTarget(text: string): TargetSpec | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { host, port } = value as { host?: unknown; port?: unknown };
  if (typeof host !== "string" || host === "") return undefined;
  const number = typeof port === "number" ? port : typeof port === "string" ? Number(port) : NaN;
  if (!Number.isInteger(number) || number < 1 || number > 65535) return undefined;
  return { kind: "tcp", hostname: host.replace(/^\[(.*)\]$/, "$1"), port: number };
}

/** An authentication refusal: the status line and headers to send (no body), and what to log. */
export interface AuthRefusal {
  status: number;
  message: string;
  headers: [string, string][];
  log: string;
}

/** What an auth plugin sees of a connection. */
export interface AuthContext {
  request: HttpRequest;
  target: TargetSpec;
  /** The TLS client certificate's subject CN, when one was verified. */
  clientCertCN: string | undefined;
  client?: ClientInfo;
}

export interface AuthPlugin {
  readonly name: string;
  /** SIGHUP: reads its source again (a failure throws; the plugin then serves as before). */
  reload?(): Promise<void>;
  /** undefined: allowed. A module's answer may come later. */
  authenticate(context: AuthContext): AuthRefusal | undefined | Promise<AuthRefusal | undefined>;
}

/** A built-in auth plugin: it answers at once. */
export interface BuiltInAuthPlugin extends AuthPlugin {
  authenticate(context: AuthContext): AuthRefusal | undefined;
}

/**
 * Builds an auth plugin. Throws with a clear message when the source is missing or unusable (the command line
 * has checked the name).
 */
export function createAuthPlugin(
  name: AuthPluginName,
  source: string | undefined,
): BuiltInAuthPlugin {
  if (!source) throw new Error(`--auth-plugin ${name} needs --auth-source`);
  switch (name) {
    case "BasicHTTPAuth": {
      if (!source.includes(":")) {
        throw new Error("--auth-source for BasicHTTPAuth must be user:password");
      }
      const expected = new TextEncoder().encode(source);
      const challenge: [string, string][] = [["WWW-Authenticate", 'Basic realm="Websockify"']];
      const unauthorized = (log: string): AuthRefusal => ({
        status: 401,
        message: "Unauthorized",
        headers: challenge,
        log,
      });
      return {
        name,
        authenticate({ request }) {
          const header = request.headers.get("authorization");
          if (!header) return unauthorized("no Authorization header");
          // The scheme name is case-insensitive (RFC 7617 §2, RFC 9110 §11.1).
          const scheme = header.match(/^basic(?:[ \t]+|$)/i);
          if (!scheme) {
            return {
              status: 403,
              message: "Forbidden",
              headers: [],
              log: "not Basic authorization",
            };
          }
          let credentials: Uint8Array;
          try {
            credentials = Uint8Array.from(
              atob(header.slice(scheme[0].length).trim()),
              (c) => c.charCodeAt(0),
            );
          } catch {
            return unauthorized("malformed Basic credentials");
          }
          // Credentials are UTF-8 (RFC 7617 §2.1, what browsers send): compared as bytes with the source's UTF-8.
          return constantTimeEqual(credentials, expected)
            ? undefined
            : unauthorized("wrong user or password");
        },
      };
    }
    case "ExpectOrigin": {
      const origins = source.split(/\s+/).filter((o) => o);
      return {
        name,
        authenticate({ request }) {
          const origin = request.headers.get("origin");
          if (origin !== undefined && origins.includes(origin)) return undefined;
          return {
            status: 403,
            message: "Invalid Origin",
            headers: [],
            log: `Invalid Origin Header: Expected one of ${JSON.stringify(origins)}, got '${
              origin ?? "None"
            }'`,
          };
        },
      };
    }
    case "ClientCertCNAuth": {
      const names = source.split(/\s+/).filter((n) => n);
      return {
        name,
        authenticate({ clientCertCN }) {
          if (clientCertCN !== undefined && names.includes(clientCertCN)) return undefined;
          return {
            status: 403,
            message: "Forbidden",
            headers: [],
            log: `client certificate CN '${clientCertCN ?? "none"}' not allowed`,
          };
        },
      };
    }
  }
}

/** Byte comparison whose time does not depend on where the arrays differ (only on their lengths). */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  }
  return difference === 0;
}

/**
 * The headers an auth plugin may trust: client-sent `SSL_*` headers removed, `SSL_CLIENT_S_DN_CN` set from a
 * verified client certificate (Apache style), as Python websockify 0.13 does.
 */
export function sanitizeHeaders(
  request: HttpRequest,
  clientCertCN: string | undefined,
): HttpRequest {
  const headers = new Map([...request.headers].filter(([name]) => !name.startsWith("ssl_")));
  if (clientCertCN !== undefined) headers.set("ssl_client_s_dn_cn", clientCertCN);
  return { ...request, headers };
}

/** The plugins a server runs: a token plugin with a `token` target, an auth plugin with `--auth-plugin`. */
export interface ServerPlugins {
  token?: TokenPlugin;
  auth?: AuthPlugin;
}

/** The plugins the settings ask for, ready to use; throws with a clear message. */
export async function loadPlugins(
  settings: Pick<Settings, "target" | "auth">,
  warn: (message: string) => void,
  info?: (message: string) => void,
): Promise<ServerPlugins> {
  const { target, auth } = settings;
  // A module plugin (plugin_modules.ts) is an object; a built-in one a name (the command line required its source).
  return {
    token: target.kind !== "token"
      ? undefined
      : typeof target.plugin === "string"
      ? await createTokenPlugin(target.plugin, target.source ?? "", warn, info)
      : await loadTokenModule(target.plugin, target.source),
    auth: !auth
      ? undefined
      : typeof auth.plugin === "string"
      ? createAuthPlugin(auth.plugin, auth.source)
      : await loadAuthModule(auth.plugin, auth.source),
  };
}
