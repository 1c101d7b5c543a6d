/**
 * Test peers: real TCP targets, the proxy in-process or as a child process, and a raw WebSocket client that
 * speaks bytes (for what browsers' WebSocket cannot send). Every wait is bounded.
 */

import { parseCommandLine } from "../lib/cli.ts";
import { sleep } from "../lib/deadline.ts";
import { findHeadEnd } from "../lib/http.ts";
import { writeAll } from "../lib/io.ts";
import { Logger, type LogSink } from "../lib/log.ts";
import { openListener } from "../lib/listen.ts";
import { loadPlugins } from "../lib/plugins.ts";
import { DEFAULT_TIMEOUTS, ProxyServer, type ServerTimeouts } from "../lib/server.ts";
import { resolveSettings } from "../lib/startup.ts";
import { encodeFrame, Opcode } from "../lib/websocket/frames.ts";
import { Receiver, type ReceiverEvent } from "../lib/websocket/receiver.ts";

export const ROOT = new URL("..", import.meta.url).pathname;

/** Rejects after `ms` with `what` in the message. */
export function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export { sleep };

/** Polls `condition` every 20 ms until true; throws after `ms`. */
export async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Open file descriptors of a process (Linux /proc). */
export function openFiles(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/**
 * This process's live JavaScript memory (heap in use + external buffers) after a full collection, in KiB. The
 * test task runs with --expose-gc for it.
 */
export function liveMemoryKiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --v8-flags=--expose-gc (deno task test does)");
  gc();
  gc();
  const usage = Deno.memoryUsage();
  return (usage.heapUsed + usage.external) >> 10;
}

/** The start of a TLS ClientHello: enough for the proxy to begin a handshake, not to finish one. */
// deno-fmt-ignore
export const TLS_START = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]);

// ---- TCP targets -----------------------------------------------------------------------------------------------

/** A real TCP server on loopback; `handler` runs per connection. Tracks its connections for tests. */
export class TcpTarget {
  readonly listener: Deno.TcpListener;
  readonly connections: Deno.Conn[] = [];
  readonly #handlers: Promise<void>[] = [];
  #loop: Promise<void>;

  constructor(handler: (conn: Deno.Conn) => Promise<void>, hostname = "127.0.0.1") {
    const listener = Deno.listen({ hostname, port: 0 });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.connections.push(conn);
        this.#handlers.push(
          handler(conn).catch(() => {}).finally(() => {
            try {
              conn.close();
            } catch { /* closed by the handler */ }
          }),
        );
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async close(): Promise<void> {
    try {
      this.listener.close();
    } catch { /* already closed */ }
    for (const conn of this.connections) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await this.#loop;
    await Promise.all(this.#handlers);
  }
}

/** Echoes every byte back. */
export function echoTarget(hostname = "127.0.0.1"): TcpTarget {
  return new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return;
      await writeAll(conn, buffer.subarray(0, n));
    }
  }, hostname);
}

/** Collects everything a connection sends until EOF; `received` resolves with it. */
export function sinkTarget(): TcpTarget & { received: Promise<Uint8Array>[] } {
  const received: Promise<Uint8Array>[] = [];
  const target = new TcpTarget(async (conn) => {
    let resolve!: (bytes: Uint8Array) => void;
    received.push(new Promise((r) => resolve = r));
    resolve(await readToEnd(conn));
  });
  return Object.assign(target, { received });
}

/** Reads a stream until EOF (or an error, which ends it too). */
export async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
    }
  } catch { /* reset: what arrived is what we have */ }
  return concat(parts);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// ---- the proxy -------------------------------------------------------------------------------------------------

/** Log lines captured from an in-process proxy. */
export class CapturedLog implements LogSink {
  readonly lines: string[] = [];
  write(line: string): void {
    this.lines.push(line);
  }
  has(pattern: RegExp): boolean {
    return this.lines.some((line) => pattern.test(line));
  }
}

/** The proxy running in this process on a free loopback port. */
export interface InProcessProxy {
  port: number;
  log: CapturedLog;
  server: ProxyServer;
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts the proxy in-process with the given command-line arguments (listen address added: a free port, unless
 * the arguments say `--unix-listen`; `port` is then 0).
 */
export async function startProxy(
  args: string[],
  timeouts: Partial<ServerTimeouts> = {},
): Promise<InProcessProxy> {
  const onUnixSocket = args.some((arg) => arg.startsWith("--unix-listen"));
  const command = parseCommandLine(onUnixSocket ? args : ["127.0.0.1:0", ...args]);
  if (command.kind !== "run") throw new Error("not a run command");
  const resolved = await resolveSettings(command.settings);
  if ("problem" in resolved) throw new Error(resolved.problem.message);
  const { settings } = resolved;
  const log = new CapturedLog();
  const logger = new Logger([log]);
  logger.verbose = true;
  const listener = await openListener(settings.listen);
  const plugins = await loadPlugins(settings, (message) => logger.warning(message));
  const server = new ProxyServer(
    settings,
    listener,
    logger,
    { ...DEFAULT_TIMEOUTS, ...timeouts },
    plugins,
  );
  const served = server.serve();
  const port = listener.addr.transport === "tcp" ? listener.addr.port : 0;
  return {
    port,
    log,
    server,
    url: `ws://127.0.0.1:${port}/`,
    async stop() {
      await server.shutdown();
      await deadline(served, 10000, "in-process proxy stop");
    },
  };
}

/** The proxy as a child process (`deno run main.ts`), with its stderr collected. */
export class ProxyProcess {
  readonly child: Deno.ChildProcess;
  stderr = "";
  stdout = "";
  readonly #reading: Promise<void>;

  constructor(
    args: string[],
    options: {
      env?: Record<string, string>;
      shell?: string;
      denoFlags?: string[];
      stdin?: "null";
      /** Runs `deno task <task> ...args` in the project (its flags, as a user types it) instead of `deno run`. */
      task?: string;
    } = {},
  ) {
    const denoArgs = options.task ? ["task", options.task, ...args] : [
      "run",
      "--allow-all",
      "--frozen",
      ...(options.denoFlags ?? []),
      `${ROOT}main.ts`,
      ...args,
    ];
    const command = options.shell
      ? new Deno.Command("sh", {
        args: ["-c", `${options.shell} exec "$0" "$@"`, Deno.execPath(), ...denoArgs],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1", ...options.env },
      })
      : new Deno.Command(Deno.execPath(), {
        args: denoArgs,
        cwd: options.task ? ROOT : undefined,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1", ...options.env },
      });
    this.child = command.spawn();
    const decoder = new TextDecoder();
    const pump = async (stream: ReadableStream<Uint8Array>, into: "stderr" | "stdout") => {
      for await (const chunk of stream) this[into] += decoder.decode(chunk, { stream: true });
    };
    this.#reading = Promise.all([
      pump(this.child.stderr, "stderr"),
      pump(this.child.stdout, "stdout"),
    ]).then(() => {});
  }

  /** Waits for the banner and returns the listening port. */
  async port(ms = 15000): Promise<number> {
    await waitFor(() => /Listen on .*:(\d+)/.test(this.stderr) || this.exited, ms, "the banner");
    const match = this.stderr.match(/Listen on .*:(\d+)/);
    if (!match) throw new Error(`proxy did not start:\n${this.stderr}`);
    return Number(match[1]);
  }

  exited = false;

  /** Resolves with the exit status; bounded. */
  async status(ms = 15000): Promise<Deno.CommandStatus> {
    const status = await deadline(this.child.status, ms, "proxy exit");
    this.exited = true;
    // Its output pipes close when the last holder exits: a program it launched may still hold them.
    await deadline(this.#reading, 2000, "output pipes").catch(() => {});
    return status;
  }

  /** Stops the process (SIGTERM, then SIGKILL) and waits for it. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* already exited */ }
    try {
      return await this.status(8000);
    } catch {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already exited */ }
      return await this.status(5000);
    }
  }

  /** Resident memory of the process in KiB (Linux /proc). */
  rssKiB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.child.pid}/status`);
    return Number(status.match(/VmRSS:\s+(\d+)/)![1]);
  }
}

// ---- a raw WebSocket client ------------------------------------------------------------------------------------

export const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** A WebSocket client that sends exactly the bytes a test chooses and decodes what the server sends. */
export class RawClient {
  readonly conn: Deno.Conn;
  readonly #receiver = new Receiver({ requireMask: false });
  readonly #events: ReceiverEvent[] = [];
  #buffered = new Uint8Array(0);
  #eof = false;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** A client over an already open connection (no handshake sent yet). */
  static wrap(conn: Deno.Conn): RawClient {
    return new RawClient(conn);
  }

  /** Connects over TLS (to "localhost", trusting `caCert`) and completes a handshake. */
  static async openTls(
    port: number,
    caCert: string,
    headers: Record<string, string> = {},
  ): Promise<RawClient> {
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [caCert] });
    const client = new RawClient(conn);
    const response = await client.request(upgradeRequest(headers));
    if (!response.startsWith("HTTP/1.1 101")) throw new Error(`no 101:\n${response}`);
    return client;
  }

  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connects and completes a handshake; throws unless the answer is 101. */
  static async open(port: number, headers: Record<string, string> = {}): Promise<RawClient> {
    const client = await RawClient.connect(port);
    const response = await client.request(upgradeRequest(headers));
    if (!response.startsWith("HTTP/1.1 101")) throw new Error(`no 101:\n${response}`);
    return client;
  }

  async send(bytes: Uint8Array): Promise<void> {
    await writeAll(this.conn, bytes);
  }

  /** Sends a masked frame. */
  sendFrame(opcode: number, payload: Uint8Array | string = new Uint8Array(0), fin = true) {
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    return this.send(encodeFrame(opcode, bytes, { fin, mask: MASK }));
  }

  /** Sends a request and returns the response head (the text up to the blank line). */
  async request(text: string): Promise<string> {
    await this.send(new TextEncoder().encode(text));
    return await this.readHead();
  }

  async readHead(ms = 5000): Promise<string> {
    const parts: Uint8Array[] = [this.#buffered];
    const buffer = new Uint8Array(4096);
    await deadline(
      (async () => {
        while (findHeadEnd(concat(parts)) < 0) {
          const n = await this.conn.read(buffer);
          if (n === null) throw new Error(`closed before a response head: ${concatText(parts)}`);
          parts.push(buffer.slice(0, n));
        }
      })(),
      ms,
      "response head",
    );
    const all = concat(parts);
    const end = findHeadEnd(all);
    this.#buffered = all.slice(end);
    return new TextDecoder().decode(all.subarray(0, end));
  }

  /** Reads until the server closes; returns all the bytes after anything already consumed. */
  async readRest(ms = 5000): Promise<Uint8Array> {
    const rest = await deadline(readToEnd(this.conn), ms, "server close");
    const out = concat([this.#buffered, rest]);
    this.#buffered = new Uint8Array(0);
    this.#eof = true;
    return out;
  }

  /** The next decoded event from the server; undefined at EOF. */
  async next(ms = 5000): Promise<ReceiverEvent | undefined> {
    return await deadline(this.#next(), ms, "next frame");
  }

  async #next(): Promise<ReceiverEvent | undefined> {
    const buffer = new Uint8Array(65536);
    while (this.#events.length === 0) {
      if (this.#buffered.length > 0) {
        const chunk = this.#buffered;
        this.#buffered = new Uint8Array(0);
        this.#collect(chunk);
        continue;
      }
      if (this.#eof) return undefined;
      let n: number | null;
      try {
        n = await this.conn.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#eof = true;
        return undefined;
      }
      this.#collect(buffer.subarray(0, n));
    }
    return this.#events.shift();
  }

  #collect(chunk: Uint8Array): void {
    for (const event of this.#receiver.receive(chunk)) {
      // Data views point into a reused buffer: copy them out.
      this.#events.push(
        event.kind === "data" ? { ...event, payload: event.payload.slice() } : event,
      );
    }
  }

  /** Collects data payload bytes until `count` bytes arrived; fails on a close or EOF first. */
  async readData(count: number, ms = 10000): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    const end = performance.now() + ms;
    while (have < count) {
      const event = await this.next(Math.max(1, end - performance.now()));
      if (!event) throw new Error(`EOF after ${have} of ${count} bytes`);
      if (event.kind === "data") {
        parts.push(event.payload);
        have += event.payload.length;
      } else if (event.kind === "close" || event.kind === "error") {
        throw new Error(`${event.kind} ${JSON.stringify(event)} after ${have} of ${count} bytes`);
      }
    }
    return concat(parts);
  }

  /** The next close event, skipping data; undefined if the server closed TCP without one. */
  async nextClose(ms = 5000): Promise<{ code: number | undefined; reason: string } | undefined> {
    const end = performance.now() + ms;
    while (true) {
      const event = await this.next(Math.max(1, end - performance.now()));
      if (!event) return undefined;
      if (event.kind === "close") return event;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

function concatText(parts: Uint8Array[]): string {
  return JSON.stringify(new TextDecoder().decode(concat(parts)).slice(0, 200));
}

/** A handshake request; `headers` override or add (an empty value removes a header). */
export function upgradeRequest(headers: Record<string, string> = {}, path = "/"): string {
  const all: Record<string, string> = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    ...headers,
  };
  let text = `GET ${path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(all)) {
    if (value !== "") text += `${name}: ${value}\r\n`;
  }
  return text + "\r\n";
}

export { Opcode };
