/**
 * The server: listening, the accept loop (with its back-off), the lifetime limits (--timeout, --idle-timeout,
 * --run-once), the banner and shutdown. Each accepted connection is a Connection (lib/connection.ts), which
 * walks it from first byte to its end; the server only keeps the set of them, to stop them at shutdown.
 *
 * A failure in one connection is caught in its own handler and never touches another; the accept loop survives
 * running out of file descriptors by backing off.
 *
 * @module
 */

import { Connection, type ServerContext, type ServerTimeouts } from "./connection.ts";
import { sleep } from "./deadline.ts";
import { closeQuietly } from "./io.ts";
import { type Acceptor, type ClientConn, describeListener } from "./listen.ts";
import { AddressCounter } from "./limits.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import type { ServerPlugins } from "./plugins.ts";
import { usingSsl } from "./session.ts";
import type { Settings } from "./settings.ts";
import { certificateExists } from "./startup.ts";
import { describeError, describeTarget } from "./targets.ts";
import { certificateNotices } from "./tls.ts";
import { WEB_WRITE_TIMEOUT } from "./web.ts";

export type { ServerTimeouts };

/** websockify's time limits, where it has them. */
export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  firstByte: 3000,
  head: 10000,
  close: 3000,
  keepAlive: 15000,
  webWrite: WEB_WRITE_TIMEOUT,
  stuckTarget: 30_000,
  plugin: 10_000,
};

function isOutOfDescriptors(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /Too many open files|EMFILE|ENFILE/i.test(message);
}

/** This many failed accepts in a row, none of them EMFILE/ENFILE, earn a log line and a short pause. */
const ACCEPT_FAILURES_BEFORE_PAUSE = 1000;

/** A running proxy server. */
export class ProxyServer implements ServerContext {
  readonly settings: Settings;
  readonly log: Logger;
  readonly timeouts: ServerTimeouts;
  readonly plugins: ServerPlugins;
  readonly listenText: string;
  readonly metrics: Metrics;
  readonly handshakes: AddressCounter;
  readonly sessions: AddressCounter;
  readonly #listener: Acceptor;
  /**
   * Every connection being served, whatever its state (shutdown stops each its own way), and the promise of
   * its end: one map entry and one link per connection (idle ones are counted in thousands).
   */
  readonly #connections = new Map<Connection, Promise<unknown>>();
  #stopping = false;
  #served: Promise<void> | undefined;
  /** Every accepted connection counts (it numbers the --record files, as in Python). */
  #connectionCount = 0;
  readonly #numbering: { index: number; count: number };
  #acceptingStopped = false;
  /** Ends a drain's grace early (a shutdown during it). */
  #endGrace: (() => void) | undefined;

  constructor(
    settings: Settings,
    listener: Acceptor,
    log: Logger,
    timeouts: ServerTimeouts = DEFAULT_TIMEOUTS,
    plugins: ServerPlugins = {},
    /** A --workers worker numbers its connections index+1, index+1+count, ... (unique --record files). */
    numbering: { index: number; count: number } = { index: 0, count: 1 },
  ) {
    this.#numbering = numbering;
    this.settings = settings;
    this.log = log;
    this.timeouts = timeouts;
    this.plugins = plugins;
    this.#listener = listener;
    this.listenText = describeListener(settings.listen, listener);
    this.metrics = new Metrics();
    this.handshakes = new AddressCounter(settings.maxHandshakesPerIp);
    this.sessions = new AddressCounter(settings.maxSessionsPerIp);
  }

  /** The address it listens on (a TCP port chosen by the system when 0 was asked for). */
  get addr(): Deno.Addr {
    return this.#listener.addr;
  }

  /** True from a drain's start (SIGTERM with --drain-timeout): /readyz answers 503. */
  get draining(): boolean {
    return this.metrics.draining;
  }

  /** Why /readyz says no: draining, or at --max-sessions; undefined when ready. */
  notReady(): string | undefined {
    if (this.metrics.draining || this.#stopping) return "draining";
    const { maxSessions } = this.settings;
    if (maxSessions > 0 && this.sessions.total >= maxSessions) return "session limit reached";
    return undefined;
  }

  /**
   * Graceful drain: /readyz turns 503; after `graceMs` (--drain-grace, at most `ms`) of serving as before, so
   * that load balancers checking /readyz stop sending first, stops accepting; lets open connections go on until
   * `ms` after the start, then shuts down (sessions still open get 1001). Resolves once shut down.
   */
  async drain(ms: number, graceMs = 0): Promise<void> {
    if (this.#stopping || this.metrics.draining) return;
    this.metrics.draining = true;
    const grace = Math.max(0, Math.min(graceMs, ms));
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (grace > 0) {
      this.log.info(
        `draining: /readyz fails; still accepting for ${grace / 1000} s (--drain-grace)`,
      );
      await new Promise<void>((resolve) => {
        this.#endGrace = resolve;
        timer = setTimeout(resolve, grace);
      });
      clearTimeout(timer);
      this.#endGrace = undefined;
      // A shutdown during the grace (a second signal) has taken over.
      if (this.#stopping) return await this.shutdown();
    }
    this.stopAccepting(
      `draining: no new connections; ${this.#connections.size} open ones have ${
        (ms - grace) / 1000
      } s to finish`,
    );
    await Promise.race([
      this.serve(),
      new Promise((resolve) => timer = setTimeout(resolve, ms - grace)),
    ]);
    clearTimeout(timer);
    if (this.#connections.size > 0) {
      this.log.info(`drain timeout: closing ${this.#connections.size} open connections`);
    }
    await this.shutdown();
  }

  /** True once shutdown has begun. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Logs websockify's startup banner. */
  logBanner(): void {
    const { listen, tls, web, target } = this.settings;
    for (const { level, message } of certificateNotices(tls)) this.log[level](message);
    const lines = [
      "WebSocket server settings:",
      listen.kind === "unix"
        ? `  - Listen on unix socket ${this.listenText}`
        : listen.kind === "inetd"
        ? "  - Listen for inetd connections"
        : `  - Listen on ${this.listenText}`,
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
    if (this.settings.proxyProtocol) lines.push("  - PROXY protocol header required (v1 or v2)");
    const sendHeader = this.settings.targetProxyProtocol;
    if (sendHeader) lines.push(`  - PROXY protocol ${sendHeader} header sent to the target`);
    if (this.settings.daemon) lines.push("  - Backgrounding (daemon)");
    if (this.settings.record) lines.push(`  - Recording to '${this.settings.record}.*'`);
    lines.push(
      `  - proxying from ${this.listenText} to ${describeTarget(target)}${usingSsl(target)}`,
    );
    for (const line of lines) this.log.info(line);
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
    if (reason) this.log.info(reason);
    closeQuietly(this.#listener);
  }

  /**
   * Stops accepting; connections not yet in a session end at once, sessions get close 1001 and the closing
   * wait; resolves once every connection is finished, or after the close timeout (then they are cut).
   */
  async shutdown(): Promise<void> {
    if (this.#stopping) return this.#served;
    this.#stopping = true;
    this.#endGrace?.();
    closeQuietly(this.#listener);
    for (const connection of this.#connections.keys()) connection.shutdown();
    const served = this.serve();
    const limit = sleep(this.timeouts.close + 500).then(() => {
      for (const connection of this.#connections.keys()) connection.deadline.expire("shutdown");
    });
    await Promise.race([served, limit]);
    this.plugins.token?.close?.();
  }

  /** --timeout and --idle-timeout, checked once a second as Python does. */
  #startLifetimeChecks(): () => void {
    const { timeout, idleTimeout } = this.settings;
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
        if (this.#connections.size > 0) {
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
            this.log.warning(
              `accept failed: ${
                describeError(error)
              }; ${this.#connections.size} connections open, backing off`,
            );
          }
          backoff = Math.min(backoff === 0 ? 50 : backoff * 2, 1000);
          await sleep(backoff);
        } else if (++failedInARow % ACCEPT_FAILURES_BEFORE_PAUSE === 0) {
          // A failure that concerns one connection (reset before accept, ECONNABORTED) is retried at once
          // and not logged: a flood of them must neither slow accepting nor fill the log. Only an error
          // that keeps coming is worth a line and a pause.
          this.log.warning(
            `accept failed ${failedInARow} times in a row: ${describeError(error)}; pausing`,
          );
          await sleep(50);
        }
        continue;
      }
      failedInARow = 0;
      if (backoff > 0) {
        this.log.info("accepting connections again");
        backoff = 0;
      }
      const number = this.#connectionCount++ * this.#numbering.count + this.#numbering.index + 1;
      this.#serveConnection(new Connection(this, conn, number));
    }
    stopChecks();
    await Promise.all(this.#connections.values());
    if (this.settings.listen.kind === "unix") {
      await Deno.remove(this.settings.listen.path).catch(() => {});
    }
  }

  #serveConnection(connection: Connection): void {
    const ended = connection.run().then(
      () => this.#connections.delete(connection),
      (error) => {
        this.log.error(`handler exception: ${describeError(error)}`);
        this.#connections.delete(connection);
      },
    );
    this.#connections.set(connection, ended);
  }
}
