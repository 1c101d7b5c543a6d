/**
 * The domain model: what the proxy does, apart from how it is asked for. The command line (cli.ts) builds a
 * `Settings`; startup (startup.ts) resolves it into a new one; every other module reads the part it needs.
 * Nothing here is parsed or checked: the types say which values exist, the `@default` tags what the command line
 * gives when an option is absent.
 *
 * @module
 */

import type { IpRange } from "./forwarded.ts";
import type { TargetRule } from "./allowed_targets.ts";
import type { ByteStream } from "./io.ts";
import type { LogFormat } from "./log.ts";

/** The built-in token plugins (`--token-plugin`), by Python websockify's class names. */
export const TOKEN_PLUGINS = [
  "TokenFile",
  "ReadOnlyTokenFile",
  "TokenFileName",
  "UnixDomainSocketDirectory",
  "BaseTokenAPI",
  "JSONTokenApi",
  "JWTTokenApi",
  "TokenRedis",
  "ReverseConnection",
] as const;
export type TokenPluginName = typeof TOKEN_PLUGINS[number];

/** The built-in auth plugins (`--auth-plugin`), by Python websockify's class names. */
export const AUTH_PLUGINS = ["BasicHTTPAuth", "ExpectOrigin", "ClientCertCNAuth"] as const;
export type AuthPluginName = typeof AUTH_PLUGINS[number];

/** What an in-process target learns of the session it serves. */
export interface StreamSession {
  /** The client's address (as log lines show it). */
  readonly client: string;
  /** The request target of the upgrade, e.g. `/websockify?x=1`. */
  readonly path: string;
  /** The upgrade's headers, names in lower case. */
  readonly headers: ReadonlyMap<string, string>;
  /** Whether the WebSocket came over TLS (wss://). */
  readonly secure: boolean;
}

/** A plugin loaded from a module instead of a built-in one (`--token-plugin ./my_plugin.ts`, lib/plugin_api.ts). */
export interface PluginModule {
  /** As given on the command line (messages name it). */
  readonly given: string;
  /** What is imported: a path as a file: URL (resolved against the start directory), else the specifier as given. */
  readonly specifier: string;
}

/** Where the proxy listens. */
export type ListenSpec =
  | {
    readonly kind: "tcp";
    /** The address to bind; "" means every interface, IPv4 and IPv6 (one dual-stack socket). */
    readonly hostname: string;
    /** 0 picks a free port (the banner shows it). */
    readonly port: number;
    /**
     * SO_REUSEPORT, so that several processes share the port (a --workers worker).
     * @default false
     */
    readonly reusePort?: boolean;
  }
  | {
    readonly kind: "unix";
    /** The socket's path, absolute. A stale socket file there is replaced. */
    readonly path: string;
    /**
     * The socket file's mode.
     * @default 0o600
     */
    readonly mode: number;
  }
  /** `--inetd`: standard input is the listening socket. */
  | { readonly kind: "inetd" };

/** Where a session's bytes go. */
export type TargetSpec =
  | {
    readonly kind: "tcp";
    /** A name, an IPv4 or an IPv6 address (without brackets); every resolved address is tried. */
    readonly hostname: string;
    /** 1 to 65535. */
    readonly port: number;
    /** TLS toward the target (`--ssl-target`); undefined: plain TCP. */
    readonly tls?: TargetTls;
  }
  | {
    readonly kind: "unix";
    /** The target socket's path (absolute when it comes from the command line). */
    readonly path: string;
  }
  | {
    /** Wrap mode: a program the proxy starts, whose bind() to the listen port is moved to `port`. */
    readonly kind: "command";
    /** The program and its arguments. */
    readonly command: readonly string[];
    /**
     * The loopback port the program's bind() lands on, chosen at start.
     * @default 0 (not chosen yet)
     */
    readonly port: number;
  }
  | {
    /**
     * In process (the library, mod.ts): the program serves each session itself, as a byte stream the proxy
     * relays to and from the WebSocket.
     */
    readonly kind: "stream";
    /** What log lines call it. */
    readonly name: string;
    /** Opens one session's stream. */
    readonly open: (session: StreamSession) => ByteStream | Promise<ByteStream>;
  }
  | {
    /** Chosen per connection by a token plugin. */
    readonly kind: "token";
    readonly plugin: TokenPluginName | PluginModule;
    /**
     * What the plugin reads (a built-in plugin: an absolute path, a URL for BaseTokenAPI and JSONTokenApi, a Redis address with an `@FILE` password made absolute for TokenRedis); a module gets it verbatim,
     * undefined when not given.
     */
    readonly source: string | undefined;
    /**
     * Where the token is read (`--token-from`), in order: the first source that has one wins.
     * @default [{ kind: "query" }] (`--host-token`: [{ kind: "host" }])
     */
    readonly tokenFrom: readonly TokenSource[];
    /**
     * The option that named `source`, for messages.
     * @default "--token-source" (`--target-config` sets it to that)
     */
    readonly sourceOption?: string;
  };

/**
 * One place a token may travel (`--token-from`): `?token=`, the Host header, the path's last segment, a cookie,
 * a header (honoured from trusted proxies only), or an offered subprotocol `token.VALUE`.
 */
export type TokenSource =
  | { readonly kind: "query" | "host" | "path" | "protocol" }
  | {
    readonly kind: "cookie" | "header";
    /** The cookie's name (case-sensitive), or the header's name in lower case. */
    readonly name: string;
  };

/** What to do when a wrapped program exits: exit with its code, ignore it, or start it again (throttled). */
export const WRAP_MODES = ["exit", "ignore", "respawn"] as const;
export type WrapMode = typeof WRAP_MODES[number];

/** TLS toward the target (`--ssl-target`): verified against the system CAs plus `cafile`, with SNI. */
export interface TargetTls {
  /**
   * More CAs to trust (PEM), absolute.
   * @default undefined (the system CAs only)
   */
  readonly cafile?: string;
}

/** The listening side's TLS (wss:// on the same port as ws://). */
export interface ServerTls {
  /**
   * Certificate chain (PEM; may also hold the key), absolute. TLS is offered when this file exists.
   * @default "self.pem" in the start directory
   */
  readonly cert: string;
  /** `--cert` was given (else `cert` is the default, whose absence is only an info line). */
  readonly certGiven: boolean;
  /**
   * Private key (PEM), absolute.
   * @default undefined (the key is in the certificate file)
   */
  readonly key?: string;
  /**
   * The key's passphrase (`--key-password`, else the first line of `--key-password-file`, else
   * `$WEBSOCKIFY_KEY_PASSWORD`).
   * @default undefined (the key is not encrypted)
   */
  readonly keyPassword?: string;
  /**
   * Minimum protocol version.
   * @default undefined (the stack's default: TLS 1.2; 1.0 and 1.1 do not exist there)
   */
  readonly minVersion?: "TLSv1.2" | "TLSv1.3";
  /**
   * Require a client certificate issued by a CA of `cafile`.
   * @default false
   */
  readonly verifyClient: boolean;
  /**
   * CA bundle (PEM) for client certificates, absolute.
   * @default undefined (the system bundle)
   */
  readonly cafile?: string;
  /**
   * Refuse plain (non-TLS) connections.
   * @default false
   */
  readonly only: boolean;
}

/** `--web DIR`: static files on the proxy's port. */
export interface WebSettings {
  /** The web root, absolute; after startup resolution also real (symlinks resolved), for confinement. */
  readonly root: string;
  /**
   * No directory listings (404 instead).
   * @default false
   */
  readonly fileOnly: boolean;
}

/** `--auth-plugin` and its source. */
export interface AuthSettings {
  readonly plugin: AuthPluginName | PluginModule;
  /** What the plugin checks against (`user:password`, origins, CNs); the plugin says when it is missing. */
  readonly source: string | undefined;
}

/** Everything the proxy is asked to do. */
export interface Settings {
  readonly listen: ListenSpec;
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2) from a load balancer, read before TLS: the
   * client's address is the one it gives; a connection without a valid header is refused.
   * @default false
   */
  readonly proxyProtocol: boolean;
  /**
   * Peers (or PROXY protocol sources) whose request heads may name the client: `Forwarded: for=`, else
   * `X-Forwarded-For`, else `X-Real-IP` (lib/forwarded.ts). Anyone else's such headers are ignored.
   * @default [] (no one)
   */
  readonly trustedProxies: readonly IpRange[];
  /** Where every session goes. */
  readonly target: TargetSpec;
  /**
   * Send a PROXY protocol header of this version to a TCP or unix target before any relayed byte: the client's
   * address (the one `proxyProtocol` gave, if any) and the address it connected to.
   * @default undefined (no header)
   */
  readonly targetProxyProtocol: "v1" | "v2" | undefined;
  /**
   * What to do when a wrapped program exits (wrap mode only).
   * @default "exit"
   */
  readonly wrapMode: WrapMode;
  readonly tls: ServerTls;
  /** @default undefined (no static files: every non-upgrade request gets an HTTP error) */
  readonly web: WebSettings | undefined;
  /** @default undefined (no authentication) */
  readonly auth: AuthSettings | undefined;
  /**
   * `--allowed-origin`: a WebSocket upgrade whose Origin is not one of these (serialized origins, e.g.
   * `https://novnc.example`, or `null`) is refused with 403, before the token and the auth plugin. A request
   * without Origin (not a browser) passes.
   * @default [] (any origin)
   */
  readonly allowedOrigins: readonly string[];
  /**
   * `--allowed-targets`: a target chosen by a token plugin must match one of these rules, else the session is
   * refused with 403.
   * @default undefined (any target)
   */
  readonly allowedTargets: readonly TargetRule[] | undefined;
  /**
   * `--max-message-size`: a client message (or one frame) larger than this many bytes closes the session with
   * 1009 before any of its bytes past the limit reach the target; 0: no limit.
   * @default 0
   */
  readonly maxMessageSize: number;
  /**
   * The auth plugin applies to static files too.
   * @default false
   */
  readonly webAuth: boolean;
  /**
   * Serve the built-in pages and browser modules (Websock, wstelnet, wsecho) under `/websockify/`; they win
   * over `--web` files there. Off with `--no-builtin-pages`.
   * @default true
   */
  readonly builtinPages: boolean;
  /**
   * More WebSocket subprotocols accepted besides `binary` and `base64`: the first one the client offers that is
   * here is selected (`binary`, then `base64`, still win when offered); frames are relayed as with `binary`.
   * @default [] (only binary and base64)
   */
  readonly subprotocols: readonly string[];
  /** Startup notes about values the TLS stack honours only in part (logged as warnings). */
  readonly notes: readonly string[];
  /**
   * `--record`: absolute base name of the session files (`<base>.<n>`).
   * @default undefined (no recording)
   */
  readonly record: string | undefined;
  /**
   * Per-frame traffic glyphs on stdout.
   * @default false
   */
  readonly traffic: boolean;
  /**
   * Become a daemon (`-D`).
   * @default false
   */
  readonly daemon: boolean;
  /**
   * The process id is written there once listening (absolute; removed at exit).
   * @default undefined
   */
  readonly pidFile: string | undefined;
  /**
   * Handle one WebSocket connection, then exit.
   * @default false
   */
  readonly runOnce: boolean;
  /**
   * Seconds after which the proxy stops listening (open sessions finish); 0: never.
   * @default 0
   */
  readonly timeout: number;
  /**
   * Seconds without an active connection after which the proxy exits; 0: never.
   * @default 0
   */
  readonly idleTimeout: number;
  /**
   * Seconds between pings to the client (two unanswered close it); 0: no pings.
   * @default 0
   */
  readonly heartbeat: number;
  /**
   * New sessions are refused (503) while this many are open; 0: no limit.
   * @default 0
   */
  readonly maxSessions: number;
  /**
   * New sessions from one client address are refused (503) while it has this many open; 0: no limit.
   * @default 0
   */
  readonly maxSessionsPerIp: number;
  /**
   * New connections from one client address are closed at once while it has this many not yet in a session
   * (sniffing, TLS, the request head, static files); 0: no limit.
   * @default 256
   */
  readonly maxHandshakesPerIp: number;
  /**
   * Worker processes sharing the listen port (SO_REUSEPORT), under this process; 0: this process serves alone.
   * @default 0
   */
  readonly workers: number;
  /**
   * permessage-deflate (RFC 7692) with clients that offer it: each message compressed on its own both ways.
   * @default false
   */
  readonly compress: boolean;
  /**
   * The separate listener for /metrics, /healthz and /readyz.
   * @default undefined (none)
   */
  readonly metricsListen: { readonly hostname: string; readonly port: number } | undefined;
  /**
   * After SIGTERM: seconds that open sessions may go on (no new ones, /readyz 503) before they get 1001.
   * @default 0 (closed at once)
   */
  readonly drainTimeout: number;
  /**
   * The first seconds of a drain during which new connections are still accepted while /readyz already says
   * 503, so that a load balancer stops sending before the listener closes (less than drainTimeout).
   * @default 0 (the listener closes at once)
   */
  readonly drainGrace: number;
  /**
   * The log also goes to this file (absolute, appended).
   * @default undefined
   */
  readonly logFile: string | undefined;
  /**
   * The log also goes to syslog: a unix socket path, or UDP `host[:port]`.
   * @default undefined
   */
  readonly syslog: string | undefined;
  /**
   * The old BSD syslog header instead of RFC 5424's.
   * @default false
   */
  readonly legacySyslog: boolean;
  /**
   * Log lines as websockify's text, or as one JSON object per line (stderr, the log file, syslog).
   * @default "text"
   */
  readonly logFormat: LogFormat;
  /**
   * Debug lines too (request lines, connection opens and closes).
   * @default false
   */
  readonly verbose: boolean;
}
