/**
 * Logging in websockify's formats: server lines are bare messages; per-request lines carry an Apache-like prefix
 * `<client> - - [23/Nov/2026 00:57:38] <message>` (local time). Lines go to every sink (stderr by default; the
 * log file and syslog sinks plug in here).
 *
 * Every line is passed through `escapeControls` on its way out: messages carry client-sent text (request lines,
 * paths, tokens, headers), and a control character in it must neither start a forged line nor reach a terminal.
 *
 * @module
 */

export type Level = "debug" | "info" | "warning" | "error";

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

/**
 * Characters that never appear raw in a log line: C0 controls, DEL, C1 controls, the Unicode line and paragraph
 * separators, and the bidirectional embedding/override/isolate controls (they reorder what a terminal shows).
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * A line with its control characters made visible: `\n`, `\r`, `\t`, `\xNN` (other C0, DEL, C1), `\uNNNN`
 * (U+2028, U+2029, bidi controls). Everything else, backslashes included, is kept as is.
 */
export function escapeControls(line: string): string {
  return line.replace(CONTROL, (c) => {
    const short = SHORT_ESCAPES[c];
    if (short) return short;
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `23/Nov/2026 00:57:38`, local time, as Python's http.server logs it. */
export function logTimestamp(date = new Date()): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** The logger: `verbose` (-v) lets debug lines through. */
export class Logger {
  verbose = false;
  readonly sinks: LogSink[];

  constructor(sinks: LogSink[] = [stderrSink]) {
    this.sinks = sinks;
  }

  #emit(level: Level, line: string): void {
    if (level === "debug" && !this.verbose) return;
    const safe = escapeControls(line);
    for (const sink of this.sinks) sink.write(safe, level);
  }

  debug(message: string): void {
    this.#emit("debug", message);
  }
  info(message: string): void {
    this.#emit("info", message);
  }
  warning(message: string): void {
    this.#emit("warning", message);
  }
  error(message: string): void {
    this.#emit("error", message);
  }

  /** A per-request line: `<client> - - [time] <message>`. */
  request(client: string, message: string, level: Level = "info"): void {
    if (level === "debug" && !this.verbose) return;
    this.#emit(level, `${client} - - [${logTimestamp()}] ${message}`);
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
