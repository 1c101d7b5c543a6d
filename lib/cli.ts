/**
 * websockify's command line: every option of the Python implementation (reference §1.2), parsed with optparse's
 * habits into a typed, validated `Settings` (the domain model, settings.ts). This module owns the options table,
 * --help and the checks of what the options say together; usage errors are `UsageError`s (the caller prints
 * usage, exits 2).
 *
 *     const command = parseCommandLine(["6080", "localhost:5900"]);
 *     if (command.kind === "run") console.log(command.settings.target); // { kind: "tcp", hostname: ..., port: 5900 }
 *
 * @module
 */

import { resolve } from "node:path";
import { type IpRange, parseTrustedProxies } from "./forwarded.ts";
import { parseAllowedTargets, type TargetRule } from "./allowed_targets.ts";
import { parsePort, splitHostPort } from "./hostport.ts";
import { LOG_FORMATS, type LogFormat } from "./log.ts";
import { type OptionSpec, parseArgs, type ParsedArgs, UsageError } from "./optparse.ts";
import { parseOrigin } from "./origins.ts";
import { parsePluginModule } from "./plugin_modules.ts";
import { formatReverseSource, parseReverseSource } from "./reverse.ts";
import {
  AUTH_PLUGINS,
  type AuthSettings,
  type ListenSpec,
  type PluginModule,
  type ServerTls,
  type Settings,
  type TargetSpec,
  TOKEN_PLUGINS,
  type TokenPluginName,
  type TokenSource,
  type WebSettings,
  WRAP_MODES,
  type WrapMode,
} from "./settings.ts";
import { DEFAULT_TOKEN_FROM, parseTokenFrom } from "./token_from.ts";
import { formatRedisSource, parseRedisSource } from "./tokenredis.ts";

export { UsageError };

interface OptionDef extends OptionSpec {
  metavar?: string;
  help: string;
}

/** Python websockify's own options: abbreviations of these keep their Python meaning (optparse.ts). */
const PYTHON_OPTIONS = new Set([
  "help",
  "verbose",
  "traffic",
  "record",
  "daemon",
  "run-once",
  "timeout",
  "idle-timeout",
  "cert",
  "key",
  "key-password",
  "ssl-only",
  "ssl-target",
  "verify-client",
  "cafile",
  "ssl-version",
  "ssl-ciphers",
  "unix-listen",
  "unix-listen-mode",
  "unix-target",
  "inetd",
  "web",
  "web-auth",
  "wrap-mode",
  "prefer-ipv6",
  "libserver",
  "target-config",
  "token-plugin",
  "token-source",
  "host-token",
  "auth-plugin",
  "auth-source",
  "heartbeat",
  "log-file",
  "syslog",
  "legacy-syslog",
  "file-only",
]);

/** The value of an option that is not given, for the options that have one (--help shows them). */
const DEFAULTS = {
  timeout: "0",
  "idle-timeout": "0",
  cert: "self.pem",
  "ssl-version": "default",
  "unix-listen-mode": "0600",
  "wrap-mode": "exit",
  heartbeat: "0",
  "max-sessions": "0",
  "max-sessions-per-ip": "0",
  "max-handshakes-per-ip": "256",
  "drain-timeout": "0",
  "drain-grace": "0",
  "log-format": "text",
  "token-from": "query",
  "max-message-size": "0",
} as const;
type WithDefault = keyof typeof DEFAULTS;
const DEFAULT_TEXT = new Map<string, string>(Object.entries(DEFAULTS));

/** Every option, in --help order. */
export const OPTIONS: OptionDef[] = [
  { long: "help", short: "h", takesValue: false, help: "show this help message and exit" },
  {
    long: "verbose",
    short: "v",
    takesValue: false,
    help: "verbose messages: request lines, connection opens and closes",
  },
  {
    long: "traffic",
    takesValue: false,
    help: "per read and write traffic glyphs on stdout",
  },
  {
    long: "record",
    takesValue: true,
    metavar: "FILE",
    help: "record each WebSocket session to FILE.<n> (noVNC playback format)",
  },
  {
    long: "daemon",
    short: "D",
    takesValue: false,
    help: "become a daemon (background process)",
  },
  {
    long: "pid-file",
    takesValue: true,
    metavar: "FILE",
    help: "write the process id to FILE once listening (removed at exit)",
  },
  {
    long: "run-once",
    takesValue: false,
    help: "handle a single WebSocket connection and exit",
  },
  {
    long: "timeout",
    takesValue: true,
    metavar: "SECONDS",
    help: "after SECONDS, stop listening; open sessions finish (0: never)",
  },
  {
    long: "idle-timeout",
    takesValue: true,
    metavar: "SECONDS",
    help: "exit after SECONDS without an active connection (0: never)",
  },
  {
    long: "cert",
    takesValue: true,
    metavar: "FILE",
    help: "TLS certificate chain (PEM), resolved against the start directory",
  },
  {
    long: "key",
    takesValue: true,
    metavar: "FILE",
    help: "TLS private key, if not in the certificate file",
  },
  {
    long: "key-password",
    takesValue: true,
    metavar: "PASSWORD",
    help: "passphrase of the TLS key",
  },
  {
    long: "key-password-file",
    takesValue: true,
    metavar: "FILE",
    help: "read the key passphrase from FILE (not visible in ps; also: $WEBSOCKIFY_KEY_PASSWORD)",
  },
  {
    long: "ssl-only",
    takesValue: false,
    help: "refuse connections that are not TLS",
  },
  {
    long: "ssl-target",
    takesValue: false,
    help: "connect to the target over TLS",
  },
  {
    long: "ssl-target-cafile",
    takesValue: true,
    metavar: "FILE",
    help: "with --ssl-target: also trust the CAs of FILE (targets with private certificates)",
  },
  {
    long: "target-proxy-protocol",
    takesValue: true,
    metavar: "VERSION",
    help: "send the target a PROXY protocol header (v1 or v2) with the client's address",
  },
  {
    long: "verify-client",
    takesValue: false,
    help: "require and verify a client certificate",
  },
  {
    long: "cafile",
    takesValue: true,
    metavar: "FILE",
    help: "CA bundle to verify client certificates",
  },
  {
    long: "ssl-version",
    takesValue: true,
    metavar: "VERSION",
    help: "minimum TLS version: default, tlsv1_1, tlsv1_2, tlsv1_3",
  },
  {
    long: "ssl-ciphers",
    takesValue: true,
    metavar: "CIPHERS",
    help: "refused: the TLS stack (rustls) cannot restrict its cipher suites",
  },
  {
    long: "unix-listen",
    takesValue: true,
    metavar: "FILE",
    help: "listen on the unix socket FILE instead of a TCP port (no listen argument)",
  },
  {
    long: "unix-listen-mode",
    takesValue: true,
    metavar: "MODE",
    help: "file mode of the --unix-listen socket, octal",
  },
  {
    long: "unix-target",
    takesValue: true,
    metavar: "FILE",
    help: "connect to the unix socket FILE (no target argument)",
  },
  {
    long: "inetd",
    takesValue: false,
    help: "inetd mode: standard input is the listening socket (no listen argument)",
  },
  {
    long: "proxy-protocol",
    takesValue: false,
    help:
      "connections start with a load balancer's PROXY protocol header (v1 or v2) naming the client; " +
      "refused without one",
  },
  {
    long: "trusted-proxy",
    takesValue: true,
    metavar: "CIDR",
    help: "a reverse proxy whose Forwarded / X-Forwarded-For / X-Real-IP headers name the client " +
      "(repeatable or comma-separated; IPv4, IPv6, a bare address is one host)",
  },
  {
    long: "web",
    takesValue: true,
    metavar: "DIR",
    help: "serve the files of DIR on the same port",
  },
  {
    long: "web-auth",
    takesValue: false,
    help: "apply the auth plugin to web requests too",
  },
  {
    long: "no-builtin-pages",
    takesValue: false,
    help: "do not serve the built-in pages under /websockify/ (Websock, wstelnet, wsecho, wstest)",
  },
  {
    long: "subprotocol",
    takesValue: true,
    metavar: "NAME",
    help:
      "also accept this WebSocket subprotocol (repeatable; the client's first offered one is selected, " +
      "binary and base64 first); relayed as binary",
  },
  {
    long: "wrap-mode",
    takesValue: true,
    metavar: "MODE",
    help: "when the wrapped program exits: exit, ignore or respawn",
  },
  {
    long: "prefer-ipv6",
    short: "6",
    takesValue: false,
    help: "accepted for compatibility: a bare port already listens on IPv4 and IPv6",
  },
  {
    long: "libserver",
    takesValue: false,
    help: "accepted for compatibility (Python's library HTTP server); has no effect",
  },
  {
    long: "target-config",
    takesValue: true,
    metavar: "FILE",
    help: "deprecated: same as --token-plugin TokenFile --token-source FILE",
  },
  {
    long: "token-plugin",
    takesValue: true,
    metavar: "CLASS",
    help: `choose the target per connection from a token: ${
      TOKEN_PLUGINS.join(", ")
    }, or a module (./my_plugin.ts, file:, npm:)`,
  },
  {
    long: "token-source",
    takesValue: true,
    metavar: "ARG",
    help: "the token plugin's source",
  },
  {
    long: "host-token",
    takesValue: false,
    help: "take the token from the Host header instead of ?token= (same as --token-from host)",
  },
  {
    long: "token-from",
    takesValue: true,
    metavar: "LIST",
    help: "where the token is read, first hit wins: query, host, path (/websockify/TOKEN), " +
      "cookie:NAME, header:NAME (from --trusted-proxy peers only), protocol (subprotocol token.VALUE)",
  },
  {
    long: "allowed-targets",
    takesValue: true,
    metavar: "LIST",
    help:
      "refuse (403) a token's target outside these: host:port, host:*, CIDR:port, CIDR:lo-hi, " +
      "[v6/N]:port, unix:/path, unix:/dir/*",
  },
  {
    long: "auth-plugin",
    takesValue: true,
    metavar: "CLASS",
    help: `authenticate connections: ${
      AUTH_PLUGINS.join(", ")
    }, or a module (./my_auth.ts, file:, npm:)`,
  },
  {
    long: "auth-source",
    takesValue: true,
    metavar: "ARG",
    help: "the auth plugin's source",
  },
  {
    long: "allowed-origin",
    takesValue: true,
    metavar: "ORIGIN",
    help: "refuse (403) WebSocket upgrades from other Origins (repeatable; no Origin passes)",
  },
  {
    long: "heartbeat",
    takesValue: true,
    metavar: "SECONDS",
    help: "ping the client every SECONDS; close it after 2 unanswered (0: never)",
  },
  {
    long: "max-message-size",
    takesValue: true,
    metavar: "BYTES",
    help: "close a session with 1009 when a client message or frame is larger (0: no limit)",
  },
  {
    long: "workers",
    takesValue: true,
    metavar: "N",
    help:
      "N processes share the listen port (SO_REUSEPORT), supervised by this one; auto: one per CPU",
  },
  {
    long: "compress",
    takesValue: false,
    help: "permessage-deflate with clients that offer it (each message compressed on its own)",
  },
  {
    long: "max-sessions",
    takesValue: true,
    metavar: "N",
    help: "refuse new WebSocket sessions with 503 while N are open (0: no limit)",
  },
  {
    long: "max-sessions-per-ip",
    takesValue: true,
    metavar: "N",
    help: "refuse new sessions with 503 while one client address has N open (0: no limit)",
  },
  {
    long: "max-handshakes-per-ip",
    takesValue: true,
    metavar: "N",
    help:
      "close new connections at once while one client address has N not yet in a session (0: no limit)",
  },
  {
    long: "metrics-listen",
    takesValue: true,
    metavar: "HOST:PORT",
    help: "serve /metrics (Prometheus), /healthz and /readyz on this separate address",
  },
  {
    long: "drain-timeout",
    takesValue: true,
    metavar: "SECONDS",
    help:
      "on SIGTERM stop accepting, fail /readyz, let sessions run up to SECONDS, then close them (0: at once)",
  },
  {
    long: "drain-grace",
    takesValue: true,
    metavar: "SECONDS",
    help:
      "keep accepting for the drain's first SECONDS (/readyz fails) so load balancers turn away first",
  },
  {
    long: "log-file",
    takesValue: true,
    metavar: "FILE",
    help: "also write the log to FILE",
  },
  {
    long: "syslog",
    takesValue: true,
    metavar: "SERVER",
    help: "also log to syslog: a unix socket path or UDP host:port",
  },
  {
    long: "legacy-syslog",
    takesValue: false,
    help: "use the old BSD syslog header (with --syslog)",
  },
  {
    long: "log-format",
    takesValue: true,
    metavar: "FORMAT",
    help: "text (websockify's lines) or json (one object per line: time, level, msg, client, ...)",
  },
  {
    long: "file-only",
    takesValue: false,
    help: "no directory listings in --web (404 instead)",
  },
];
for (const option of OPTIONS) option.extension = !PYTHON_OPTIONS.has(option.long);

export const USAGE = `Usage:
    websockify [options] [source_addr:]source_port target_addr:target_port
    websockify [options] --inetd target_addr:target_port
    websockify [options] --unix-target=FILE [source_addr:]source_port
    websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE
    websockify [options] --unix-listen=FILE target_addr:target_port`;

/** The --help text: usage, then every option with its default. */
export function helpText(): string {
  const lines = [USAGE, "", "Options:"];
  for (const option of OPTIONS) {
    const names = [
      option.short ? `-${option.short}${option.takesValue ? ` ${option.metavar}` : ""}` : "",
      `--${option.long}${option.takesValue ? `=${option.metavar}` : ""}`,
    ].filter((n) => n).join(", ");
    let help = option.help;
    const fallback = DEFAULT_TEXT.get(option.long);
    if (fallback !== undefined) help += ` (default: ${fallback})`;
    lines.push(
      names.length < 26 ? `  ${names.padEnd(26)}${help}` : `  ${names}\n${" ".repeat(28)}${help}`,
    );
  }
  return lines.join("\n");
}

/** The outcome of a command line: run with settings, or print help. */
export type Command = { kind: "run"; settings: Settings } | { kind: "help" };

/**
 * Parses and validates `argv`, paths resolved against `cwd`. Throws UsageError with a one-line reason; where
 * several things are wrong, the first found in the order below is the one reported.
 */
export function parseCommandLine(argv: string[], cwd = Deno.cwd()): Command {
  const parsed = parseArgs(argv, OPTIONS);
  if (parsed.flags.has("help")) return { kind: "help" };
  const given = new GivenOptions(parsed, cwd);
  const { tls, notes } = parseServerTls(given);
  const web = parseWeb(given);
  const wrapMode = parseWrapMode(given);
  const listen = parseListenArguments(given);
  const tokenPlugin = parseTokenPlugin(given);
  const auth = parseAuth(given, web);
  const target = parseTargetArguments(given, listen, tokenPlugin);
  if (given.positionals.length > 0) throw new UsageError("Too many arguments");
  if (given.flag("legacy-syslog") && given.value("syslog") === undefined) {
    throw new UsageError("--legacy-syslog requires --syslog");
  }
  return {
    kind: "run",
    settings: {
      listen,
      proxyProtocol: given.flag("proxy-protocol"),
      trustedProxies: parseTrustedProxyOption(parsed),
      target: withTargetTls(given, target),
      targetProxyProtocol: parseTargetProxyProtocol(given),
      wrapMode,
      tls,
      web,
      auth,
      allowedOrigins: parseAllowedOrigins(given),
      allowedTargets: parseAllowedTargetsOption(given, target),
      maxMessageSize: parseByteCount(given, "max-message-size"),
      webAuth: given.flag("web-auth"),
      builtinPages: !given.flag("no-builtin-pages"),
      subprotocols: parseSubprotocols(parsed),
      notes,
      record: given.path("record"),
      traffic: given.flag("traffic"),
      daemon: given.flag("daemon"),
      pidFile: given.path("pid-file"),
      runOnce: given.flag("run-once"),
      timeout: given.seconds("timeout"),
      idleTimeout: given.seconds("idle-timeout"),
      heartbeat: given.seconds("heartbeat"),
      maxSessions: given.seconds("max-sessions"),
      maxSessionsPerIp: given.seconds("max-sessions-per-ip"),
      maxHandshakesPerIp: given.seconds("max-handshakes-per-ip"),
      metricsListen: parseMetricsListen(given.value("metrics-listen")),
      workers: parseWorkers(given, listen, target),
      compress: given.flag("compress"),
      drainTimeout: given.seconds("drain-timeout"),
      drainGrace: parseDrainGrace(given),
      logFile: given.path("log-file"),
      syslog: given.value("syslog"),
      legacySyslog: given.flag("legacy-syslog"),
      logFormat: parseLogFormat(given),
      verbose: given.flag("verbose"),
    },
  };
}

/** What the command line gave, read by option name; the parsers take positionals from the front. */
class GivenOptions {
  readonly #parsed: ParsedArgs;
  /** Start directory: relative paths are resolved against it. */
  readonly cwd: string;
  /** The positionals not taken yet. */
  readonly positionals: string[];
  /** The arguments after `--` (wrap mode), or undefined. */
  readonly afterTerminator: string[] | undefined;

  constructor(parsed: ParsedArgs, cwd: string) {
    this.#parsed = parsed;
    this.cwd = cwd;
    this.positionals = [...parsed.positionals];
    this.afterTerminator = parsed.afterTerminator;
  }

  /** The option's value (the last one given), or undefined. */
  value(name: string): string | undefined {
    return this.#parsed.values.get(name)?.at(-1);
  }

  /** Every value the option was given, in order. */
  all(name: string): string[] {
    return this.#parsed.values.get(name) ?? [];
  }

  /** The option's value, or its default. */
  valueOrDefault(name: WithDefault): string {
    return this.value(name) ?? DEFAULTS[name];
  }

  flag(name: string): boolean {
    return this.#parsed.flags.has(name);
  }

  /** The option's value as an absolute path, or undefined. */
  path(name: string): string | undefined {
    const text = this.value(name);
    return text === undefined ? undefined : resolve(this.cwd, text);
  }

  /** A whole number of seconds. */
  seconds(name: WithDefault): number {
    const text = this.valueOrDefault(name);
    if (!/^\d+$/.test(text)) {
      throw new UsageError(`option --${name}: invalid integer value: '${text}'`);
    }
    return Number(text);
  }
}

/** `--workers N|auto`, refused where several processes cannot serve (one process must hold the state). */
function parseWorkers(given: GivenOptions, listen: ListenSpec, target: TargetSpec): number {
  const text = given.value("workers");
  if (text === undefined) return 0;
  const count = text === "auto" ? navigator.hardwareConcurrency : Number(text);
  if (!/^(\d+|auto)$/.test(text) || !Number.isInteger(count) || count < 1 || count > 256) {
    throw new UsageError(`--workers '${text}': a number of processes (1 to 256) or auto`);
  }
  if (count === 1) return 0;
  const refuse = (why: string) => new UsageError(`--workers cannot be used with ${why}`);
  if (target.kind === "command") throw refuse("a wrapped program (one program binds the port)");
  if (listen.kind === "inetd") throw refuse("--inetd (inetd hands over one socket)");
  if (listen.kind === "unix") throw refuse("--unix-listen (SO_REUSEPORT is for TCP)");
  if (given.flag("run-once")) throw refuse("--run-once (one session, one process)");
  if (target.kind === "token" && target.plugin === "ReverseConnection") {
    throw refuse("--token-plugin ReverseConnection (servers are parked in one process)");
  }
  return count;
}

/** `--drain-grace N`: a part of the drain, so shorter than `--drain-timeout`. */
function parseDrainGrace(given: GivenOptions): number {
  const grace = given.seconds("drain-grace");
  const timeout = given.seconds("drain-timeout");
  if (grace > 0 && grace >= timeout) {
    throw new UsageError(
      `--drain-grace ${grace} needs a longer --drain-timeout (now ${timeout}): the grace is the drain's first part`,
    );
  }
  return grace;
}

/** `--metrics-listen HOST:PORT` (a bare port is loopback: metrics are never public unless asked). */
function parseMetricsListen(
  text: string | undefined,
): { hostname: string; port: number } | undefined {
  if (text === undefined) return undefined;
  const parts = splitHostPort(text);
  const portText = parts ? parts.port : text;
  // 0: a free port (the banner says which).
  const port = portText === "0" ? 0 : parsePort(portText);
  if (port === undefined) {
    throw new UsageError(`--metrics-listen '${text}': expected HOST:PORT (e.g. 127.0.0.1:9100)`);
  }
  return { hostname: parts?.host || "127.0.0.1", port };
}

/** Whether `text` is one of `choices` (and so of their type). */
function isOneOf<T extends string>(choices: readonly T[], text: string): text is T {
  return choices.some((choice) => choice === text);
}

/** optparse's message for a value outside an option's choices. */
function invalidChoice(option: string, text: string, choices: readonly string[]): UsageError {
  return new UsageError(
    `option --${option}: invalid choice: '${text}' (choose from ${
      choices.map((c) => `'${c}'`).join(", ")
    })`,
  );
}

/** `--ssl-version` choices and the minimum version each sets (1.0 and 1.1 do not exist in the TLS stack). */
const MIN_VERSIONS = new Map<string, ServerTls["minVersion"]>([
  ["default", undefined],
  ["tlsv1_1", undefined],
  ["tlsv1_2", "TLSv1.2"],
  ["tlsv1_3", "TLSv1.3"],
]);

/** The listening side's TLS, and notes about what the TLS stack honours only in part. */
function parseServerTls(given: GivenOptions): { tls: ServerTls; notes: string[] } {
  if (given.value("ssl-ciphers") !== undefined) {
    throw new UsageError(
      "--ssl-ciphers: Deno's TLS stack (rustls) cannot restrict cipher suites; it offers only TLS 1.2/1.3 " +
        "AEAD suites with forward secrecy",
    );
  }
  const sslVersion = given.valueOrDefault("ssl-version");
  if (!MIN_VERSIONS.has(sslVersion)) {
    throw invalidChoice("ssl-version", sslVersion, [...MIN_VERSIONS.keys()]);
  }
  const notes = sslVersion === "tlsv1_1"
    ? [
      "--ssl-version tlsv1_1: TLS 1.0 and 1.1 are not offered by this TLS stack; TLS 1.2 is the minimum",
    ]
    : [];
  const tls: ServerTls = {
    cert: resolve(given.cwd, given.valueOrDefault("cert")),
    certGiven: given.value("cert") !== undefined,
    key: given.path("key"),
    keyPassword: readKeyPassword(given),
    minVersion: MIN_VERSIONS.get(sslVersion),
    verifyClient: given.flag("verify-client"),
    cafile: given.path("cafile"),
    only: given.flag("ssl-only"),
  };
  return { tls, notes };
}

/** `--key-password`, else the first line of `--key-password-file`, else `$WEBSOCKIFY_KEY_PASSWORD`. */
function readKeyPassword(given: GivenOptions): string | undefined {
  const password = given.value("key-password");
  if (password !== undefined) return password;
  const file = given.value("key-password-file");
  if (file !== undefined) {
    try {
      return Deno.readTextFileSync(resolve(given.cwd, file)).split(/\r?\n/)[0];
    } catch (error) {
      throw new UsageError(
        `--key-password-file: cannot read '${file}': ${
          error instanceof Error ? error.message : error
        }`,
      );
    }
  }
  return Deno.env.get("WEBSOCKIFY_KEY_PASSWORD");
}

function parseWeb(given: GivenOptions): WebSettings | undefined {
  const root = given.path("web");
  return root === undefined ? undefined : { root, fileOnly: given.flag("file-only") };
}

function parseWrapMode(given: GivenOptions): WrapMode {
  const mode = given.valueOrDefault("wrap-mode");
  if (!isOneOf(WRAP_MODES, mode)) throw invalidChoice("wrap-mode", mode, WRAP_MODES);
  return mode;
}

/** `--inetd`, `--unix-listen`, or the first positional. */
function parseListenArguments(given: GivenOptions): ListenSpec {
  const unixListen = given.path("unix-listen");
  if (given.flag("inetd")) {
    if (unixListen !== undefined) {
      throw new UsageError("--inetd and --unix-listen cannot be used together");
    }
    return { kind: "inetd" };
  }
  if (unixListen !== undefined) {
    return {
      kind: "unix",
      path: unixListen,
      mode: parseMode(given.valueOrDefault("unix-listen-mode")),
    };
  }
  const source = given.positionals.shift();
  if (source === undefined) throw new UsageError("Too few arguments");
  return parseListen(source);
}

/** Why a plugin name cannot be used: only the built-in plugins exist. */
function unknownPlugin(
  kind: "token" | "auth",
  name: string,
  builtIn: readonly string[],
): UsageError {
  return new UsageError(
    `--${kind}-plugin ${name}: not available (built in: ${
      builtIn.join(", ")
    }, also as websockify.${kind}_plugins.<name>; or a module: ./my_plugin.ts, file:, npm:; ` +
      `Python class paths cannot be loaded)`,
  );
}

/**
 * A plugin name as Python launch scripts spell it: `websockify.token_plugins.TokenFile` (or the
 * `websockify.auth_plugins.` one) names the built-in `TokenFile`.
 */
function pluginName(kind: "token" | "auth", name: string | undefined): string | undefined {
  const prefix = `websockify.${kind}_plugins.`;
  return name?.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** A plugin module (`./x.ts`, `file:`, `npm:`, ...) named where a plugin name may go; undefined for a name. */
function pluginModule(
  given: GivenOptions,
  option: string,
  value: string,
): PluginModule | undefined {
  try {
    return parsePluginModule(value, given.cwd);
  } catch (error) {
    throw new UsageError(`${option} ${value}: ${(error as Error).message}`);
  }
}

/** `--token-plugin` (or `--target-config`, which means TokenFile); the token options need it. */
function parseTokenPlugin(given: GivenOptions): TokenPluginName | PluginModule | undefined {
  const plugin = given.value("target-config") !== undefined
    ? "TokenFile"
    : pluginName("token", given.value("token-plugin"));
  if (plugin !== undefined && !isOneOf(TOKEN_PLUGINS, plugin)) {
    const module = pluginModule(given, "--token-plugin", plugin);
    if (!module) throw unknownPlugin("token", plugin, TOKEN_PLUGINS);
    return module;
  }
  if (
    plugin === undefined &&
    (given.value("token-source") !== undefined || given.flag("host-token") ||
      given.value("token-from") !== undefined)
  ) {
    throw new UsageError("--token-source, --token-from and --host-token require --token-plugin");
  }
  return plugin;
}

/** `--auth-plugin`, `--auth-source`, and `--web-auth` (which needs both a plugin and `--web`). */
function parseAuth(given: GivenOptions, web: WebSettings | undefined): AuthSettings | undefined {
  const name = pluginName("auth", given.value("auth-plugin"));
  let plugin: AuthSettings["plugin"] | undefined;
  if (name !== undefined) {
    plugin = isOneOf(AUTH_PLUGINS, name) ? name : pluginModule(given, "--auth-plugin", name);
    if (!plugin) throw unknownPlugin("auth", name, AUTH_PLUGINS);
  }
  if (plugin === undefined && given.value("auth-source") !== undefined) {
    throw new UsageError("--auth-source requires --auth-plugin");
  }
  if (given.flag("web-auth") && (plugin === undefined || web === undefined)) {
    throw new UsageError("--web-auth requires --auth-plugin and --web");
  }
  return plugin === undefined ? undefined : { plugin, source: given.value("auth-source") };
}

/** A token plugin, a wrapped command (after `--`), `--unix-target`, or the next positional. */
function parseTargetArguments(
  given: GivenOptions,
  listen: ListenSpec,
  tokenPlugin: TokenPluginName | PluginModule | undefined,
): TargetSpec {
  if (tokenPlugin !== undefined) return tokenTarget(given, tokenPlugin);
  if (given.afterTerminator !== undefined) return wrapTarget(given, listen, given.afterTerminator);
  const unixTarget = given.path("unix-target");
  if (unixTarget !== undefined) return { kind: "unix", path: unixTarget };
  const spec = given.positionals.shift();
  if (spec === undefined) throw new UsageError("Too few arguments");
  return parseTarget(spec);
}

function tokenTarget(given: GivenOptions, plugin: TokenPluginName | PluginModule): TargetSpec {
  const targetConfig = given.value("target-config");
  const source = targetConfig ?? given.value("token-source");
  if (typeof plugin !== "string") {
    // A module's source is its own business: handed over verbatim, and optional.
    return { kind: "token", plugin, source, tokenFrom: parseTokenFromOption(given) };
  }
  if (source === undefined) throw new UsageError(`--token-plugin ${plugin} needs --token-source`);
  return {
    kind: "token",
    plugin,
    source: tokenSource(plugin, source, given.cwd),
    tokenFrom: parseTokenFromOption(given),
    ...(targetConfig !== undefined ? { sourceOption: "--target-config" } : {}),
  };
}

/** `--token-from` (every value given, in order), or `--host-token` (its alias), or the default: `query`. */
function parseTokenFromOption(given: GivenOptions): TokenSource[] {
  const lists = given.all("token-from");
  if (given.flag("host-token")) {
    if (lists.length > 0) {
      throw new UsageError("--host-token is --token-from host: give one or the other");
    }
    return [{ kind: "host" }];
  }
  if (lists.length === 0) return [...DEFAULT_TOKEN_FROM];
  try {
    return parseTokenFrom(lists.join(","));
  } catch (error) {
    throw new UsageError(`--token-from ${(error as Error).message}`);
  }
}

/** `--allowed-targets` (every value given): rules for the targets a token plugin chooses. */
function parseAllowedTargetsOption(
  given: GivenOptions,
  target: TargetSpec,
): TargetRule[] | undefined {
  const lists = given.all("allowed-targets");
  if (lists.length === 0) return undefined;
  if (target.kind !== "token") {
    throw new UsageError(
      "--allowed-targets checks the targets a token plugin chooses: it needs --token-plugin",
    );
  }
  try {
    return lists.flatMap((list) => parseAllowedTargets(list));
  } catch (error) {
    throw new UsageError(`--allowed-targets ${(error as Error).message}`);
  }
}

/** `--allowed-origin` (repeatable; a value may also list several, comma-separated), serialized. */
function parseAllowedOrigins(given: GivenOptions): string[] {
  const origins = given.all("allowed-origin").flatMap((value) => value.split(","))
    .map((origin) => origin.trim()).filter((origin) => origin !== "");
  try {
    return [...new Set(origins.map(parseOrigin))];
  } catch (error) {
    throw new UsageError(`--allowed-origin ${(error as Error).message}`);
  }
}

/** A whole number of bytes, 0 or more (0: no limit). */
function parseByteCount(given: GivenOptions, name: WithDefault): number {
  const text = given.valueOrDefault(name);
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`option --${name}: invalid number of bytes: '${text}'`);
  }
  return value;
}

/**
 * A token source as the plugin will read it. A token service's source is a URL, kept; TokenRedis's is a Redis
 * address, checked here (a malformed one names the format) with a relative `@FILE` password made absolute; every
 * other built-in source is a path, made absolute (Python leaves it relative, #213).
 */
function tokenSource(plugin: TokenPluginName, source: string, cwd: string): string {
  if (plugin === "BaseTokenAPI" || plugin === "JSONTokenApi") return source;
  if (plugin === "ReverseConnection") {
    // Where servers dial in: a bare port is every interface, as for the listen address.
    const address = parseReverseSource(source);
    if (!address) {
      throw new UsageError(
        `--token-source '${source}': ReverseConnection takes [HOST:]PORT (where servers dial in)`,
      );
    }
    return formatReverseSource(address);
  }
  if (plugin !== "TokenRedis") return resolve(cwd, source);
  try {
    return formatRedisSource(parseRedisSource(source, cwd));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Wrap mode: as in Python, every positional after the listen address belongs to the command too. */
function wrapTarget(
  given: GivenOptions,
  listen: ListenSpec,
  afterTerminator: string[],
): TargetSpec {
  const command = [...given.positionals.splice(0), ...afterTerminator];
  if (command.length === 0) throw new UsageError("no command to wrap after --");
  if (listen.kind !== "tcp" || listen.port === 0) {
    throw new UsageError("wrap mode needs a TCP listen port (the port the program binds)");
  }
  if (given.value("unix-target") !== undefined) {
    throw new UsageError("--unix-target cannot be used with a wrapped command");
  }
  return { kind: "command", command, port: 0 };
}

/** `--ssl-target` (and its `--ssl-target-cafile`) on a TCP target. */
function withTargetTls(given: GivenOptions, target: TargetSpec): TargetSpec {
  if (given.flag("ssl-target")) {
    if (target.kind !== "tcp") throw new UsageError("--ssl-target needs a TCP target");
    return { ...target, tls: { cafile: given.path("ssl-target-cafile") } };
  }
  if (given.value("ssl-target-cafile") !== undefined) {
    throw new UsageError("--ssl-target-cafile goes with --ssl-target");
  }
  return target;
}

/** `--target-proxy-protocol`: v1 or v2. */
function parseTargetProxyProtocol(given: GivenOptions): "v1" | "v2" | undefined {
  const version = given.value("target-proxy-protocol");
  if (version === undefined) return undefined;
  const versions = ["v1", "v2"] as const;
  if (!isOneOf(versions, version)) throw invalidChoice("target-proxy-protocol", version, versions);
  return version;
}

/** `6080`, `host:6080`, `[::1]:6080` or `::1:6080`. Port 0 picks a free port (the banner shows it). */
function parseListen(text: string): ListenSpec {
  const parts = splitHostPort(text) ?? { host: "", port: text };
  const port = parsePort(parts.port, true);
  if (port === undefined) throw new UsageError(`Error parsing listen port: '${text}'`);
  return { kind: "tcp", hostname: parts.host, port };
}

/** `host:port`, `[::1]:port` or `::1:port`. */
function parseTarget(text: string): TargetSpec {
  const parts = splitHostPort(text);
  if (!parts || parts.host === "") throw new UsageError(`Error parsing target: '${text}'`);
  const port = parsePort(parts.port);
  if (port === undefined) throw new UsageError(`Error parsing target port: '${text}'`);
  return { kind: "tcp", hostname: parts.host, port };
}

/** An octal file mode, as `--unix-listen-mode` takes it. */
function parseMode(text: string): number {
  if (!/^[0-7]{1,4}$/.test(text)) {
    throw new UsageError(`Error parsing listen unix socket mode: '${text}'`);
  }
  return parseInt(text, 8);
}

/** `--trusted-proxy`, every time it is given (each a comma-separated list). */
function parseTrustedProxyOption(parsed: ParsedArgs): IpRange[] {
  try {
    return parseTrustedProxies(parsed.values.get("trusted-proxy") ?? []);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** An RFC 7230 token: what a subprotocol name is (RFC 6455 §4.1). */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `--subprotocol`, every time it is given (commas also separate names: a name has none). */
function parseSubprotocols(parsed: ParsedArgs): string[] {
  const names: string[] = [];
  for (const value of parsed.values.get("subprotocol") ?? []) {
    for (const raw of value.split(",")) {
      const name = raw.trim();
      if (!HTTP_TOKEN.test(name)) {
        throw new UsageError(
          `--subprotocol '${value}': ${
            name === "" ? "an empty name" : `'${name}' is not a subprotocol name`
          } (letters, digits and !#$%&'*+-.^_\`|~)`,
        );
      }
      if (!names.includes(name)) names.push(name);
    }
  }
  return names;
}

function parseLogFormat(given: GivenOptions): LogFormat {
  const format = given.valueOrDefault("log-format");
  if (!isOneOf(LOG_FORMATS, format)) throw invalidChoice("log-format", format, LOG_FORMATS);
  return format;
}
