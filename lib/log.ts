/**
 * Logging in websockify's formats: server lines are bare messages; per-request lines carry an Apache-like prefix
 * `<client> - - [23/Nov/2026 00:57:38] <message>` (local time). Lines go to every sink (stderr by default; the
 * log file and syslog sinks plug in here).
 *
 * `--log-format json` writes one JSON object per line instead, with stable keys: `time` (ISO 8601, UTC),
 * `level`, `msg` (the message, without the request prefix), then the {@link LogFields} a call site gives
 * (`client`, `client_port`, `path`, `status`, ...). Text lines never show those fields: they stay as they were.
 *
 * Every line is passed through `escapeControls` (text.ts) on its way out: messages carry client-sent text (request lines,
 * paths, tokens, headers), and a control character in it must neither start a forged line nor reach a terminal.
 *
 * @module
 */

import { escapeControls } from "./text.ts";

export type Level = "debug" | "info" | "warning" | "error";

/** How lines are written: websockify's text, or one JSON object per line. */
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = typeof LOG_FORMATS[number];

/**
 * What a JSON line says besides its message, where it applies (text lines ignore these). `path` is already
 * redacted (lib/secrets.ts): a token never appears in clear.
 */
export interface LogFields {
  /** The client's address (the one --proxy-protocol or a --trusted-proxy gave, if any). */
  client?: string;
  client_port?: number;
  /** Where the session goes (`host:port`, a unix socket, a program). */
  target?: string;
  /** The token's short hash (`#1a2b3c4d`), never the token. */
  token_hash?: string;
  /** The request target, tokens redacted. */
  path?: string;
  /** The HTTP status answered. */
  status?: number;
  /** Payload bytes from the client to the target. */
  bytes_up?: number;
  /** Payload bytes from the target to the client. */
  bytes_down?: number;
  duration_ms?: number;
  /** The WebSocket close code a session ended with. */
  close_code?: number;
  /** Who ended the session: `client`, `target`, `server`... */
  closed_by?: string;
}

/** The fields' order in a JSON line (after time, level and msg). */
const FIELD_ORDER: readonly (keyof LogFields)[] = [
  "client",
  "client_port",
  "target",
  "token_hash",
  "path",
  "status",
  "bytes_up",
  "bytes_down",
  "duration_ms",
  "close_code",
  "closed_by",
];

/**
 * One JSON log line: `{"time":"2026-11-23T00:57:38.123Z","level":"info","msg":"...", ...fields}`. Strings have
 * their control characters escaped as text lines do (`escapeControls`), then JSON's own escaping applies;
 * undefined fields are left out.
 */
export function formatJsonLine(
  level: Level,
  message: string,
  fields: LogFields | undefined,
  date = new Date(),
): string {
  const object: Record<string, string | number> = {
    time: date.toISOString(),
    level,
    msg: escapeControls(message),
  };
  if (fields) {
    for (const key of FIELD_ORDER) {
      const value = fields[key];
      if (value === undefined) continue;
      object[key] = typeof value === "string" ? escapeControls(value) : value;
    }
  }
  return JSON.stringify(object);
}

/** Where log lines go. `level` lets a sink such as syslog choose a severity. */
export interface LogSink {
  write(line: string, level: Level): void;
}

const encoder = new TextEncoder();

/** Writes each line to stderr synchronously, so lines keep their order and survive an exit right after. */
export const stderrSink: LogSink = {
  write(line) {
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      // stderr closed (daemonized, or the reader went away): logging must never take the server down.
    }
  },
};

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `23/Nov/2026 00:57:38`, local time, as Python's http.server logs it. */
export function logTimestamp(date = new Date()): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/**
 * The logger: `verbose` (-v) lets debug lines through; `format` (--log-format) chooses text or JSON lines. The
 * optional `fields` of each call are what a JSON line carries besides the message.
 */
export class Logger {
  verbose = false;
  format: LogFormat = "text";
  readonly sinks: LogSink[];

  constructor(sinks: LogSink[] = [stderrSink]) {
    this.sinks = sinks;
  }

  #emit(level: Level, line: string): void {
    if (level === "debug" && !this.verbose) return;
    const safe = escapeControls(line);
    for (const sink of this.sinks) sink.write(safe, level);
  }

  #write(level: Level, message: string, fields: LogFields | undefined): void {
    if (level === "debug" && !this.verbose) return;
    if (this.format === "json") {
      const line = formatJsonLine(level, message, fields);
      for (const sink of this.sinks) sink.write(line, level);
    } else {
      this.#emit(level, message);
    }
  }

  debug(message: string, fields?: LogFields): void {
    this.#write("debug", message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.#write("info", message, fields);
  }
  warning(message: string, fields?: LogFields): void {
    this.#write("warning", message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.#write("error", message, fields);
  }

  /**
   * A per-request line: `<client> - - [time] <message>` (text); in JSON the message alone, with `client` among
   * its fields.
   */
  request(client: string, message: string, level: Level = "info", fields?: LogFields): void {
    if (level === "debug" && !this.verbose) return;
    if (this.format === "json") this.#write(level, message, { client, ...fields });
    else this.#emit(level, `${client} - - [${logTimestamp()}] ${message}`);
  }
}

/** A peer address for logs: IPv4-mapped IPv6 shown as plain IPv4, unix sockets by path. */
export function describeAddress(address: Deno.Addr): string {
  if (address.transport === "tcp" || address.transport === "udp") {
    const host = address.hostname.startsWith("::ffff:") && address.hostname.includes(".")
      ? address.hostname.slice(7)
      : address.hostname;
    return host;
  }
  if (address.transport === "unix" || address.transport === "unixpacket") {
    return address.path || "unix";
  }
  return "unknown";
}
