/**
 * Logging in websockify's formats: server lines are bare messages; per-request lines carry an Apache-like prefix
 * `<client> - - [23/Nov/2026 00:57:38] <message>` (local time). Lines go to every sink (stderr by default; the
 * log file and syslog sinks plug in here).
 *
 * Every line is passed through `escapeControls` (text.ts) on its way out: messages carry client-sent text (request lines,
 * paths, tokens, headers), and a control character in it must neither start a forged line nor reach a terminal.
 *
 * @module
 */

import { escapeControls } from "./text.ts";

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
