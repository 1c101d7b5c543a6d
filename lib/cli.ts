/**
 * websockify's command line: every option of the Python implementation (reference §1.2), parsed with optparse's
 * habits into a typed, validated `Settings`. Usage errors are `UsageError`s (the caller prints usage, exits 2).
 *
 * @module
 */

import { resolve } from "node:path";
import { type OptionSpec, parseArgs, UsageError } from "./optparse.ts";
import { unknownPlugin } from "./plugins.ts";

export { UsageError };

/** Where the proxy listens. `hostname` "" means every interface, IPv4 and IPv6. */
export type ListenSpec =
  | { kind: "tcp"; hostname: string; port: number }
  | { kind: "unix"; path: string; mode: number }
  | { kind: "inetd" };

/**
 * Where a session's bytes go. `command` is a wrapped program: its port is chosen at start (0 until then).
 */
export type TargetSpec =
  | { kind: "tcp"; hostname: string; port: number; tls?: TargetTls }
  | { kind: "unix"; path: string }
  | { kind: "command"; command: string[]; port: number }
  /** Chosen per connection by a token plugin. */
  | {
    kind: "token";
    plugin: string;
    source: string;
    hostToken: boolean;
    /** The option that named `source`, for messages: `--token-source` unless `--target-config`. */
    sourceOption?: string;
  };

export type WrapMode = "exit" | "ignore" | "respawn";

/** TLS toward the target (`--ssl-target`): verified against the system CAs plus `cafile`, with SNI. */
export interface TargetTls {
  cafile?: string;
}

/** The listening side's TLS (wss:// on the same port). */
export interface ServerTls {
  /** Certificate chain (PEM; may also hold the key), absolute. TLS is offered when this file exists. */
  cert: string;
  /** `--cert` was given (else `cert` is the default `self.pem`). */
  certGiven: boolean;
  /** Private key (PEM), if not in the certificate file. */
  key?: string;
  keyPassword?: string;
  /** Minimum protocol version; undefined: the stack's default (TLS 1.2; 1.0 and 1.1 do not exist there). */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** Require a client certificate issued by a CA of `cafile`. */
  verifyClient: boolean;
  /** CA bundle (PEM) for client certificates; default: the system bundle. */
  cafile?: string;
  /** Refuse plain connections. */
  only: boolean;
}

/** `--web DIR`. */
export interface WebSettings {
  root: string;
  fileOnly: boolean;
}

/** Everything the command line decides. */
export interface Settings {
  listen: ListenSpec;
  /** Where every session goes. */
  target: TargetSpec;
  /** What to do when a wrapped program exits (wrap mode only). */
  wrapMode: WrapMode;
  tls: ServerTls;
  web: WebSettings | undefined;
  /** `--auth-plugin` and its source; `webAuth` applies it to static files too. */
  auth: { plugin: string; source: string | undefined } | undefined;
  webAuth: boolean;
  /** Startup notes about values the TLS stack honours only in part. */
  notes: string[];
  /** `--record`: absolute base name of the session files (`<base>.<n>`). */
  record: string | undefined;
  traffic: boolean;
  daemon: boolean;
  pidFile: string | undefined;
  runOnce: boolean;
  /** Seconds; 0 = off. */
  timeout: number;
  idleTimeout: number;
  heartbeat: number;
  logFile: string | undefined;
  syslog: string | undefined;
  legacySyslog: boolean;
  verbose: boolean;
  preferIpv6: boolean;
}

interface OptionDef extends OptionSpec {
  metavar?: string;
  help: string;
  /** Shown in --help. */
  defaultText?: string;
}

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
    help: "per frame traffic glyphs on stdout",
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
    defaultText: "0",
  },
  {
    long: "idle-timeout",
    takesValue: true,
    metavar: "SECONDS",
    help: "exit after SECONDS without an active connection (0: never)",
    defaultText: "0",
  },
  {
    long: "cert",
    takesValue: true,
    metavar: "FILE",
    help: "TLS certificate chain (PEM), resolved against the start directory",
    defaultText: "self.pem",
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
    defaultText: "default",
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
    defaultText: "0600",
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
    long: "wrap-mode",
    takesValue: true,
    metavar: "MODE",
    help: "when the wrapped program exits: exit, ignore or respawn",
    defaultText: "exit",
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
    help:
      "choose the target per connection from a token: TokenFile, ReadOnlyTokenFile, TokenFileName, " +
      "UnixDomainSocketDirectory",
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
    help: "take the token from the Host header instead of ?token=",
  },
  {
    long: "auth-plugin",
    takesValue: true,
    metavar: "CLASS",
    help: "authenticate connections: BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth",
  },
  {
    long: "auth-source",
    takesValue: true,
    metavar: "ARG",
    help: "the auth plugin's source",
  },
  {
    long: "heartbeat",
    takesValue: true,
    metavar: "SECONDS",
    help: "ping the client every SECONDS; close it after 2 unanswered (0: never)",
    defaultText: "0",
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
    long: "file-only",
    takesValue: false,
    help: "no directory listings in --web (404 instead)",
  },
];

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
    if (option.defaultText !== undefined) help += ` (default: ${option.defaultText})`;
    lines.push(
      names.length <= 26 ? `  ${names.padEnd(26)}${help}` : `  ${names}\n${" ".repeat(28)}${help}`,
    );
  }
  return lines.join("\n");
}

/** The outcome of a command line: run with settings, or print help. */
export type Command = { kind: "run"; settings: Settings } | { kind: "help" };

/** Parses and validates `argv`. Throws UsageError with a one-line reason. */
export function parseCommandLine(argv: string[], cwd = Deno.cwd()): Command {
  const parsed = parseArgs(argv, OPTIONS);
  if (parsed.flags.has("help")) return { kind: "help" };
  const value = (name: string) => parsed.values.get(name)?.at(-1);

  if (value("ssl-ciphers") !== undefined) {
    throw new UsageError(
      "--ssl-ciphers: Deno's TLS stack (rustls) cannot restrict cipher suites; it offers only TLS 1.2/1.3 " +
        "AEAD suites with forward secrecy",
    );
  }
  const notes: string[] = [];
  const sslVersion = value("ssl-version") ?? "default";
  const minVersions: Record<string, ServerTls["minVersion"]> = {
    default: undefined,
    tlsv1_1: undefined,
    tlsv1_2: "TLSv1.2",
    tlsv1_3: "TLSv1.3",
  };
  if (!(sslVersion in minVersions)) {
    throw new UsageError(
      `option --ssl-version: invalid choice: '${sslVersion}' (choose from 'default', 'tlsv1_1', 'tlsv1_2', 'tlsv1_3')`,
    );
  }
  if (sslVersion === "tlsv1_1") {
    notes.push(
      "--ssl-version tlsv1_1: TLS 1.0 and 1.1 are not offered by this TLS stack; TLS 1.2 is the minimum",
    );
  }
  const passwordFile = value("key-password-file");
  let keyPassword = value("key-password");
  if (keyPassword === undefined && passwordFile !== undefined) {
    try {
      keyPassword = Deno.readTextFileSync(resolve(cwd, passwordFile)).split(/\r?\n/)[0];
    } catch (error) {
      throw new UsageError(
        `--key-password-file: cannot read '${passwordFile}': ${(error as Error).message}`,
      );
    }
  }
  keyPassword ??= Deno.env.get("WEBSOCKIFY_KEY_PASSWORD");
  const path = (name: string) => {
    const text = value(name);
    return text === undefined ? undefined : resolve(cwd, text);
  };
  const tls: ServerTls = {
    cert: path("cert") ?? resolve(cwd, "self.pem"),
    certGiven: value("cert") !== undefined,
    key: path("key"),
    keyPassword,
    minVersion: minVersions[sslVersion],
    verifyClient: parsed.flags.has("verify-client"),
    cafile: path("cafile"),
    only: parsed.flags.has("ssl-only"),
  };
  const webRoot = path("web");
  const web = webRoot === undefined
    ? undefined
    : { root: webRoot, fileOnly: parsed.flags.has("file-only") };

  const wrapMode = value("wrap-mode") ?? "exit";
  if (!["exit", "ignore", "respawn"].includes(wrapMode)) {
    throw new UsageError(
      `option --wrap-mode: invalid choice: '${wrapMode}' (choose from 'exit', 'ignore', 'respawn')`,
    );
  }

  const positionals = [...parsed.positionals];
  const unixListen = value("unix-listen");
  let listen: ListenSpec;
  if (parsed.flags.has("inetd")) {
    if (unixListen !== undefined) {
      throw new UsageError("--inetd and --unix-listen cannot be used together");
    }
    listen = { kind: "inetd" };
  } else if (unixListen !== undefined) {
    listen = {
      kind: "unix",
      path: resolve(cwd, unixListen),
      mode: parseMode(value("unix-listen-mode")),
    };
  } else {
    const source = positionals.shift();
    if (source === undefined) throw new UsageError("Too few arguments");
    listen = parseListen(source);
  }

  const unixTarget = value("unix-target");
  const targetConfig = path("target-config");
  const tokenPlugin = targetConfig !== undefined ? "TokenFile" : value("token-plugin");
  const tokenProblem = tokenPlugin === undefined ? undefined : unknownPlugin("token", tokenPlugin);
  if (tokenProblem) throw new UsageError(tokenProblem);
  if (
    tokenPlugin === undefined &&
    (value("token-source") !== undefined || parsed.flags.has("host-token"))
  ) {
    throw new UsageError("--token-source and --host-token require --token-plugin");
  }
  const authPlugin = value("auth-plugin");
  const authProblem = authPlugin === undefined ? undefined : unknownPlugin("auth", authPlugin);
  if (authProblem) throw new UsageError(authProblem);
  if (authPlugin === undefined && value("auth-source") !== undefined) {
    throw new UsageError("--auth-source requires --auth-plugin");
  }
  if (parsed.flags.has("web-auth") && (authPlugin === undefined || webRoot === undefined)) {
    throw new UsageError("--web-auth requires --auth-plugin and --web");
  }
  let target: TargetSpec;
  if (tokenPlugin !== undefined) {
    const source = targetConfig ?? value("token-source");
    if (source === undefined) {
      throw new UsageError(`--token-plugin ${tokenPlugin} needs --token-source`);
    }
    // Every built-in source is a path: made absolute (Python leaves it relative, #213).
    target = {
      kind: "token",
      plugin: tokenPlugin,
      source: resolve(cwd, source),
      hostToken: parsed.flags.has("host-token"),
      ...(targetConfig !== undefined ? { sourceOption: "--target-config" } : {}),
    };
  } else if (parsed.afterTerminator !== undefined) {
    // Wrap mode: as in Python, every positional after the listen address belongs to the command too.
    const command = [...positionals.splice(0), ...parsed.afterTerminator];
    if (command.length === 0) throw new UsageError("no command to wrap after --");
    if (listen.kind !== "tcp" || listen.port === 0) {
      throw new UsageError("wrap mode needs a TCP listen port (the port the program binds)");
    }
    if (unixTarget !== undefined) {
      throw new UsageError("--unix-target cannot be used with a wrapped command");
    }
    target = { kind: "command", command, port: 0 };
  } else if (unixTarget !== undefined) {
    target = { kind: "unix", path: resolve(cwd, unixTarget) };
  } else {
    const spec = positionals.shift();
    if (spec === undefined) throw new UsageError("Too few arguments");
    target = parseTarget(spec);
  }
  if (positionals.length > 0) throw new UsageError("Too many arguments");
  if (parsed.flags.has("legacy-syslog") && value("syslog") === undefined) {
    throw new UsageError("--legacy-syslog requires --syslog");
  }
  const seconds = (name: string) => {
    const text = value(name) ?? "0";
    if (!/^\d+$/.test(text)) {
      throw new UsageError(`option --${name}: invalid integer value: '${text}'`);
    }
    return Number(text);
  };
  if (parsed.flags.has("ssl-target")) {
    if (target.kind !== "tcp") throw new UsageError("--ssl-target needs a TCP target");
    target.tls = { cafile: path("ssl-target-cafile") };
  } else if (value("ssl-target-cafile") !== undefined) {
    throw new UsageError("--ssl-target-cafile goes with --ssl-target");
  }

  return {
    kind: "run",
    settings: {
      listen,
      target,
      wrapMode: wrapMode as WrapMode,
      tls,
      web,
      auth: authPlugin === undefined
        ? undefined
        : { plugin: authPlugin, source: value("auth-source") },
      webAuth: parsed.flags.has("web-auth"),
      notes,
      record: path("record"),
      traffic: parsed.flags.has("traffic"),
      daemon: parsed.flags.has("daemon"),
      pidFile: path("pid-file"),
      runOnce: parsed.flags.has("run-once"),
      timeout: seconds("timeout"),
      idleTimeout: seconds("idle-timeout"),
      heartbeat: seconds("heartbeat"),
      logFile: path("log-file"),
      syslog: value("syslog"),
      legacySyslog: parsed.flags.has("legacy-syslog"),
      verbose: parsed.flags.has("verbose"),
      preferIpv6: parsed.flags.has("prefer-ipv6"),
    },
  };
}

/** Splits `host:port` at the last colon and strips IPv6 brackets. */
function splitHostPort(text: string): [string, string] | undefined {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return undefined;
  return [text.slice(0, colon).replace(/^\[/, "").replace(/\]$/, ""), text.slice(colon + 1)];
}

function parsePort(text: string, allowZero: boolean): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 && (allowZero || port > 0) ? port : undefined;
}

/** `6080`, `host:6080`, `[::1]:6080` or `::1:6080`. Port 0 picks a free port (the banner shows it). */
export function parseListen(text: string): ListenSpec {
  const parts = splitHostPort(text) ?? ["", text];
  const port = parsePort(parts[1], true);
  if (port === undefined) throw new UsageError(`Error parsing listen port: '${text}'`);
  return { kind: "tcp", hostname: parts[0], port };
}

/** `host:port`, `[::1]:port` or `::1:port`. */
export function parseTarget(text: string): TargetSpec {
  const parts = splitHostPort(text);
  if (!parts || parts[0] === "") throw new UsageError(`Error parsing target: '${text}'`);
  const port = parsePort(parts[1], false);
  if (port === undefined) throw new UsageError(`Error parsing target port: '${text}'`);
  return { kind: "tcp", hostname: parts[0], port };
}

function parseMode(text = "0600"): number {
  if (!/^[0-7]{1,4}$/.test(text)) {
    throw new UsageError(`Error parsing listen unix socket mode: '${text}'`);
  }
  return parseInt(text, 8);
}
