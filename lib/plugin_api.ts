/**
 * The interface of token and auth plugin modules: what `--token-plugin ./my_plugin.ts` and
 * `--auth-plugin ./my_auth.ts` (or a `file:` URL, or an `npm:` package) load. A plugin imports its types from
 * here (`import type`: nothing of the proxy is loaded into the plugin) and exports plain functions.
 *
 * A token plugin exports `lookup`, an auth plugin `auth`; either may export `init`, called once at start with
 * `--token-source` / `--auth-source` (verbatim, undefined when not given) before the proxy listens. A module may
 * be both (then `init` runs once for each option that names it).
 *
 *     // my_plugin.ts: --token-plugin ./my_plugin.ts
 *     import type { LookupContext, Target } from "./lib/plugin_api.ts";
 *     export function lookup(token: string, context: LookupContext): Target | undefined {
 *       return token === "vm1" ? "10.0.0.11:5900" : undefined;
 *     }
 *
 * What the proxy does with the answers:
 * - `lookup` gives a {@link Target}, or `undefined`/`null` for an unknown token (the connection is closed without
 *   an answer, logged as `Token #<first 8 hex digits of the token's SHA-256> not found`: never the token).
 *   A throw, or an answer that is no target (a number, an object without host and port, port 0 or 70000...) is
 *   a failed lookup: logged with the reason, the connection closed the same way.
 * - `auth` allows with `undefined` or `true`; refuses with `false` (403) or an {@link AuthRefusal}. A throw or any
 *   other answer (a status outside 400-599 included) is a plugin error: 403, and a log line with the reason.
 * - A call that has not settled within the proxy's plugin time limit (10 s) refuses the session (logged); other
 *   connections are served meanwhile. Plugins run in the proxy's process: a busy loop stalls every connection.
 * - A throw from `init` (or 30 s without it finishing), a module that cannot be imported, or one without the
 *   expected function stops the start with a message naming the module.
 *
 * @module
 */

/**
 * Where a session goes:
 * - `"host:port"`, `"[v6]:port"` (also `v6:port`), or `"unix_socket:/path"`: as a token file writes it;
 * - `{ host, port }`: a name or an address (IPv6 with or without brackets) and a port 1-65535;
 * - `{ unixSocket }`: the path of a unix socket.
 */
export type Target =
  | string
  | { readonly host: string; readonly port: number }
  | { readonly unixSocket: string };

/** The client's side of the connection. */
export interface ClientInfo {
  /**
   * Its address as log lines show it (IPv4-mapped IPv6 as plain IPv4; the listen path on a unix socket): the
   * one a `--proxy-protocol` header or a `--trusted-proxy`'s request header gave, if any.
   */
  readonly address: string;
  /** Its TCP port; undefined on a unix socket listener, or when a trusted proxy's header gave none. */
  readonly port?: number;
}

/** The upgrade request (or, with `--web-auth`, the file request) as the client sent it. */
export interface RequestInfo {
  /** `GET` for an upgrade. */
  readonly method: string;
  /** The request target as sent: path and query, e.g. `/websockify?token=vm1`. */
  readonly path: string;
  /**
   * The request's headers (names case-insensitive). Client-sent `SSL_*` headers are removed and
   * `SSL_CLIENT_S_DN_CN` is set from a verified client certificate, as for the built-in plugins.
   */
  readonly headers: Headers;
}

/** What `lookup` knows of the connection besides the token. */
export interface LookupContext {
  /** `--token-source` as given; undefined when it was not. */
  readonly source?: string;
  readonly client: ClientInfo;
  readonly request: RequestInfo;
  /** The subject CN of the client certificate, when `--verify-client` verified one. */
  readonly clientCertCN?: string;
}

/** A token plugin: `export function lookup(...)`. */
export type LookupFunction = (
  token: string,
  context: LookupContext,
) => Target | undefined | null | Promise<Target | undefined | null>;

/**
 * Where an authenticated session would go, when the proxy knows it: a TCP target, a unix socket, or the port of
 * the program wrap mode started.
 */
export type SessionTarget =
  | { readonly host: string; readonly port: number }
  | { readonly unixSocket: string }
  | { readonly command: readonly string[]; readonly port: number };

/** What `auth` sees. */
export interface AuthRequest extends RequestInfo {
  readonly client: ClientInfo;
  /** The subject CN of the client certificate, when `--verify-client` verified one. */
  readonly clientCertCN?: string;
  /**
   * The session's target (after the token lookup); undefined for a `--web-auth` file request when targets come
   * from a token plugin.
   */
  readonly target?: SessionTarget;
  /** `--auth-source` as given; undefined when it was not. */
  readonly source?: string;
}

/** How `auth` refuses: the HTTP answer (a status line and headers, no body, then a close) and the log line. */
export interface AuthRefusal {
  /** 400 to 599 (e.g. 401 with a `WWW-Authenticate` header, 403). */
  readonly status: number;
  /** The reason phrase. @default the status's usual one ("Unauthorized", ...) */
  readonly message?: string;
  /** More response headers (not Content-Length, Transfer-Encoding or Connection: the proxy sets those). */
  readonly headers?: Record<string, string> | readonly (readonly [string, string])[];
  /** What the log line says after `authentication failed: <status>`. @default "refused by <the module>" */
  readonly log?: string;
}

/** What `auth` answers: undefined or true allow; false (403) or a refusal refuse. */
export type AuthVerdict = undefined | boolean | AuthRefusal;

/** An auth plugin: `export function auth(...)`. */
export type AuthFunction = (request: AuthRequest) => AuthVerdict | Promise<AuthVerdict>;

/** Optional in either kind: `export function init(source)`, awaited once before the proxy listens. */
export type InitFunction = (source: string | undefined) => void | Promise<void>;

/**
 * Optional in either kind: `export function reload(source)`, awaited on SIGHUP (re-read what `init` read). A
 * throw is logged; the plugin keeps serving as before.
 */
export type ReloadFunction = (source: string | undefined) => void | Promise<void>;
