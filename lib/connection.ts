/**
 * One connection's walk, top to bottom, around one context object (`Connection`):
 *
 *   [--proxy-protocol: the load balancer's PROXY header, which names the client]
 *   first bytes (3 s) -> TLS on the same connection | Flash policy answer | plain (refused with --ssl-only)
 *     -> request head (one deadline from accept covers all of the above: 10 s)
 *        [a --trusted-proxy peer: its Forwarded / X-Forwarded-For / X-Real-IP names this request's client]
 *        -> upgrade: session.ts (token -> auth -> 101 -> target -> relay -> summary)
 *        -> GET/HEAD under /websockify/ (built-in pages) or with --web: a file; keep-alive: the next request
 *           (15 s each)
 *        -> anything else: an HTTP error answer
 *
 * Every wait before the relay goes through the connection's Deadline, so it ends on time whatever the peer
 * does, and at once on shutdown.
 *
 * @module
 */

import { builtinName, serveBuiltin } from "./builtin.ts";
import { Deadline, DeadlineExpired } from "./deadline.ts";
import { formatHostPort } from "./hostport.ts";
import {
  errorResponse,
  formatResponse,
  type HttpRequest,
  parseRequestHead,
  readRequestHead,
  STATUS_TEXT,
} from "./http.ts";
import { forwardedClient, isTrusted } from "./forwarded.ts";
import { type ByteStream, closeQuietly, writeAll } from "./io.ts";
import type { ClientConn } from "./listen.ts";
import type { AddressCounter } from "./limits.ts";
import { describeAddress, type LogFields, type Logger } from "./log.ts";
import { label, type Metrics } from "./metrics.ts";
import { type AuthRefusal, type Caller, sanitizeHeaders, type ServerPlugins } from "./plugins.ts";
import {
  describeProxyHeader,
  encodeProxyHeader,
  fromDenoAddr,
  receiveProxyHeader,
  toDenoAddr,
} from "./proxy_protocol.ts";
import type { Relay } from "./relay.ts";
import { redactTokens } from "./secrets.ts";
import { openSession } from "./session.ts";
import type { Settings, TargetSpec } from "./settings.ts";
import { answerFlashPolicy, classifyFirstBytes, readSome } from "./sniff.ts";
import { describeError } from "./targets.ts";
import { acceptTls, loadCredentials, peerCommonName, type TlsStream } from "./tls.ts";
import { hidesPathTokens } from "./token_from.ts";
import { serveStatic, type WebOutcome } from "./web.ts";
import { isUpgradeRequest } from "./websocket/handshake.ts";

/** Time limits, in milliseconds. The defaults are websockify's where it has one. */
export interface ServerTimeouts {
  /** A new connection must send its first byte within this time, else it is closed silently. */
  firstByte: number;
  /** ...and finish its TLS handshake and its whole request head within this time of being accepted. */
  head: number;
  /** Once a close has begun, the peers have this long to finish it. */
  close: number;
  /** An idle keep-alive connection (after a static file) waits this long for its next request. */
  keepAlive: number;
  /** A `--web` response whose writes make no progress for this long is abandoned, the connection closed. */
  webWrite: number;
  /**
   * --heartbeat gives no verdict on a client while a write to its target is pending and has moved within this
   * time: the client's pongs wait behind data a slow target has not taken yet (a kernel send buffer frees room
   * in large steps, seconds apart for a slow reader). A target that took nothing for this long is stuck.
   */
  stuckTarget: number;
  /** A token lookup or an auth check (built-in or module) not answered within this time refuses the session. */
  plugin: number;
}

/** What a connection needs from the server that accepted it. */
export interface ServerContext {
  readonly settings: Settings;
  readonly log: Logger;
  readonly timeouts: ServerTimeouts;
  readonly plugins: ServerPlugins;
  /** The listen address as the banner shows it (a unix socket client is named by it). */
  readonly listenText: string;
  /** True once the server is shutting down. */
  readonly stopping: boolean;
  /** What is counted for --metrics-listen. */
  readonly metrics: Metrics;
  /** Connections per client address not yet in a session (--max-handshakes-per-ip). */
  readonly handshakes: AddressCounter;
  /** Sessions per client address (--max-sessions-per-ip; its total is what --max-sessions bounds). */
  readonly sessions: AddressCounter;
  /** --run-once: no other connection is taken while the one session runs... */
  stopAccepting(): void;
  /** ...and the server stops when it ends. */
  shutdown(): void;
}

/** What the connection's first bytes told about the client. */
export interface Peer {
  secure: boolean;
  /** The verified client certificate's CN (--verify-client). */
  certCN: string | undefined;
}

/** Methods Python websockify answers with 405 (the rest get 501). */
const METHODS_405 = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** One accepted connection, from its first byte to its end. */
export class Connection {
  readonly server: ServerContext;
  readonly conn: ClientConn;
  /** The connection's number (it numbers the --record files, as in Python). */
  readonly number: number;
  /**
   * The client's address as log lines show it (with --proxy-protocol: once the header is read, the one it gives;
   * from a --trusted-proxy: once a request head is read, the one it names).
   */
  client: string;
  /** The client's address: the peer's, or the one a PROXY protocol header or a trusted proxy's head gave (port 0: none). */
  clientAddr: Deno.Addr;
  /** The address the client connected to: ours, or the one a PROXY protocol header gave. */
  serverAddr: Deno.Addr | undefined;
  /** Bounds every wait before the relay; shutdown expires it. */
  readonly deadline: Deadline;
  /** The connection, or its decrypted TLS stream once TLS is up. */
  stream: ByteStream;
  peer: Peer = { secure: false, certCN: undefined };
  /** The session's relay, once the WebSocket session runs (shutdown then goes through it). */
  relay: Relay | undefined;
  /** What the connection turned out to be, once known (counted in websockify_connections_total). */
  #kind: string | undefined;
  /** The address it counts for against --max-handshakes-per-ip, while it does. */
  #handshakeKey: string | undefined;
  /**
   * The peer (or the PROXY protocol source) is a --trusted-proxy: each request head may name the client
   * (Forwarded, X-Forwarded-For, X-Real-IP), and token headers (`--token-from header:NAME`) are honoured;
   * `#peer` keeps the peer's own address meanwhile.
   */
  fromTrustedProxy = false;
  #peer: { client: string; addr: Deno.Addr } | undefined;
  /** What this request's JSON log lines carry besides the client (--log-format json). */
  #facts: LogFields = {};

  constructor(server: ServerContext, conn: ClientConn, number: number) {
    this.server = server;
    this.conn = conn;
    this.number = number;
    this.stream = conn;
    this.clientAddr = conn.remoteAddr;
    this.serverAddr = conn.localAddr;
    this.client = server.settings.listen.kind === "unix"
      ? server.listenText
      : describeAddress(conn.remoteAddr);
    this.deadline = new Deadline(() => {
      closeQuietly(this.stream);
      closeQuietly(this.conn);
    });
    this.#checkTrusted();
  }

  /** The client's TCP port: undefined on a unix socket, or when a trusted proxy named the client without one. */
  get clientPort(): number | undefined {
    const address = this.clientAddr;
    return address.transport === "tcp" && address.port > 0 ? address.port : undefined;
  }

  /** Adds facts that every later JSON log line of this request carries (its token's hash, its target). */
  /** The current request's target as log lines show it: tokens hidden (secrets.ts, token_from.ts). */
  get shownTarget(): string {
    return this.#facts.path ?? "";
  }

  note(facts: LogFields): void {
    Object.assign(this.#facts, facts);
  }

  /** The JSON log fields of a line about this connection: the client, this request's facts, then `extra`. */
  fields(extra?: LogFields): LogFields {
    return { client: this.client, client_port: this.clientPort, ...this.#facts, ...extra };
  }

  /** --trusted-proxy: whether the peer (the PROXY protocol source, once read) may name the client. */
  #checkTrusted(): void {
    const address = this.clientAddr;
    this.fromTrustedProxy = address.transport === "tcp" &&
      isTrusted(this.server.settings.trustedProxies, address.hostname);
    this.#peer = this.fromTrustedProxy ? { client: this.client, addr: address } : undefined;
  }

  get log(): Logger {
    return this.server.log;
  }

  /** Server shutdown: a session closes with 1001; anything before that ends at once. */
  shutdown(): void {
    if (this.relay) this.relay.shutdown();
    else this.deadline.expire("shutdown");
  }

  /** Counts the connection under its kind, once. */
  countAs(kind: string): void {
    if (this.#kind !== undefined) return;
    this.#kind = kind;
    this.server.metrics.count("websockify_connections_total", label("kind", kind));
  }

  /** Counts a refusal by its reason (websockify_refusals_total). */
  refused(reason: string): void {
    this.server.metrics.count("websockify_refusals_total", label("reason", reason));
  }

  /**
   * --max-handshakes-per-ip: counts this connection for its client address; false (counted as a refusal,
   * logged at debug level) when the address already has as many not yet in a session.
   */
  #enterHandshake(): boolean {
    if (!this.server.handshakes.tryEnter(this.client)) {
      this.countAs("other");
      this.refused("max_handshakes_per_ip");
      this.log.request(
        this.client,
        `${this.client}: too many connections not yet in a session (--max-handshakes-per-ip ${this.server.settings.maxHandshakesPerIp}); closed`,
        "debug",
        this.fields(),
      );
      return false;
    }
    this.#handshakeKey = this.client;
    return true;
  }

  /** The connection is in a session now: it no longer counts against --max-handshakes-per-ip. */
  leaveHandshake(): void {
    if (this.#handshakeKey === undefined) return;
    this.server.handshakes.leave(this.#handshakeKey);
    this.#handshakeKey = undefined;
  }

  /** Serves the connection until it is done; never rejects with a deadline (the connection is just closed). */
  async run(): Promise<void> {
    const { timeouts, settings } = this.server;
    // Cheap, before any read (behind a load balancer, once its header names the client).
    if (!settings.proxyProtocol && !this.#enterHandshake()) {
      closeQuietly(this.conn);
      return;
    }
    // One deadline from accept covers the first bytes, the Flash policy request, the TLS handshake and the
    // request head together: trickling bytes cannot stretch it.
    this.deadline.set(timeouts.head);
    try {
      if ("setNoDelay" in this.conn && this.conn.remoteAddr.transport === "tcp") {
        (this.conn as Deno.TcpConn).setNoDelay(true);
      }
      // The first bytes must come soon (websockify waits 3 s); a silent connection is closed without a word.
      let first = await this.deadline.race(readSome(this.conn, 1024), timeouts.firstByte);
      if (!first) return;
      if (settings.proxyProtocol) {
        first = await this.#acceptProxyHeader(first);
        if (!first || !this.#enterHandshake()) return;
      }
      let initial: Uint8Array | undefined = first;
      switch (classifyFirstBytes(first)) {
        case "tls": {
          const tls = await this.#startTls(first);
          if (!tls) return;
          this.stream = tls;
          this.peer = {
            secure: true,
            certCN: settings.tls.verifyClient ? peerCommonName(tls) : undefined,
          };
          initial = new Uint8Array(0);
          break;
        }
        case "policy":
        case "plain": {
          if (settings.tls.only) {
            this.refused("ssl_only");
            this.log.info(
              `${this.client}: non-SSL connection received but disallowed`,
              this.fields(),
            );
            return;
          }
          if (first[0] !== 0x3c) break;
          const notPolicy = await answerFlashPolicy(this.conn, first, this.deadline);
          if (!notPolicy) {
            this.countAs("policy");
            return;
          }
          initial = notPolicy;
        }
      }
      const serving = this.#serveRequests(initial);
      first = initial = undefined; // this frame stays suspended for the whole session: it keeps no bytes
      await serving;
    } catch (error) {
      // A deadline or shutdown cut a wait: the connection is closed below, nothing more to say.
      if (!(error instanceof DeadlineExpired)) throw error;
      if (error.why === "timeout" && this.#handshakeKey !== undefined) this.refused("timeout");
    } finally {
      this.leaveHandshake();
      this.countAs("other");
      this.deadline.clear();
      closeQuietly(this.stream);
      closeQuietly(this.conn);
    }
  }

  /**
   * --proxy-protocol: the load balancer's header comes first (within the same deadline as the request head);
   * its addresses become the client's. Returns the client's first bytes, or undefined when the connection ends
   * here: refused with a log line (no HTTP answer: the peer is a load balancer), or silent.
   */
  async #acceptProxyHeader(first: Uint8Array): Promise<Uint8Array | undefined> {
    const peer = this.clientAddr.transport === "tcp"
      ? formatHostPort(this.client, this.clientAddr.port)
      : this.client;
    const refuse = (why: string) => {
      this.refused("proxy_protocol");
      this.log.request(
        this.client,
        `PROXY protocol header refused from ${peer}: ${why}`,
        "info",
        this.fields(),
      );
    };
    let received;
    try {
      received = await receiveProxyHeader(
        first,
        () => this.deadline.race(readSome(this.conn, 1024)),
      );
    } catch (error) {
      if (error instanceof DeadlineExpired && error.why === "timeout") {
        refuse(`incomplete after ${this.server.timeouts.head / 1000} s`);
      }
      throw error;
    }
    if (received.kind === "closed") {
      refuse(`the connection closed after ${received.received} bytes of a header`);
      return undefined;
    }
    if (received.kind === "invalid") {
      refuse(received.reason);
      return undefined;
    }
    const { header, rest } = received;
    if (header.addresses) {
      this.clientAddr = toDenoAddr(header.addresses.source);
      this.serverAddr = toDenoAddr(header.addresses.destination);
      this.client = describeAddress(this.clientAddr);
      this.#checkTrusted();
    }
    this.log.request(
      this.client,
      `${describeProxyHeader(header)}, via ${peer}`,
      "debug",
      this.fields(),
    );
    if (rest.length > 0) return rest;
    // Nothing after the header yet: the client's first bytes get the usual time.
    return await this.deadline.race(readSome(this.conn, 1024), this.server.timeouts.firstByte);
  }

  /** --target-proxy-protocol: the header for the target (undefined without the option). */
  targetProxyHeader(): Uint8Array | undefined {
    const version = this.server.settings.targetProxyProtocol;
    if (!version) return undefined;
    return encodeProxyHeader(version, fromDenoAddr(this.clientAddr), fromDenoAddr(this.serverAddr));
  }

  /** TLS on this connection: the certificate is read now, so a renewed one is used without a restart. */
  async #startTls(sniffed: Uint8Array): Promise<TlsStream | undefined> {
    const options = this.server.settings.tls;
    let credentials;
    try {
      credentials = await loadCredentials(options);
    } catch (error) {
      this.refused("no_certificate");
      if (error instanceof Deno.errors.NotFound) {
        this.log.info(
          `${this.client}: SSL connection but '${options.cert}' not found`,
          this.fields(),
        );
      } else {
        this.log.error(
          `${this.client}: SSL connection but the certificate cannot be used: ${
            describeError(error)
          }`,
          this.fields(),
        );
      }
      return undefined;
    }
    try {
      return await this.deadline.race(
        acceptTls(this.conn, sniffed, options, credentials, this.deadline.signal),
      );
    } catch (error) {
      const reason = error instanceof DeadlineExpired && error.why === "timeout"
        ? "timed out"
        : describeError(error);
      this.log.request(this.client, `TLS handshake failed: ${reason}`, "info", this.fields());
      this.server.metrics.count("websockify_tls_handshake_failures_total");
      this.refused("tls_handshake");
      return undefined;
    }
  }

  /** Requests on one connection: static files may keep it alive; an upgrade or an error ends the loop. */
  async #serveRequests(initial: Uint8Array): Promise<void> {
    const { settings, timeouts } = this.server;
    let bytes = initial;
    for (let served = 0;; served++) {
      // The first head shares the deadline set at accept; each keep-alive request gets a fresh one.
      if (served > 0) this.deadline.set(timeouts.keepAlive);
      const next = await this.#readRequest(bytes);
      if (!next) return;
      this.deadline.clear();
      const { request, rest } = next;
      // The target as every log line about this request shows it (tokens hidden), worked out once.
      this.#facts = {
        path: redactTokens(request.target, hidesPathTokens(this.server.settings.target)),
      };
      if (this.fromTrustedProxy && !this.#takeClientFromHead(request)) return;
      // The session's promise is returned, not awaited: no frame of this loop stays suspended (holding
      // memory) for as long as the session lasts.
      if (isUpgradeRequest(request)) {
        this.countAs(this.peer.secure ? "wss" : "ws");
        return openSession(this, request, rest);
      }
      this.countAs(this.peer.secure ? "https" : "http");
      const web = settings.web;
      // The built-in pages' prefix is theirs, --web or not.
      const builtin = settings.builtinPages ? builtinName(request.target) : undefined;
      if (
        (!web && builtin === undefined) || (request.method !== "GET" && request.method !== "HEAD")
      ) {
        await this.#answerPlainHttp(request);
        return;
      }
      if (settings.webAuth && !(await this.authorize(request, settings.target))) return;
      const outcome: WebOutcome & { error?: unknown } = await this.deadline.race(
        builtin !== undefined
          ? serveBuiltin(this.stream, request, builtin, timeouts.webWrite)
          : serveStatic(this.stream, request, web!, timeouts.webWrite),
      );
      if (outcome.error !== undefined) {
        this.log.error(
          `${this.shownTarget}: built-in file not available: ${describeError(outcome.error)}`,
          this.fields(),
        );
      }
      this.log.request(
        this.client,
        // A file served shows its path; with --token-from path, any other answer hides its last segment.
        `"${request.method} ${
          redactTokens(request.target, outcome.status >= 400 && hidesPathTokens(settings.target))
        } ${request.version}" ${outcome.status} -`,
        "info",
        this.fields({ status: outcome.status }),
      );
      if (outcome.after === "close") {
        await this.finish();
        return;
      }
      bytes = rest;
    }
  }

  /**
   * --trusted-proxy, for each request of a trusted peer's connection: the client is the one its head names
   * (lib/forwarded.ts), else the peer. The connection then counts against --max-handshakes-per-ip under that
   * address; false when that refuses it (the connection is closed).
   */
  #takeClientFromHead(request: HttpRequest): boolean {
    const peer = this.#peer!;
    const named = forwardedClient(request.headers, this.server.settings.trustedProxies);
    this.client = named?.address ?? peer.client;
    this.clientAddr = named
      ? { transport: "tcp", hostname: named.address, port: named.port ?? 0 }
      : peer.addr;
    if (named) {
      this.log.request(
        this.client,
        `client named by the ${named.header} header of trusted proxy ${peer.client}`,
        "debug",
        this.fields(),
      );
    }
    if (this.#handshakeKey === this.client) return true;
    this.leaveHandshake();
    return this.#enterHandshake();
  }

  /** Reads and parses a request head within the connection's deadline; answers 400/431 itself. */
  async #readRequest(
    initial: Uint8Array,
  ): Promise<{ request: HttpRequest; rest: Uint8Array } | undefined> {
    const result = await this.deadline.race(readRequestHead(this.stream, initial));
    if (result.kind === "closed") return undefined;
    if (result.kind === "too-large") {
      await this.sendError(431, "Request header fields too large");
      return undefined;
    }
    try {
      return { request: parseRequestHead(result.head), rest: result.rest };
    } catch (error) {
      await this.sendError(400, describeError(error));
      return undefined;
    }
  }

  /** A request websockify does not serve: 405 for the usual methods, 501 for the others. */
  async #answerPlainHttp(request: HttpRequest): Promise<void> {
    this.log.request(
      this.client,
      `"${request.method} ${this.shownTarget} ${request.version}"`,
      "debug",
      this.fields(),
    );
    if (METHODS_405.has(request.method)) {
      await this.sendError(405, STATUS_TEXT[405], request.method !== "HEAD");
    } else {
      await this.sendError(501, `Unsupported method (${JSON.stringify(request.method)})`);
    }
  }

  // ---- answers and endings, shared with session.ts --------------------------------------------------------

  /**
   * Sends an HTTP error page and closes without resetting what the client may still be sending. The log line
   * is `code <status>, message <message>`, or `options.log` when the client is told less than the log.
   */
  async sendError(
    status: number,
    message: string,
    withBody = true,
    headers: [string, string][] = [],
    reason = `http_${status}`,
    options: { log?: string } = {},
  ): Promise<void> {
    this.log.request(
      this.client,
      options.log ?? `code ${status}, message ${message}`,
      "info",
      this.fields({ status }),
    );
    this.refused(reason);
    await this.#answerThenFinish(errorResponse(status, message, headers, withBody));
  }

  /** Runs the auth plugin, if any; on refusal sends its status line and headers (no body). */
  async authorize(request: HttpRequest, target: TargetSpec): Promise<boolean> {
    const auth = this.server.plugins.auth;
    if (!auth) return true;
    let refusal: AuthRefusal | undefined;
    try {
      // Bounded: a module may never answer (the connection is then closed without one).
      refusal = await this.deadline.race(
        Promise.resolve(auth.authenticate({ ...this.caller(request), target })),
        this.server.timeouts.plugin,
      );
    } catch (error) {
      if (error instanceof DeadlineExpired && error.why === "timeout") {
        this.log.error(
          `${this.client}: auth plugin ${auth.name}: no answer within ${
            this.server.timeouts.plugin / 1000
          } s`,
          this.fields(),
        );
      }
      throw error;
    }
    if (!refusal) return true;
    this.refused("auth");
    this.log.request(
      this.client,
      `${this.client}: authentication failed: ${refusal.status} ${refusal.log}`,
      "info",
      this.fields({ status: refusal.status }),
    );
    await this.#answerThenFinish(
      formatResponse(refusal.status, refusal.message, [
        ["Content-Type", "text/html"],
        ["Connection", "close"],
        ...refusal.headers,
      ]),
    );
    return false;
  }

  /** What a plugin may know of the client and its request (headers as sanitizeHeaders gives them). */
  caller(request: HttpRequest): Caller {
    return {
      request: sanitizeHeaders(request, this.peer.certCN),
      client: this.clientPort !== undefined
        ? { address: this.client, port: this.clientPort }
        : { address: this.client },
      clientCertCN: this.peer.certCN,
    };
  }

  /** Writes a last answer (bounded by the close timeout), then finishes. A client gone first is no error. */
  async #answerThenFinish(bytes: Uint8Array): Promise<void> {
    try {
      this.deadline.set(this.server.timeouts.close);
      await this.deadline.race(writeAll(this.stream, bytes));
      await this.finish();
    } catch (error) {
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
    }
  }

  /** Ends our side, then reads and drops what the client still sends until it closes (bounded). */
  async finish(): Promise<void> {
    await this.stream.closeWrite().catch(() => {});
    await this.drain();
  }

  /**
   * Reads and drops what the client still sends, until it closes (or, with `untilFirstRead`, answers) or the
   * close timeout passes; closing with unread bytes would reset what we sent.
   */
  async drain(untilFirstRead = false): Promise<void> {
    const sink = new Uint8Array(4096);
    this.deadline.set(this.server.timeouts.close);
    await this.deadline.race((async () => {
      while ((await this.stream.read(sink)) !== null && !untilFirstRead);
    })()).catch((error) => {
      if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
    });
  }
}
