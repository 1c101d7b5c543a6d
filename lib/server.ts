/**
 * The server: listening, the accept loop, each connection's walk from first byte to relay, and shutdown.
 *
 *   accept -> first bytes (bounded wait) -> request head (size cap, bounded wait)
 *     -> not an upgrade: HTTP error answer          -> upgrade refused: 400/426
 *     -> 101 -> connect target (fail: close 1011) -> Relay until both sides are closed -> summary line
 *
 * A failure in one connection is caught in its own handler and never touches another; the accept loop survives
 * running out of file descriptors by backing off.
 *
 * @module
 */

import type { ListenSpec, Settings, TargetSpec } from "./cli.ts";
import {
  errorResponse,
  type HttpRequest,
  parseRequestHead,
  readRequestHead,
  STATUS_TEXT,
} from "./http.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { describeAddress, formatHostPort, type Logger } from "./log.ts";
import { Relay, type RelayResult } from "./relay.ts";
import { connectTarget, describeError, describeTarget } from "./targets.ts";
import { CloseCode, encodeClosePayload, encodeFrame, Opcode } from "./websocket/frames.ts";
import { isUpgradeRequest, negotiate, switchingProtocols } from "./websocket/handshake.ts";

/** Time limits, in milliseconds. The defaults are websockify's where it has one. */
export interface ServerTimeouts {
  /** A new connection must send its first byte within this time, else it is closed silently. */
  firstByte: number;
  /** ...and its whole request head within this time. */
  head: number;
  /** Once a close has begun, the peers have this long to finish it. */
  close: number;
}

export const DEFAULT_TIMEOUTS: ServerTimeouts = { firstByte: 3000, head: 10000, close: 3000 };

/** websockify's log line before connecting, by target kind. */
const CONNECTING = {
  tcp: "connecting to:",
  unix: "connecting to unix socket:",
  command: "connecting to command:",
} as const;

/** Methods Python websockify answers with 405 (the rest get 501). */
const METHODS_405 = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Opens the listening socket. Throws (with the OS reason) when it cannot. */
export async function openListener(spec: ListenSpec): Promise<Deno.Listener> {
  if (spec.kind === "unix") {
    await removeStaleSocket(spec.path);
    const listener = Deno.listen({ transport: "unix", path: spec.path });
    await Deno.chmod(spec.path, spec.mode);
    return listener;
  }
  if (spec.hostname === "") {
    // Every interface: one dual-stack socket on "::" serves IPv4 and IPv6 alike; where IPv6 is off, IPv4 only.
    try {
      return Deno.listen({ hostname: "::", port: spec.port });
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) throw error;
      return Deno.listen({ hostname: "0.0.0.0", port: spec.port });
    }
  }
  return Deno.listen({ hostname: spec.hostname, port: spec.port });
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const info = await Deno.lstat(path);
    if (info.isSocket) await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** `:6080`, `127.0.0.1:6080`, `[::1]:6080` or the socket path, as the banner shows the listen address. */
export function describeListener(spec: ListenSpec, listener: Deno.Listener): string {
  if (spec.kind === "unix") return spec.path;
  const port = (listener.addr as Deno.NetAddr).port;
  return spec.hostname === "" ? `:${port}` : formatHostPort(spec.hostname, port);
}

function isOutOfDescriptors(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /Too many open files|EMFILE|ENFILE/i.test(message);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A running proxy server. */
export class ProxyServer {
  readonly #settings: Settings;
  readonly #log: Logger;
  readonly #timeouts: ServerTimeouts;
  readonly #listener: Deno.Listener;
  readonly #listenText: string;
  readonly #handlers = new Set<Promise<void>>();
  /** Connections not yet relaying (closed outright on shutdown). */
  readonly #pending = new Set<Deno.Conn>();
  readonly #relays = new Set<Relay>();
  #stopping = false;
  #served: Promise<void> | undefined;

  constructor(
    settings: Settings,
    listener: Deno.Listener,
    log: Logger,
    timeouts: ServerTimeouts = DEFAULT_TIMEOUTS,
  ) {
    this.#settings = settings;
    this.#listener = listener;
    this.#log = log;
    this.#timeouts = timeouts;
    this.#listenText = describeListener(settings.listen, listener);
  }

  /** The listen address as the banner shows it. */
  get listenText(): string {
    return this.#listenText;
  }

  /** Logs websockify's startup banner. */
  logBanner(): void {
    const lines = [
      "WebSocket server settings:",
      this.#settings.listen.kind === "unix"
        ? `  - Listen on unix socket ${this.#listenText}`
        : `  - Listen on ${this.#listenText}`,
      "  - No SSL/TLS support (no cert file)",
      `  - proxying from ${this.#listenText} to ${describeTarget(this.#settings.target)}`,
    ];
    for (const line of lines) this.#log.info(line);
  }

  /** Accepts and serves connections until `shutdown`. Resolves once every connection is finished. */
  serve(): Promise<void> {
    this.#served ??= this.#acceptLoop();
    return this.#served;
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#stopping) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping || error instanceof Deno.errors.BadResource) break;
        if (isOutOfDescriptors(error)) {
          // Out of file descriptors: keep serving the open connections and try again once some are freed.
          if (backoff === 0) {
            this.#log.warning(
              `accept failed: ${
                describeError(error)
              }; ${this.#relays.size} sessions open, backing off`,
            );
          }
          backoff = Math.min(backoff === 0 ? 50 : backoff * 2, 1000);
        } else {
          this.#log.warning(`accept failed: ${describeError(error)}`);
          backoff = 50;
        }
        await sleep(backoff);
        continue;
      }
      if (backoff > 0) {
        this.#log.info("accepting connections again");
        backoff = 0;
      }
      const handler = this.#handle(conn).catch((error) => {
        this.#log.error(`handler exception: ${describeError(error)}`);
      });
      this.#handlers.add(handler);
      handler.finally(() => this.#handlers.delete(handler));
    }
    await Promise.all(this.#handlers);
    if (this.#settings.listen.kind === "unix") {
      await Deno.remove(this.#settings.listen.path).catch(() => {});
    }
  }

  /**
   * Stops accepting, sends close 1001 to every client, closes every target, and waits for the connections to
   * finish, at most the close timeout (then they are cut).
   */
  async shutdown(): Promise<void> {
    if (this.#stopping) return this.#served;
    this.#stopping = true;
    closeQuietly(this.#listener);
    for (const conn of this.#pending) closeQuietly(conn);
    for (const relay of this.#relays) relay.shutdown();
    const served = this.serve();
    const limit = sleep(this.#timeouts.close + 500).then(() => {
      for (const conn of this.#pending) closeQuietly(conn);
    });
    await Promise.race([served, limit]);
  }

  // ---- one connection --------------------------------------------------------------------------------------

  async #handle(conn: Deno.Conn): Promise<void> {
    const client = this.#settings.listen.kind === "unix"
      ? this.#listenText
      : describeAddress(conn.remoteAddr);
    this.#pending.add(conn);
    try {
      if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
      const request = await this.#readRequest(conn, client);
      if (!request) return;
      if (!isUpgradeRequest(request.request)) {
        await this.#answerPlainHttp(conn, client, request.request);
        return;
      }
      await this.#upgrade(conn, client, request.request, request.rest);
    } finally {
      this.#pending.delete(conn);
      closeQuietly(conn);
    }
  }

  /** Reads and parses the request head within the time limits; answers 400/431 itself. */
  async #readRequest(
    conn: Deno.Conn,
    client: string,
  ): Promise<{ request: HttpRequest; rest: Uint8Array } | undefined> {
    // The first bytes must come soon (websockify waits 3 s); a silent connection is closed without a word.
    const first = new Uint8Array(1024);
    let timedOut = false;
    let timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, this.#timeouts.firstByte);
    let n: number | null;
    try {
      n = await conn.read(first);
    } catch {
      n = null;
    } finally {
      clearTimeout(timer);
    }
    if (n === null || timedOut) return undefined;

    timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, this.#timeouts.head);
    try {
      const result = await readRequestHead(conn, first.subarray(0, n)).catch(() => undefined);
      if (!result || result.kind === "closed") return undefined;
      if (result.kind === "too-large") {
        await this.#sendError(conn, client, 431, "Request header fields too large");
        return undefined;
      }
      try {
        return { request: parseRequestHead(result.head), rest: result.rest };
      } catch (error) {
        await this.#sendError(conn, client, 400, describeError(error));
        return undefined;
      }
    } finally {
      clearTimeout(timer);
      if (timedOut) this.#log.request(client, "request head not received in time; closed", "debug");
    }
  }

  /** A plain HTTP request: websockify without --web answers 405, or 501 for unknown methods. */
  async #answerPlainHttp(conn: Deno.Conn, client: string, request: HttpRequest): Promise<void> {
    this.#log.request(client, `"${request.method} ${request.target} ${request.version}"`, "debug");
    if (METHODS_405.has(request.method)) {
      await this.#sendError(conn, client, 405, STATUS_TEXT[405], request.method !== "HEAD");
    } else {
      await this.#sendError(
        conn,
        client,
        501,
        `Unsupported method (${JSON.stringify(request.method)})`,
      );
    }
  }

  /** Sends an HTTP error page and closes without resetting what the client may still be sending. */
  async #sendError(
    conn: Deno.Conn,
    client: string,
    status: number,
    message: string,
    withBody = true,
    headers: [string, string][] = [],
  ): Promise<void> {
    this.#log.request(client, `code ${status}, message ${message}`);
    try {
      await writeAll(conn, errorResponse(status, message, headers, withBody));
      await conn.closeWrite();
      await this.#drain(conn);
    } catch {
      // The client went away first; nothing more to tell it.
    }
  }

  /** Reads and drops what the client still sends, until it closes or the close timeout passes. */
  async #drain(conn: Deno.Conn, untilFirstRead = false): Promise<void> {
    const timer = setTimeout(() => closeQuietly(conn), this.#timeouts.close);
    const sink = new Uint8Array(4096);
    try {
      while ((await conn.read(sink)) !== null && !untilFirstRead);
    } catch {
      // Closed by the timer or reset by the client: done either way.
    } finally {
      clearTimeout(timer);
    }
  }

  async #upgrade(conn: Deno.Conn, client: string, request: HttpRequest, rest: Uint8Array) {
    const verdict = negotiate(request);
    if ("status" in verdict) {
      await this.#sendError(conn, client, verdict.status, verdict.message, true, verdict.headers);
      return;
    }
    this.#log.request(
      client,
      `"${request.method} ${request.target} ${request.version}" 101 -`,
      "debug",
    );
    this.#log.request(client, `${client}: Plain non-SSL (ws://) WebSocket connection`);
    if (request.target !== "/") this.#log.request(client, `${client}: Path: '${request.target}'`);

    const target: TargetSpec = this.#settings.target;
    const targetText = describeTarget(target);
    try {
      await writeAll(conn, switchingProtocols(verdict));
    } catch {
      return;
    }
    this.#log.request(client, `${CONNECTING[target.kind]} ${targetText}`);
    let targetConn: Deno.Conn;
    try {
      targetConn = await connectTarget(target);
    } catch (error) {
      this.#log.request(client, `Failed to connect to ${targetText}: ${describeError(error)}`);
      await this.#refuseSession(
        conn,
        CloseCode.InternalError,
        "Failed to connect to downstream server",
      );
      return;
    }
    if (this.#stopping) {
      closeQuietly(targetConn);
      await this.#refuseSession(conn, CloseCode.GoingAway, "Server shutting down");
      return;
    }

    const relay = new Relay(conn, targetConn, {
      framing: verdict.framing,
      closeTimeout: this.#timeouts.close,
    });
    this.#pending.delete(conn);
    this.#relays.add(relay);
    let result: RelayResult;
    try {
      result = await relay.run(rest);
    } finally {
      this.#relays.delete(relay);
    }
    this.#logSessionEnd(client, targetText, result);
  }

  /** Closes a WebSocket that never got a target: the close frame, then a bounded wait for the reply. */
  async #refuseSession(conn: Deno.Conn, code: number, reason: string): Promise<void> {
    try {
      await writeAll(conn, encodeFrame(Opcode.Close, encodeClosePayload(code, reason)));
      await this.#drain(conn, true);
    } catch {
      // Client already gone.
    }
  }

  #logSessionEnd(client: string, targetText: string, result: RelayResult): void {
    if (result.closedBy === "target") {
      this.#log.request(client, `${targetText}: Target closed connection`, "debug");
    } else {
      this.#log.request(client, `${targetText}: Client closed connection`, "debug");
    }
    this.#log.request(client, `${targetText}: Closed target`, "debug");
    this.#log.request(
      client,
      `${targetText}: session ended by ${result.closedBy} (${result.code} ${result.reason}): ` +
        `${result.bytesFromClient} bytes from client, ${result.bytesToClient} bytes to client, ` +
        `${(result.durationMs / 1000).toFixed(2)} s`,
    );
  }
}
