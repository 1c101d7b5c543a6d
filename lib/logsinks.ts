/**
 * Log destinations besides stderr: a file (`--log-file`) and syslog (`--syslog`), with websockify's framing.
 *
 * @module
 */

import dgram from "node:dgram";
import dns from "node:dns";
import { sleep } from "./deadline.ts";
import { parsePort, splitHostOptionalPort } from "./hostport.ts";
import { writeAll } from "./io.ts";
import type { Level, LogSink } from "./log.ts";

const encoder = new TextEncoder();

/** Appends every line to a file, synchronously (lines stay in order and survive an exit right after). */
export class FileSink implements LogSink {
  #file: Deno.FsFile;

  constructor(readonly path: string) {
    this.#file = Deno.openSync(path, { append: true, create: true });
  }

  /**
   * Opens the file again by its name (SIGHUP after logrotate moved it away); if that fails, lines keep going to
   * the file already open.
   */
  reopen(): void {
    if (this.#closed) return;
    let next: Deno.FsFile;
    try {
      next = Deno.openSync(this.path, { append: true, create: true });
    } catch {
      return;
    }
    this.#file.close();
    this.#file = next;
  }

  write(line: string): void {
    try {
      const bytes = encoder.encode(line + "\n");
      for (let offset = 0; offset < bytes.length;) {
        offset += this.#file.writeSync(bytes.subarray(offset));
      }
    } catch {
      // A full disk must not take the proxy down.
    }
  }

  #closed = false;

  /** Closes the file (once; later calls do nothing). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }
}

/** Backlog bound: beyond it, lines are dropped rather than memory grown. */
const MAX_QUEUED = 1000;

const SEVERITY: Record<Level, number> = { error: 3, warning: 4, info: 6, debug: 7 };
/** Facilities: `daemon` when backgrounded (-D), `user` otherwise, as Python websockify. */
export const FACILITY = { user: 1, daemon: 3 } as const;

export interface SyslogFormat {
  facility: number;
  legacy: boolean;
  hostname: string;
  pid: number;
}

/**
 * One syslog message: RFC 5424 `<PRI>1 2026-11-23T01:02:03Z host websockify PID - - msg` (UTF-8 with a BOM when
 * not ASCII), or the legacy BSD `<PRI>websockify[PID]: msg`. Newlines become spaces.
 */
export function formatSyslog(
  line: string,
  level: Level,
  format: SyslogFormat,
  now = new Date(),
): Uint8Array {
  const priority = format.facility * 8 + SEVERITY[level];
  const message = line.replace(/[\r\n]+/g, " ");
  if (format.legacy) return encoder.encode(`<${priority}>websockify[${format.pid}]: ${message}`);
  const timestamp = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const header = `<${priority}>1 ${timestamp} ${format.hostname} websockify ${format.pid} - - `;
  // deno-lint-ignore no-control-regex
  const bom = /^[\x00-\x7f]*$/.test(message) ? "" : "\ufeff";
  return encoder.encode(header + bom + message);
}

/**
 * `--syslog host[:port]`: `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (port 514). Throws
 * with the option's name on a bad port or an empty host.
 */
export function parseSyslogHost(address: string): { host: string; port: number } {
  const { host, port: portText = "514" } = splitHostOptionalPort(address);
  const port = parsePort(portText);
  if (port === undefined) throw new Error(`--syslog '${address}': bad port`);
  if (host === "") throw new Error(`--syslog '${address}': no host`);
  return { host, port };
}

type Transport =
  | { kind: "udp"; socket: dgram.Socket; host: string; port: number }
  | { kind: "unix-dgram"; conn: Deno.DatagramConn; path: string; dir: string }
  | { kind: "unix-stream"; conn: Deno.Conn };

/**
 * Sends log lines to syslog: a unix socket path (`/dev/log`, datagram or stream) or UDP `host[:port]` (514).
 * Sends are fire-and-forget: a slow or absent syslog never blocks or stops the proxy.
 */
export class SyslogSink implements LogSink {
  readonly #format: SyslogFormat;
  readonly #transport: Transport;

  private constructor(transport: Transport, format: SyslogFormat) {
    this.#transport = transport;
    this.#format = format;
  }

  static async open(address: string, format: SyslogFormat): Promise<SyslogSink> {
    if (address.includes("/")) return new SyslogSink(await openUnix(address), format);
    const { host, port } = parseSyslogHost(address);
    // The socket's family is the host's (an IPv6-only name needs udp6); sends look the name up again.
    const { family } = await dns.promises.lookup(host);
    const socket = dgram.createSocket(family === 6 ? "udp6" : "udp4");
    socket.on("error", () => {});
    // Bound now: sends on an unbound socket wait in an implicit-bind queue that Deno's polyfill replays in
    // reverse order (seen in tests).
    await new Promise<void>((resolve) => socket.bind(0, resolve));
    socket.unref();
    return new SyslogSink({ kind: "udp", socket, host, port }, format);
  }

  /** Messages waiting to be sent, oldest first; sends go one at a time so the order holds. */
  readonly #queue: Uint8Array[] = [];
  #sending = false;

  write(line: string, level: Level): void {
    if (this.#queue.length >= MAX_QUEUED) return; // a syslog that cannot keep up loses lines, never memory
    this.#queue.push(formatSyslog(line, level, this.#format));
    if (!this.#sending) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#sending = true;
    while (this.#queue.length > 0) {
      await this.#send(this.#queue.shift()!).catch(() => {});
    }
    this.#sending = false;
  }

  #send(message: Uint8Array): Promise<unknown> {
    const transport = this.#transport;
    switch (transport.kind) {
      case "udp":
        return new Promise((resolve) =>
          transport.socket.send(message, transport.port, transport.host, resolve)
        );
      case "unix-dgram":
        return transport.conn.send(message, { transport: "unixpacket", path: transport.path });
      case "unix-stream": {
        // Stream sockets need a delimiter between messages.
        const framed = new Uint8Array(message.length + 1);
        framed.set(message);
        framed[message.length] = 0x0a;
        return writeAll(transport.conn, framed);
      }
    }
  }

  /** Waits (bounded) for queued messages to go out, e.g. before exit. */
  async flush(ms = 1000): Promise<void> {
    const end = performance.now() + ms;
    while ((this.#sending || this.#queue.length > 0) && performance.now() < end) {
      await sleep(5);
    }
  }

  #closed = false;

  /** Closes the socket and removes a datagram client's directory (once; later calls do nothing). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const transport = this.#transport;
    if (transport.kind === "udp") transport.socket.close();
    if (transport.kind === "unix-dgram") {
      transport.conn.close();
      try {
        Deno.removeSync(transport.dir, { recursive: true });
      } catch { /* already gone */ }
    }
    if (transport.kind === "unix-stream") transport.conn.close();
  }
}

/** A unix syslog socket: stream if it accepts a stream connection, else datagram (needs --unstable-net). */
async function openUnix(path: string): Promise<Transport> {
  try {
    return { kind: "unix-stream", conn: await Deno.connect({ transport: "unix", path }) };
  } catch (streamError) {
    if (streamError instanceof Deno.errors.NotCapable) {
      // Deno grants paths under /dev to --allow-all only.
      throw new Error(`--syslog '${path}': ${streamError.message} (deno task start has it)`);
    }
    const listenDatagram = (Deno as unknown as { listenDatagram?: typeof Deno.listenDatagram })
      .listenDatagram;
    if (!listenDatagram) {
      throw new Error(
        `--syslog '${path}': cannot reach it as a stream socket (${
          (streamError as Error).message
        }); ` +
          "datagram sockets such as /dev/log need Deno's --unstable-net flag (deno task start has it)",
      );
    }
    // A datagram client needs an address of its own: a socket in a private directory, removed at close.
    const dir = await Deno.makeTempDir({ prefix: "websockify-syslog-" });
    try {
      await Deno.stat(path);
      const conn = listenDatagram({ transport: "unixpacket", path: `${dir}/client.sock` });
      return { kind: "unix-dgram", conn, path, dir };
    } catch (error) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw new Error(`--syslog '${path}': cannot reach it: ${(error as Error).message}`);
    }
  }
}
