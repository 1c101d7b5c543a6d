/**
 * The server: the accept loop, each connection's walk from first byte to relay, and shutdown.
 *
 *   accept -> first bytes (bounded wait): 0x16/0x80 -> TLS on the same connection; the Flash policy request
 *             -> its answer; else plain (refused with --ssl-only)
 *     -> request head (size cap, bounded wait)
 *        -> GET/HEAD with --web: a static file (keep-alive: next request)
 *        -> another non-upgrade request: HTTP error answer        -> upgrade refused: 400/426
 *        -> 101 -> connect target (fail: close 1011) -> Relay until both sides are closed -> summary line
 *
 * A failure in one connection is caught in its own handler and never touches another; the accept loop survives
 * running out of file descriptors by backing off.
 *
 * @module
 */

import type { Settings, TargetSpec } from "./settings.ts";
import {
  errorResponse,
  formatResponse,
  type HttpRequest,
  parseRequestHead,
  readRequestHead,
  STATUS_TEXT,
} from "./http.ts";
import { Deadline, DeadlineExpired, sleep } from "./deadline.ts";
import { type ByteStream, closeQuietly, writeAll } from "./io.ts";
import { type Acceptor, type ClientConn, describeListener } from "./listen.ts";
import { describeAddress, type Logger } from "./log.ts";
import { requestToken, sanitizeHeaders, type ServerPlugins } from "./plugins.ts";
import { SessionRecorder } from "./record.ts";
import { Relay, type RelayObserver, type RelayResult } from "./relay.ts";
import { certificateExists } from "./startup.ts";
import { connectTarget, describeError, describeTarget } from "./targets.ts";
import {
  acceptTls,
  certificateNotices,
  loadCredentials,
  peerCommonName,
  type TlsStream,
} from "./tls.ts";
import { serveStatic, WEB_WRITE_TIMEOUT } from "./web.ts";
import { CloseCode, encodeClosePayload, encodeFrame, Opcode } from "./websocket/frames.ts";
import {
  type Accepted,
  isUpgradeRequest,
  negotiate,
  switchingProtocols,
} from "./websocket/handshake.ts";

/** Time limits, in milliseconds. The defaults are websockify's where it has one. */
export interface ServerTimeouts {
  /** A new connection must send its first byte within this time, else it is closed silently. */
  firstByte: number;
  /** ...and its whole request head within this time. */
  head: number;
  /** Once a close has begun, the peers have this long to finish it. */
  close: number;
  /** An idle keep-alive connection (after a static file) waits this long for its next request. */
  keepAlive: number;
  /** A `--web` response whose writes make no progress for this long is abandoned, the connection closed. */
  webWrite: number;
}

export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  firstByte: 3000,
  head: 10000,
  close: 3000,
  keepAlive: 15000,
  webWrite: WEB_WRITE_TIMEOUT,
};

/** websockify's log line before connecting, by target kind. */
const CONNECTING = {
  tcp: "connecting to:",
  unix: "connecting to unix socket:",
  command: "connecting to command:",
  token: "connecting to:",
} as const;

/** What the connection's first bytes told about the client. */
interface Peer {
  secure: boolean;
  /** The verified client certificate's CN (--verify-client). */
  certCN: string | undefined;
}

/** One connection on its way to a session: what every step of its walk needs. */
interface ConnectionContext {
  conn: ClientConn;
  /** The connection, or its decrypted TLS stream. */
  stream: ByteStream;
  /** The client's address as log lines show it. */
  client: string;
  peer: Peer;
  /** The connection's number (it numbers the --record files). */
  number: number;
  /** Bounds every wait before the relay; shutdown expires it. */
  deadline: Deadline;
}

/** Methods Python websockify answers with 405 (the rest get 501). */
const METHODS_405 = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

function isOutOfDescriptors(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /Too many open files|EMFILE|ENFILE/i.test(message);
}

/** This many failed accepts in a row, none of them EMFILE/ENFILE, earn a log line and a short pause. */
const ACCEPT_FAILURES_BEFORE_PAUSE = 1000;

/** A running proxy server. */
export class ProxyServer {
  readonly #settings: Settings;
  readonly #log: Logger;
  readonly #timeouts: ServerTimeouts;
  readonly #plugins: ServerPlugins;
  readonly #listener: Acceptor;
  readonly #listenText: string;
  readonly #handlers = new Set<Promise<void>>();
  /** Connections not yet relaying, with their deadlines (expired at once on shutdown). */
  readonly #pending = new Map<ClientConn, Deadline>();
  readonly #relays = new Set<Relay>();
  #stopping = false;
  #served: Promise<void> | undefined;
  /** Every accepted connection counts (it numbers the --record files, as in Python). */
  #connectionCount = 0;
  #acceptingStopped = false;

  constructor(
    settings: Settings,
    listener: Acceptor,
    log: Logger,
    timeouts: ServerTimeouts = DEFAULT_TIMEOUTS,
    plugins: ServerPlugins = {},
  ) {
    this.#plugins = plugins;
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
    const { listen, tls, web, target } = this.#settings;
    for (const { level, message } of certificateNotices(tls)) this.#log[level](message);
    const lines = [
      "WebSocket server settings:",
      listen.kind === "unix"
        ? `  - Listen on unix socket ${this.#listenText}`
        : listen.kind === "inetd"
        ? "  - Listen for inetd connections"
        : `  - Listen on ${this.#listenText}`,
    ];
    if (web) {
      lines.push(
        web.fileOnly
          ? `  - Web server (no directory listings). Web root: ${web.root}`
          : `  - Web server. Web root: ${web.root}`,
      );
    }
    lines.push(
      certificateExists(tls.cert) ? "  - SSL/TLS support" : "  - No SSL/TLS support (no cert file)",
    );
    if (tls.only) lines.push("  - Deny non-SSL/TLS connections");
    if (this.#settings.daemon) lines.push("  - Backgrounding (daemon)");
    if (this.#settings.record) lines.push(`  - Recording to '${this.#settings.record}.*'`);
    lines.push(
      `  - proxying from ${this.#listenText} to ${describeTarget(target)}${usingSsl(target)}`,
    );
    for (const line of lines) this.#log.info(line);
  }

  /** Accepts and serves connections until `shutdown`. Resolves once every connection is finished. */
  serve(): Promise<void> {
    this.#served ??= this.#acceptLoop();
    return this.#served;
  }

  /** Stops accepting; open connections finish on their own, then `serve` resolves. */
  stopAccepting(reason?: string): void {
    if (this.#acceptingStopped) return;
    this.#acceptingStopped = true;
    if (reason) this.#log.info(reason);
    closeQuietly(this.#listener);
  }

  /** --timeout and --idle-timeout, checked once a second as Python does. */
  #startLifetimeChecks(): () => void {
    const { timeout, idleTimeout } = this.#settings;
    const timers: ReturnType<typeof setTimeout>[] = [];
    if (timeout > 0) {
      timers.push(
        setTimeout(
          () => this.stopAccepting(`listener exit due to --timeout ${timeout}`),
          timeout * 1000,
        ),
      );
    }
    if (idleTimeout > 0) {
      let idleSince: number | undefined = performance.now();
      timers.push(setInterval(() => {
        if (this.#handlers.size > 0) {
          idleSince = undefined;
        } else {
          idleSince ??= performance.now();
          if (performance.now() - idleSince >= idleTimeout * 1000) {
            this.stopAccepting(`listener exit due to --idle-timeout ${idleTimeout}`);
          }
        }
      }, Math.min(1000, idleTimeout * 1000)));
    }
    return () => timers.forEach((timer) => clearTimeout(timer));
  }

  async #acceptLoop(): Promise<void> {
    const stopChecks = this.#startLifetimeChecks();
    let backoff = 0;
    let failedInARow = 0;
    while (!this.#stopping && !this.#acceptingStopped) {
      let conn: ClientConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping || this.#acceptingStopped || error instanceof Deno.errors.BadResource) {
          break;
        }
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
          await sleep(backoff);
        } else if (++failedInARow % ACCEPT_FAILURES_BEFORE_PAUSE === 0) {
          // A failure that concerns one connection (reset before accept, ECONNABORTED) is retried at once
          // and not logged: a flood of them must neither slow accepting nor fill the log. Only an error
          // that keeps coming is worth a line and a pause.
          this.#log.warning(
            `accept failed ${failedInARow} times in a row: ${describeError(error)}; pausing`,
          );
          await sleep(50);
        }
        continue;
      }
      failedInARow = 0;
      if (backoff > 0) {
        this.#log.info("accepting connections again");
        backoff = 0;
      }
      const handler = this.#handle(conn, ++this.#connectionCount).catch((error) => {
        this.#log.error(`handler exception: ${describeError(error)}`);
      });
      this.#handlers.add(handler);
      handler.finally(() => this.#handlers.delete(handler));
    }
    stopChecks();
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
    // Connections not yet relaying (TLS handshake, request head, static files, connecting) end at once.
    for (const deadline of this.#pending.values()) deadline.expire("shutdown");
    for (const relay of this.#relays) relay.shutdown();
    const served = this.serve();
    const limit = sleep(this.#timeouts.close + 500).then(() => {
      for (const deadline of this.#pending.values()) deadline.expire("shutdown");
    });
    await Promise.race([served, limit]);
  }

  // ---- one connection --------------------------------------------------------------------------------------

  async #handle(conn: ClientConn, number: number): Promise<void> {
    const client = this.#settings.listen.kind === "unix"
      ? this.#listenText
      : describeAddress(conn.remoteAddr);
    let stream: ByteStream = conn;
    // One deadline from accept covers the first bytes, the Flash policy request, the TLS handshake and the
    // request head together: trickling bytes cannot stretch it. Shutdown expires it at once.
    const deadline = new Deadline(() => {
      closeQuietly(stream);
      closeQuietly(conn);
    });
    deadline.set(this.#timeouts.head);
    this.#pending.set(conn, deadline);
    try {
      if ("setNoDelay" in conn && conn.remoteAddr.transport === "tcp") {
        (conn as Deno.TcpConn).setNoDelay(true);
      }
      // The first bytes must come soon (websockify waits 3 s); a silent connection is closed without a word.
      const first = await deadline.race(readSome(conn, 1024), this.#timeouts.firstByte);
      if (!first) return;
      let initial = first;
      let secure = false;
      if (first[0] === 0x16 || first[0] === 0x80) {
        const tlsStream = await this.#startTls(conn, first, client, deadline);
        if (!tlsStream) return;
        stream = tlsStream;
        secure = true;
        initial = new Uint8Array(0);
      } else if (this.#settings.tls.only) {
        this.#log.info(`${client}: non-SSL connection received but disallowed`);
        return;
      } else if (first[0] === 0x3c) {
        const notPolicy = await this.#answerFlashPolicy(conn, first, deadline);
        if (!notPolicy) return;
        initial = notPolicy;
      }
      const certCN = secure && this.#settings.tls.verifyClient
        ? peerCommonName(stream as TlsStream)
        : undefined;
      const cx: ConnectionContext = {
        conn,
        stream,
        client,
        peer: { secure, certCN },
        number,
        deadline,
      };
      await this.#serveHttp(cx, initial);
    } catch (error) {
      // A deadline or shutdown cut a wait: the connection is closed below, nothing more to say.
      if (!(error instanceof DeadlineExpired)) throw error;
    } finally {
      this.#pending.delete(conn);
      deadline.dispose();
      closeQuietly(stream);
      closeQuietly(conn);
    }
  }

  /** TLS on this connection: the certificate is read now, so a renewed one is used without a restart. */
  async #startTls(
    conn: ClientConn,
    sniffed: Uint8Array,
    client: string,
    deadline: Deadline,
  ): Promise<TlsStream | undefined> {
    const options = this.#settings.tls;
    let credentials;
    try {
      credentials = await loadCredentials(options);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        this.#log.info(`${client}: SSL connection but '${options.cert}' not found`);
      } else {
        this.#log.error(
          `${client}: SSL connection but the certificate cannot be used: ${describeError(error)}`,
        );
      }
      return undefined;
    }
    try {
      return await deadline.race(acceptTls(conn, sniffed, options, credentials, deadline.signal));
    } catch (error) {
      const reason = error instanceof DeadlineExpired && error.why === "timeout"
        ? "timed out"
        : describeError(error);
      this.#log.request(client, `TLS handshake failed: ${reason}`);
      return undefined;
    }
  }

  /**
   * The Flash cross-domain policy request of old web-socket-js clients: answered, then the connection closes
   * (undefined). Anything else: the bytes read so far, for the HTTP parser.
   */
  async #answerFlashPolicy(
    conn: ClientConn,
    first: Uint8Array,
    deadline: Deadline,
  ): Promise<Uint8Array | undefined> {
    let bytes = first;
    while (bytes.length < FLASH_REQUEST.length && FLASH_REQUEST.startsWith(latin1.decode(bytes))) {
      const more = await deadline.race(readSome(conn, 64));
      if (!more) return undefined;
      bytes = concatBytes(bytes, more);
    }
    if (!latin1.decode(bytes).startsWith(FLASH_REQUEST)) return bytes;
    await writeAll(conn, FLASH_POLICY).catch(() => {});
    return undefined;
  }

  /** Requests on one connection: static files may keep it alive; an upgrade or an error ends the loop. */
  async #serveHttp(cx: ConnectionContext, initial: Uint8Array): Promise<void> {
    const { stream, client } = cx;
    let bytes = initial;
    for (let served = 0;; served++) {
      // The first head shares the deadline set at accept; each keep-alive request gets a fresh one.
      if (served > 0) cx.deadline.set(this.#timeouts.keepAlive);
      const next = await this.#readRequest(cx, bytes);
      if (!next) return;
      cx.deadline.clear();
      const { request, rest } = next;
      if (isUpgradeRequest(request)) {
        await this.#upgrade(cx, request, rest);
        return;
      }
      const web = this.#settings.web;
      if (!web || (request.method !== "GET" && request.method !== "HEAD")) {
        await this.#answerPlainHttp(cx, request);
        return;
      }
      if (
        this.#settings.webAuth &&
        !(await this.#authorize(cx, request, this.#settings.target))
      ) {
        return;
      }
      const outcome = await cx.deadline.race(
        serveStatic(stream, request, web, this.#timeouts.webWrite),
      );
      this.#log.request(
        client,
        `"${request.method} ${request.target} ${request.version}" ${outcome.status} -`,
      );
      if (outcome.after === "close") {
        await this.#finish(cx);
        return;
      }
      bytes = rest;
    }
  }

  /** Reads and parses a request head within the connection's deadline; answers 400/431 itself. */
  async #readRequest(
    cx: ConnectionContext,
    initial: Uint8Array,
  ): Promise<{ request: HttpRequest; rest: Uint8Array } | undefined> {
    const result = await cx.deadline.race(readRequestHead(cx.stream, initial));
    if (result.kind === "closed") return undefined;
    if (result.kind === "too-large") {
      await this.#sendError(cx, 431, "Request header fields too large");
      return undefined;
    }
    try {
      return { request: parseRequestHead(result.head), rest: result.rest };
    } catch (error) {
      await this.#sendError(cx, 400, describeError(error));
      return undefined;
    }
  }

  /** A request websockify does not serve: 405 for the usual methods, 501 for the others. */
  async #answerPlainHttp(cx: ConnectionContext, request: HttpRequest): Promise<void> {
    this.#log.request(
      cx.client,
      `"${request.method} ${request.target} ${request.version}"`,
      "debug",
    );
    if (METHODS_405.has(request.method)) {
      await this.#sendError(cx, 405, STATUS_TEXT[405], request.method !== "HEAD");
    } else {
      await this.#sendError(
        cx,
        501,
        `Unsupported method (${JSON.stringify(request.method)})`,
      );
    }
  }

  /** Sends an HTTP error page and closes without resetting what the client may still be sending. */
  async #sendError(
    cx: ConnectionContext,
    status: number,
    message: string,
    withBody = true,
    headers: [string, string][] = [],
  ): Promise<void> {
    this.#log.request(cx.client, `code ${status}, message ${message}`);
    try {
      cx.deadline.set(this.#timeouts.close);
      await cx.deadline.race(
        writeAll(cx.stream, errorResponse(status, message, headers, withBody)),
      );
      await this.#finish(cx);
    } catch (error) {
      // The client went away first; nothing more to tell it.
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
    }
  }

  /** Ends our side, then reads and drops what the client still sends until it closes (bounded). */
  async #finish(cx: ConnectionContext): Promise<void> {
    await cx.stream.closeWrite().catch(() => {});
    await this.#drain(cx);
  }

  /**
   * Reads and drops what the client still sends, until it closes (or, with `untilFirstRead`, answers) or the
   * close timeout passes; closing with unread bytes would reset what we sent.
   */
  async #drain(cx: ConnectionContext, untilFirstRead = false): Promise<void> {
    const sink = new Uint8Array(4096);
    cx.deadline.set(this.#timeouts.close);
    await cx.deadline.race((async () => {
      while ((await cx.stream.read(sink)) !== null && !untilFirstRead);
    })()).catch((error) => {
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
    });
  }

  /** Runs the auth plugin, if any; on refusal sends its status line and headers (no body). */
  async #authorize(
    cx: ConnectionContext,
    request: HttpRequest,
    target: TargetSpec,
  ): Promise<boolean> {
    const { client, peer, stream } = cx;
    const auth = this.#plugins.auth;
    if (!auth) return true;
    const refusal = auth.authenticate({
      request: sanitizeHeaders(request, peer.certCN),
      target,
      clientCertCN: peer.certCN,
    });
    if (!refusal) return true;
    this.#log.request(client, `${client}: authentication failed: ${refusal.status} ${refusal.log}`);
    try {
      cx.deadline.set(this.#timeouts.close);
      await cx.deadline.race(writeAll(
        stream,
        formatResponse(refusal.status, refusal.message, [
          ["Content-Type", "text/html"],
          ["Connection", "close"],
          ...refusal.headers,
        ]),
      ));
      await this.#finish(cx);
    } catch (error) {
      // The client went away first.
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
    }
    return false;
  }

  /** A token plugin's target for this request; undefined (logged) when there is none. */
  async #resolveTarget(
    cx: ConnectionContext,
    request: HttpRequest,
  ): Promise<TargetSpec | undefined> {
    const { client } = cx;
    const target = this.#settings.target;
    if (target.kind !== "token") return target;
    const token = requestToken(request, target.hostToken);
    if (token === undefined) {
      this.#log.info(`${client}: Token not present`);
      return undefined;
    }
    let found: TargetSpec | undefined;
    try {
      found = await cx.deadline.race(this.#plugins.token!.lookup(token));
    } catch (error) {
      if (error instanceof DeadlineExpired) throw error;
      this.#log.error(`${client}: token lookup failed: ${describeError(error)}`);
      return undefined;
    }
    if (!found) this.#log.info(`${client}: Token '${token}' not found`);
    return found;
  }

  async #upgrade(cx: ConnectionContext, request: HttpRequest, rest: Uint8Array): Promise<void> {
    const { client, peer } = cx;
    const verdict = negotiate(request);
    if ("status" in verdict) {
      await this.#sendError(cx, verdict.status, verdict.message, true, verdict.headers);
      return;
    }
    // As in Python: the token picks the target (an unknown one closes the connection without an answer), then
    // the auth plugin decides, and only then comes the 101.
    const target = await this.#resolveTarget(cx, request);
    if (!target) return;
    if (!(await this.#authorize(cx, request, target))) return;
    const secure = peer.secure;
    this.#log.request(
      client,
      `"${request.method} ${request.target} ${request.version}" 101 -`,
      "debug",
    );
    this.#log.request(
      client,
      secure
        ? `${client}: SSL/TLS (wss://) WebSocket connection`
        : `${client}: Plain non-SSL (ws://) WebSocket connection`,
    );
    if (request.target !== "/") this.#log.request(client, `${client}: Path: '${request.target}'`);

    // --run-once: this WebSocket session is the one; no other connection is taken meanwhile.
    if (this.#settings.runOnce) this.stopAccepting();
    try {
      await this.#session(cx, verdict, rest, target);
    } finally {
      if (this.#settings.runOnce) {
        this.#log.info(`${client}: exiting due to --run-once`);
        this.shutdown();
      }
    }
  }

  async #session(
    cx: ConnectionContext,
    verdict: Accepted,
    rest: Uint8Array,
    target: TargetSpec,
  ): Promise<void> {
    const { stream, conn, client, number } = cx;
    const targetText = describeTarget(target);
    try {
      await cx.deadline.race(writeAll(stream, switchingProtocols(verdict)));
    } catch (error) {
      if (error instanceof DeadlineExpired) throw error;
      return;
    }
    this.#log.request(client, `${CONNECTING[target.kind]} ${targetText}${usingSsl(target)}`);
    let targetStream: ByteStream;
    const connecting = connectTarget(target);
    try {
      targetStream = await cx.deadline.race(connecting);
    } catch (error) {
      if (error instanceof DeadlineExpired) {
        // Shutdown while connecting: a connection that still succeeds is closed at once.
        connecting.then(closeQuietly, () => {});
        throw error;
      }
      this.#log.request(client, `Failed to connect to ${targetText}: ${describeError(error)}`);
      await this.#refuseSession(
        cx,
        CloseCode.InternalError,
        "Failed to connect to downstream server",
      );
      return;
    }

    const observer: RelayObserver = {};
    let recorder: SessionRecorder | undefined;
    if (this.#settings.record) {
      try {
        recorder = SessionRecorder.open(this.#settings.record, number);
        this.#log.request(client, `opening record file: ${recorder.path}`);
        observer.fromClient = (bytes) => recorder!.fromClient(bytes);
        observer.fromTarget = (bytes) => recorder!.fromTarget(bytes);
      } catch (error) {
        this.#log.request(client, `cannot open the record file: ${describeError(error)}`, "error");
      }
    }
    if (this.#settings.traffic) {
      writeStdout(TRAFFIC_LEGEND);
      observer.traffic = writeStdout;
    }
    const relay = new Relay(stream, targetStream, {
      framing: verdict.framing,
      closeTimeout: this.#timeouts.close,
      heartbeat: this.#settings.heartbeat * 1000,
      observer,
    });
    // From here on, shutdown goes through the relay (close 1001), not by closing the connection outright.
    this.#pending.delete(conn);
    this.#relays.add(relay);
    let result: RelayResult;
    try {
      result = await relay.run(rest);
    } finally {
      this.#relays.delete(relay);
      recorder?.close();
    }
    this.#logSessionEnd(client, targetText, result);
  }

  /** Closes a WebSocket that never got a target: the close frame, then a bounded wait for the reply. */
  async #refuseSession(cx: ConnectionContext, code: number, reason: string): Promise<void> {
    try {
      cx.deadline.set(this.#timeouts.close);
      await cx.deadline.race(
        writeAll(cx.stream, encodeFrame(Opcode.Close, encodeClosePayload(code, reason))),
      );
      await this.#drain(cx, true);
    } catch (error) {
      // Client already gone.
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
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

const latin1 = new TextDecoder("latin1");

/** Printed on stdout at the start of each session with --traffic, as Python does. */
const TRAFFIC_LEGEND = `Traffic Legend:
    } - Client receive
    }. - Client receive partial
    { - Target receive

    > - Target send
    >. - Target send partial
    < - Client send
    <. - Client send partial
`;

const stdoutEncoder = new TextEncoder();

function writeStdout(text: string): void {
  try {
    Deno.stdout.writeSync(stdoutEncoder.encode(text));
  } catch {
    // stdout closed (daemonized): traffic glyphs are best effort.
  }
}

/** Old Flash clients (web-socket-js) asked for this before connecting. */
const FLASH_REQUEST = "<policy-file-request/>";
const FLASH_POLICY = new TextEncoder().encode(
  '<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>\0',
);

/** One read of at most `size` bytes; undefined at EOF. */
async function readSome(stream: ByteStream, size: number): Promise<Uint8Array | undefined> {
  const buffer = new Uint8Array(size);
  const n = await stream.read(buffer);
  return n === null ? undefined : buffer.subarray(0, n);
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function usingSsl(target: TargetSpec): string {
  return target.kind === "tcp" && target.tls ? " (using SSL)" : "";
}
