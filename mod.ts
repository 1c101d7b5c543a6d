/**
 * websockify as a library: start the proxy from code, with the command line's options typed, or serve
 * WebSocket sessions of your own program over the same one-port machinery (TLS sniffing, wss://, static files,
 * the handshake, frames, the bounded relay, auth and token plugins, logging).
 *
 * ```ts
 * import { websockify, writeAll } from "./mod.ts";
 *
 * // The proxy: ws://127.0.0.1:6080/ -> localhost:5900, with noVNC's files on the same port.
 * const proxy = await websockify({ listen: "127.0.0.1:6080", target: "localhost:5900", web: "./noVNC" });
 *
 * // A program's own WebSocket service: each session is a byte stream (here: an echo).
 * const echo = await websockify({
 *   listen: 0,
 *   target: async (stream) => {
 *     const buffer = new Uint8Array(64 * 1024);
 *     for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
 *       await writeAll(stream, buffer.subarray(0, n));
 *     }
 *     await stream.closeWrite();
 *   },
 * });
 * console.log(echo.url); // ws://127.0.0.1:<port>/
 * await echo.shutdown();
 * await proxy.shutdown();
 * ```
 *
 * The command line (main.ts) is built on the same pieces (lib/app.ts); what it adds is process-wide: signals,
 * `-D`, `--inetd`, exit codes.
 *
 * @module
 */

import { openLogSinks, prepareProxy, type StartedProxy, startProxy } from "./lib/app.ts";
import { parseCommandLine, UsageError } from "./lib/cli.ts";
import { type ByteStream, closeQuietly } from "./lib/io.ts";
import { type Level, Logger, type LogSink } from "./lib/log.ts";
import { memoryStreamPair } from "./lib/memory_stream.ts";
import type { StreamSession } from "./lib/settings.ts";
import { describeError } from "./lib/targets.ts";

export type { ByteStream, Level as LogLevel, StreamSession };
export type * from "./lib/plugin_api.ts";
export { writeAll } from "./lib/io.ts";
export { memoryStreamPair } from "./lib/memory_stream.ts";
export { StartFailure } from "./lib/app.ts";
export { UsageError } from "./lib/cli.ts";

// The building blocks, pure code (bytes in, bytes or events out), for programs that go below `websockify()`.
export { classifyFirstBytes, type FirstBytes } from "./lib/sniff.ts";
export { type HttpRequest, MAX_HEAD_BYTES, parseRequestHead, readRequestHead } from "./lib/http.ts";
export {
  type Accepted,
  acceptKey,
  chooseSubprotocol,
  type Framing,
  isUpgradeRequest,
  negotiate,
  type Rejected,
  switchingProtocols,
} from "./lib/websocket/handshake.ts";
export {
  applyMask,
  CloseCode,
  encodeClosePayload,
  encodeFrame,
  Opcode,
} from "./lib/websocket/frames.ts";
export { Receiver, type ReceiverEvent, type ReceiverOptions } from "./lib/websocket/receiver.ts";
export { Relay, type RelayOptions, type RelayResult } from "./lib/relay.ts";
// wstest's integrity records (also used by its browser page).
export {
  makeRecord,
  MAX_RECORD_DIGITS,
  RecordChecker,
  type RecordCounts,
} from "./web/wstest_records.ts";

/**
 * Serves one session in process: `stream` carries the bytes of the client's messages (read) and what the client
 * is sent (write), as a TCP target would; message boundaries are not kept, as with any websockify target.
 * `read` gives null once the client has closed. When the function's promise resolves, the stream is
 * half-closed: the client gets every byte written, then close 1000 "Target closed" (so return only when done).
 * A rejection is logged and closes the stream outright. Buffering is bounded both ways: a client that does not
 * read makes `write` wait, a function that does not read makes the client wait.
 */
export type StreamTarget = (stream: ByteStream, session: StreamSession) => void | Promise<void>;

/** Where log lines go: standard error, nowhere, or a function (lines are already escaped). */
export type LogDestination = "stderr" | "none" | ((line: string, level: Level) => void);

/**
 * The proxy's options: the command line's long options in camelCase, with the same meaning and checks (see
 * `websockify --help` and the README). Paths are relative to `cwd`.
 */
export interface WebsockifyOptions {
  /**
   * Where to listen: `[host:]port` as on the command line (`"6080"`, `"127.0.0.1:6080"`, `"[::1]:0"`), or a port.
   * A bare port listens on every interface; 0 takes a free port (see `Websockify.port`). Not with `unixListen`.
   */
  listen?: string | number;
  /**
   * Where sessions go: `"host:port"` (`"[v6]:port"`), or a function that serves each session in process (see
   * StreamTarget). Omitted with `tokenPlugin`, `unixTarget` or `wrap`.
   */
  target?: string | StreamTarget;
  /** Wrap mode: this program and its arguments are started, their bind() to the listen port moved to a free one. */
  wrap?: readonly string[];
  /** @default "exit" */
  wrapMode?: "exit" | "ignore" | "respawn";
  /** Where log lines go. @default "stderr" */
  log?: LogDestination;
  /** What relative paths are relative to. @default Deno.cwd() */
  cwd?: string;
  /** Debug lines too (request lines, connection opens and closes). @default false */
  verbose?: boolean;
  /** Per-frame traffic glyphs on stdout. @default false */
  traffic?: boolean;
  /** Record each session to `<record>.<n>` (noVNC's playback format). @default undefined */
  record?: string;
  /** Write the process id to this file while listening. @default undefined */
  pidFile?: string;
  /** Serve one WebSocket session, then stop. @default false */
  runOnce?: boolean;
  /** Stop listening after this many seconds (open sessions finish); 0: never. @default 0 */
  timeout?: number;
  /** Stop after this many seconds without a connection; 0: never. @default 0 */
  idleTimeout?: number;
  /** TLS certificate chain (PEM); wss:// is served on the same port when it exists. @default "self.pem" */
  cert?: string;
  /** TLS private key, if not in the certificate file. @default undefined */
  key?: string;
  /** Passphrase of the key. @default undefined */
  keyPassword?: string;
  /** File whose first line is the key's passphrase. @default undefined */
  keyPasswordFile?: string;
  /** Refuse connections that are not TLS. @default false */
  sslOnly?: boolean;
  /** Connect to the target over TLS (verified). @default false */
  sslTarget?: boolean;
  /** With `sslTarget`: also trust the CAs of this file. @default undefined */
  sslTargetCafile?: string;
  /** Require a client certificate issued by a CA of `cafile`. @default false */
  verifyClient?: boolean;
  /** CA bundle for client certificates. @default undefined (the system's) */
  cafile?: string;
  /** Minimum TLS version. @default "default" (TLS 1.2) */
  sslVersion?: "default" | "tlsv1_1" | "tlsv1_2" | "tlsv1_3";
  /** Listen on this unix socket instead of a TCP port. @default undefined */
  unixListen?: string;
  /** File mode of the `unixListen` socket, octal. @default "600" */
  unixListenMode?: string;
  /** Connect to this unix socket. @default undefined */
  unixTarget?: string;
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2) from a load balancer, which gives the
   * client's address; connections without one are refused. @default false
   */
  proxyProtocol?: boolean;
  /**
   * Send the target a PROXY protocol header with the client's address (a TCP or unix target, not an in-process
   * one). @default undefined (none)
   */
  targetProxyProtocol?: "v1" | "v2";
  /**
   * Reverse proxies (`10.0.0.0/8`, `::1`, a list or comma-separated) whose `Forwarded`, `X-Forwarded-For` or
   * `X-Real-IP` header names the client; anyone else's are ignored. @default undefined (none)
   */
  trustedProxy?: string | readonly string[];
  /** Serve the files of this folder on the same port. @default undefined */
  web?: string;
  /** The auth plugin applies to `web` requests too. @default false */
  webAuth?: boolean;
  /** No directory listings for `web` (404 instead). @default false */
  fileOnly?: boolean;
  /** Do not serve the built-in pages and modules under `/websockify/`. @default false */
  noBuiltinPages?: boolean;
  /**
   * More WebSocket subprotocols accepted (`"mqtt"`, a list or comma-separated): the client's first offered one
   * is selected (`binary`, then `base64`, still win when offered); relayed as binary. @default undefined
   */
  subprotocol?: string | readonly string[];
  /**
   * Choose each session's target from its token: a built-in plugin (TokenFile, TokenRedis, JWTTokenApi, ...)
   * or a module (`./my_plugin.ts`, a `file:` URL, an `npm:` specifier; see lib/plugin_api.ts).
   * @default undefined
   */
  tokenPlugin?: string;
  /** The token plugin's source. @default undefined */
  tokenSource?: string;
  /** The token is the Host header instead of `?token=` (the same as `tokenFrom: "host"`). @default false */
  hostToken?: boolean;
  /**
   * Where the token is read, in order, comma-separated: `query`, `host`, `path` (`/websockify/TOKEN`),
   * `cookie:NAME`, `header:NAME` (from trusted proxies only), `protocol` (an offered subprotocol `token.VALUE`).
   * @default "query"
   */
  tokenFrom?: string;
  /**
   * The targets a token plugin may choose, comma-separated: `host:port`, `host:*`, `10.0.0.0/8:5900-5999`,
   * `[fd00::/8]:5900`, `unix:/path`, `unix:/dir/*`; any other is refused with 403. @default undefined (any)
   */
  allowedTargets?: string;
  /** Only these Origins may open a session (403 for others; no Origin passes). @default undefined (any) */
  allowedOrigin?: string | readonly string[];
  /** A client message larger than this many bytes closes the session with 1009; 0: no limit. @default 0 */
  maxMessageSize?: number;
  /**
   * Authenticate connections: BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth, or a module.
   * @default undefined
   */
  authPlugin?: string;
  /** The auth plugin's source. @default undefined */
  authSource?: string;
  /** Ping the client every this many seconds; 0: never. @default 0 */
  heartbeat?: number;
  /** Also write the log to this file. @default undefined */
  logFile?: string;
  /** Also log to syslog: a unix socket path or UDP `host:port`. @default undefined */
  syslog?: string;
  /** The old BSD syslog header. @default false */
  legacySyslog?: boolean;
  /** Log lines as websockify's text or one JSON object per line (`log` functions get them so). @default "text" */
  logFormat?: "text" | "json";
  /** Refuse new sessions with 503 while this many are open; 0: no limit. @default 0 */
  maxSessions?: number;
  /** Refuse new sessions from an address with 503 while it has this many open; 0: no limit. @default 0 */
  maxSessionsPerIp?: number;
  /** Close new connections of an address that has this many not yet in a session; 0: no limit. @default 256 */
  maxHandshakesPerIp?: number;
  /** permessage-deflate with clients that offer it (each message compressed on its own). @default false */
  compress?: boolean;
  /** Serve /metrics, /healthz and /readyz on this separate `host:port`. @default undefined */
  metricsListen?: string;
  /** What `drain()` without an argument waits, in seconds (SIGTERM's, on the command line). @default 0 */
  drainTimeout?: number;
  /**
   * The first seconds of a drain during which new connections are still served while /readyz fails (less than
   * `drainTimeout`). @default 0
   */
  drainGrace?: number;
}

/**
 * The command-line option each WebsockifyOptions key stands for (the keys that are not command-line options
 * map to undefined). A test checks that every command-line option a library user can use is here.
 */
export const OPTION_FLAGS: {
  readonly [K in keyof Required<WebsockifyOptions>]: string | undefined;
} = {
  listen: undefined,
  target: undefined,
  wrap: undefined,
  log: undefined,
  cwd: undefined,
  wrapMode: "wrap-mode",
  verbose: "verbose",
  traffic: "traffic",
  record: "record",
  pidFile: "pid-file",
  runOnce: "run-once",
  timeout: "timeout",
  idleTimeout: "idle-timeout",
  cert: "cert",
  key: "key",
  keyPassword: "key-password",
  keyPasswordFile: "key-password-file",
  sslOnly: "ssl-only",
  sslTarget: "ssl-target",
  sslTargetCafile: "ssl-target-cafile",
  verifyClient: "verify-client",
  cafile: "cafile",
  sslVersion: "ssl-version",
  unixListen: "unix-listen",
  unixListenMode: "unix-listen-mode",
  unixTarget: "unix-target",
  proxyProtocol: "proxy-protocol",
  targetProxyProtocol: "target-proxy-protocol",
  trustedProxy: "trusted-proxy",
  web: "web",
  webAuth: "web-auth",
  fileOnly: "file-only",
  noBuiltinPages: "no-builtin-pages",
  subprotocol: "subprotocol",
  tokenPlugin: "token-plugin",
  tokenSource: "token-source",
  hostToken: "host-token",
  tokenFrom: "token-from",
  allowedTargets: "allowed-targets",
  allowedOrigin: "allowed-origin",
  maxMessageSize: "max-message-size",
  authPlugin: "auth-plugin",
  authSource: "auth-source",
  heartbeat: "heartbeat",
  logFile: "log-file",
  syslog: "syslog",
  legacySyslog: "legacy-syslog",
  logFormat: "log-format",
  maxSessions: "max-sessions",
  maxSessionsPerIp: "max-sessions-per-ip",
  maxHandshakesPerIp: "max-handshakes-per-ip",
  metricsListen: "metrics-listen",
  compress: "compress",
  drainTimeout: "drain-timeout",
  drainGrace: "drain-grace",
};

/** A running proxy. */
export interface Websockify {
  /** The address it listens on. */
  readonly addr: Deno.Addr;
  /** The TCP port it listens on (0 on a unix socket). */
  readonly port: number;
  /** `ws://host:port/` for a TCP listener (loopback when it listens on every interface). */
  readonly url: string;
  /** Resolves once it has stopped, with the exit code the command line would give. */
  readonly finished: Promise<number>;
  /** `http://host:port/` of the metrics listener (`metricsListen`), else undefined. */
  readonly metricsUrl: string | undefined;
  /** Stops accepting, closes sessions with 1001, and resolves once everything is released. */
  shutdown(): Promise<number>;
  /**
   * Stops accepting (/readyz 503 at once; accepting stops after `drainGrace` s), lets open sessions go on for up
   * to `seconds` (default: `drainTimeout`), then as `shutdown`.
   */
  drain(seconds?: number): Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a proxy. Options are checked as the command line checks its arguments: a mistake rejects with a
 * UsageError (what `websockify` prints with its usage) or a StartFailure (a path, address or plugin that does
 * not work), before anything listens.
 */
export async function websockify(options: WebsockifyOptions): Promise<Websockify> {
  const parsed = parseCommandLine(commandLine(options), options.cwd ?? Deno.cwd());
  if (parsed.kind !== "run") throw new UsageError("help is for the command line");
  if (typeof options.target === "function" && parsed.settings.targetProxyProtocol) {
    throw new UsageError("targetProxyProtocol needs a TCP or unix target, not an in-process one");
  }
  const log = new Logger(logSinks(options.log ?? "stderr"));
  const streamTarget = options.target;
  const given = typeof streamTarget === "function"
    ? {
      ...parsed.settings,
      target: {
        kind: "stream" as const,
        name: streamTarget.name ? `in-process ${streamTarget.name}` : "in-process target",
        open: (session: StreamSession) => openStream(streamTarget, session, log),
      },
    }
    : parsed.settings;
  log.verbose = given.verbose;
  log.format = given.logFormat;
  for (const note of given.notes) log.warning(`note: ${note}`);
  const { settings, plugins } = await prepareProxy(given, log);
  const sinks = await openLogSinks(settings, log);
  let proxy: StartedProxy;
  try {
    proxy = await startProxy(settings, log, plugins);
  } catch (error) {
    plugins.token?.close?.();
    await sinks.close();
    throw error;
  }
  const finished = proxy.finished.finally(() => sinks.close());
  const addr = proxy.server.addr;
  const port = addr.transport === "tcp" ? addr.port : 0;
  const host = addr.transport === "tcp"
    ? (addr.hostname === "0.0.0.0" || addr.hostname === "::" ? "127.0.0.1" : addr.hostname)
    : "localhost";
  return {
    addr,
    port,
    url: `ws://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    finished,
    metricsUrl: proxy.metricsAddr
      ? `http://${
        proxy.metricsAddr.hostname.includes(":")
          ? `[${proxy.metricsAddr.hostname}]`
          : proxy.metricsAddr.hostname
      }:${proxy.metricsAddr.port}/`
      : undefined,
    shutdown() {
      proxy.stop();
      return finished;
    },
    drain(seconds = settings.drainTimeout) {
      proxy.drain(seconds);
      return finished;
    },
    async [Symbol.asyncDispose]() {
      proxy.stop();
      await finished;
    },
  };
}

/** The options as command-line arguments (one source of truth for meaning and checks: lib/cli.ts). */
function commandLine(options: WebsockifyOptions): string[] {
  const argv: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (!(key in OPTION_FLAGS)) throw new UsageError(`unknown option '${key}'`);
    const flag = OPTION_FLAGS[key as keyof WebsockifyOptions];
    if (flag === undefined || value === undefined || value === false) continue;
    // A repeatable option (allowedOrigin) may be given a list: one flag per item.
    for (const item of Array.isArray(value) ? value : [value]) {
      argv.push(item === true ? `--${flag}` : `--${flag}=${item}`);
    }
  }
  if (options.listen !== undefined) argv.push(String(options.listen));
  // An in-process target stands in for a TCP one here (the command line needs one); it is put in its place
  // once parsed.
  if (typeof options.target === "function") argv.push("127.0.0.1:9");
  else if (options.target !== undefined) argv.push(options.target);
  if (options.wrap !== undefined) argv.push("--", ...options.wrap);
  return argv;
}

function logSinks(destination: LogDestination): LogSink[] {
  if (destination === "stderr") return new Logger().sinks;
  if (destination === "none") return [];
  return [{ write: destination }];
}

/** One session's in-process target: a stream pair, one end to the program's function, the other to the relay. */
function openStream(target: StreamTarget, session: StreamSession, log: Logger): ByteStream {
  const [proxySide, programSide] = memoryStreamPair();
  (async () => {
    try {
      await target(programSide, session);
      await programSide.closeWrite();
    } catch (error) {
      log.error(`${session.client}: in-process target failed: ${describeError(error)}`);
      closeQuietly(programSide);
    }
  })();
  return proxySide;
}
