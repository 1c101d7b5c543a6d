/**
 * `--workers N`: N proxy processes on one address (SO_REUSEPORT: the kernel spreads connections among them),
 * supervised by the process the user started. The supervisor does not accept connections itself: it starts the
 * workers (this program again, with WEBSOCKIFY_WORKER set), restarts one that dies (at most RESTART_LIMIT times
 * in RESTART_WINDOW_MS per worker, each logged), passes SIGTERM/SIGINT to all (each drains per --drain-timeout),
 * writes the pid file, serves --metrics-listen with every worker's metrics summed, and exits with 0 after a
 * clean stop, or with the failing worker's code when they cannot start.
 *
 * A worker tells the supervisor it is ready, and answers for its metrics, on a unix socket in a private
 * folder: `GET /snapshot` gives its MetricsSnapshot as JSON.
 *
 * @module
 */

import { sleep } from "./deadline.ts";
import { formatHostPort } from "./hostport.ts";
import type { LogSinks } from "./app.ts";
import { concatBytes } from "./io.ts";
import type { Logger } from "./log.ts";
import { label, mergeSnapshots, type MetricsSnapshot } from "./metrics.ts";
import { type MetricsListener, serveMetrics } from "./metrics_server.ts";
import type { Settings } from "./settings.ts";
import { DAEMON_ENV, relaunchCommand } from "./daemon.ts";

/** Set in a worker's environment: `index/count/port/snapshot-socket-path`. */
export const WORKER_ENV = "WEBSOCKIFY_WORKER";

/** What a worker process is. */
export interface WorkerRole {
  /** 0-based. */
  index: number;
  count: number;
  /** The port every worker listens on (chosen by the supervisor when 0 was asked for). */
  port: number;
  /** Where it answers for its metrics (and shows that it listens). */
  snapshotPath: string;
}

/** This process's worker role, or undefined for a process the user started. */
export function workerRole(): WorkerRole | undefined {
  const text = Deno.env.get(WORKER_ENV);
  if (!text) return undefined;
  const [index, count, port, ...path] = text.split("/");
  return {
    index: Number(index),
    count: Number(count),
    port: Number(port),
    snapshotPath: "/" + path.filter((part) => part).join("/"),
  };
}

/** A worker's side: answers `GET /snapshot` on its socket until `close`. */
export function serveSnapshots(path: string, snapshot: () => MetricsSnapshot): Deno.HttpServer {
  return Deno.serve({ path, onListen: () => {} }, () => Response.json(snapshot()));
}

/** Asks a worker for its metrics (bounded: a stuck worker is left out of that scrape). */
async function fetchSnapshot(path: string): Promise<MetricsSnapshot | undefined> {
  let conn: Deno.UnixConn | undefined;
  const timer = setTimeout(() => conn?.close(), 1000);
  try {
    conn = await Deno.connect({ transport: "unix", path });
    await conn.write(new TextEncoder().encode("GET /snapshot HTTP/1.0\r\nHost: worker\r\n\r\n"));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
    const text = new TextDecoder().decode(concatBytes(chunks));
    const body = text.slice(text.indexOf("\r\n\r\n") + 4);
    return JSON.parse(body) as MetricsSnapshot;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/** At most this many restarts of one worker within RESTART_WINDOW_MS; beyond, it stays down (logged). */
const RESTART_LIMIT = 5;
const RESTART_WINDOW_MS = 60_000;
/** A worker that does not listen within this time of its start failed to start. */
const WORKER_READY_MS = 20_000;
/** After a stop signal, workers that have not exited within their drain time plus this are killed. */
const WORKER_STOP_MARGIN_MS = 10_000;

interface WorkerSlot {
  index: number;
  child: Deno.ChildProcess | undefined;
  restarts: number[];
  /** Given up on (restarted too often). */
  dead: boolean;
  /** The exit of the current child. */
  exited: Promise<Deno.CommandStatus> | undefined;
}

/**
 * The supervisor's life: starts the workers and waits until each listens, then supervises until a stop signal
 * and the workers' exit. `report` is told `ok <address>` once all listen, or the error (for -D). Returns the
 * exit code.
 */
export async function supervise(
  settings: Settings,
  log: Logger,
  report: (status: string) => void,
  startDir: string,
  sinks: LogSinks,
): Promise<number> {
  const { listen } = settings;
  if (listen.kind !== "tcp") throw new Error("--workers needs a TCP listen address");
  const count = settings.workers;
  const port = listen.port === 0 ? freePort(listen.hostname) : listen.port;
  const address = formatHostPort(listen.hostname || "::", port);
  const dir = await Deno.makeTempDir({ prefix: "websockify-workers-" });
  const socketOf = (index: number) => `${dir}/worker-${index}.sock`;
  const slots: WorkerSlot[] = Array.from({ length: count }, (_, index) => ({
    index,
    child: undefined,
    restarts: [],
    dead: false,
    exited: undefined,
  }));
  let stopping = false;
  /** Set once every worker listens: from then on, a worker that dies is restarted. */
  let supervising = false;
  let metricsListener: MetricsListener | undefined;

  const spawn = (slot: WorkerSlot) => {
    try {
      Deno.removeSync(socketOf(slot.index));
    } catch { /* none */ }
    const [command, ...args] = relaunchCommand({ unstableNet: true });
    const child = new Deno.Command(command, {
      args,
      // (Not the -D launcher's status file: the supervisor reports, once every worker listens.)
      env: {
        [WORKER_ENV]: `${slot.index}/${count}/${port}${socketOf(slot.index)}`,
        [DAEMON_ENV]: "",
        // Relative paths on the command line are the user's (the supervisor may be a daemon, in /).
        INIT_CWD: startDir,
      },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    slot.child = child;
    slot.exited = child.status;
    child.status.then((status) => {
      if (slot.child !== child) return;
      slot.child = undefined;
      if (stopping || !supervising) return;
      log.error(
        `worker ${slot.index + 1} (pid ${child.pid}) exited with ${
          status.signal ? `signal ${status.signal}` : `code ${status.code}`
        }`,
      );
      const now = performance.now();
      slot.restarts = slot.restarts.filter((time) => now - time < RESTART_WINDOW_MS);
      if (slot.restarts.length >= RESTART_LIMIT) {
        slot.dead = true;
        log.error(
          `worker ${slot.index + 1} restarted ${RESTART_LIMIT} times within ${
            RESTART_WINDOW_MS / 1000
          } s: not restarted again`,
        );
        if (slots.every((other) => other.dead)) stop("all workers failed", "SIGTERM", true);
        return;
      }
      slot.restarts.push(now);
      log.info(`restarting worker ${slot.index + 1}`);
      spawn(slot);
      const restarted = slot.child!;
      (async () => {
        const giveUp = performance.now() + WORKER_READY_MS;
        while (slot.child === restarted && performance.now() < giveUp) {
          if (await fetchSnapshot(socketOf(slot.index))) {
            log.info(`worker ${slot.index + 1} (pid ${restarted.pid}) listening`);
            return;
          }
          await sleep(50);
        }
      })();
    });
  };

  let stopped: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => stopped = resolve);
  const stop = (reason: string, signal: Deno.Signal, failed = false) => {
    if (stopping) {
      // A second signal: passed on (the workers then stop without waiting).
      for (const slot of slots) signalChild(slot.child, signal);
      return;
    }
    stopping = true;
    log.info(`${reason}: stopping ${slots.filter((slot) => slot.child).length} workers`);
    for (const slot of slots) signalChild(slot.child, signal);
    const killAt = setTimeout(() => {
      for (const slot of slots) signalChild(slot.child, "SIGKILL");
    }, settings.drainTimeout * 1000 + WORKER_STOP_MARGIN_MS);
    Promise.all(slots.map((slot) => slot.exited)).then((statuses) => {
      clearTimeout(killAt);
      // 1 when the workers failed; else the first worker that did not stop cleanly gives its code (one that the
      // signal ended before it could handle it, a worker just restarted, stopped as asked).
      const unclean = statuses.find((status) =>
        status && status.code !== 0 && status.signal !== "SIGTERM" && status.signal !== "SIGINT"
      );
      stopped(failed ? 1 : unclean?.code ?? 0);
    });
  };

  try {
    for (const slot of slots) spawn(slot);
    // Ready once every worker listens (its snapshot socket answers); a worker that exits first failed.
    const failure = await waitForWorkers(slots, socketOf);
    if (failure !== undefined) {
      stopping = true;
      for (const slot of slots) signalChild(slot.child, "SIGTERM");
      await Promise.all(slots.map((slot) => slot.exited));
      report(`error: ${failure.message}`);
      log.error(failure.message);
      return failure.code;
    }
    if (settings.metricsListen) {
      metricsListener = serveMetrics(settings.metricsListen, {
        snapshot: async () => {
          const snapshots = await Promise.all(
            slots.map(async (slot) => ({
              slot,
              snapshot: slot.child ? await fetchSnapshot(socketOf(slot.index)) : undefined,
            })),
          );
          const present = snapshots.filter((entry) => entry.snapshot !== undefined);
          const merged = mergeSnapshots(present.map((entry) => entry.snapshot!));
          // Per worker, so that the spread can be seen.
          merged.counters.websockify_worker_sessions_total = Object.fromEntries(
            present.map(({ slot, snapshot }) => [
              label("worker", String(slot.index + 1)),
              snapshot!.counters.websockify_sessions_total?.[""] ?? 0,
            ]),
          );
          merged.counters.websockify_worker_restarts_total = Object.fromEntries(
            slots.map((slot) => [label("worker", String(slot.index + 1)), slot.restarts.length]),
          );
          if (stopping) merged.gauges.websockify_draining = { "": 1 };
          return merged;
        },
        notReady: () =>
          stopping
            ? "draining"
            : slots.some((slot) => slot.child)
            ? undefined
            : "no worker running",
      });
      log.info(
        `  - Metrics on http://${
          formatHostPort(metricsListener.addr.hostname, metricsListener.addr.port)
        }/metrics (also /healthz, /readyz), all workers summed`,
      );
    }
    if (settings.pidFile) Deno.writeTextFileSync(settings.pidFile, `${Deno.pid}\n`);
    log.info(
      `${count} workers listening on ${address}: pids ${
        slots.map((slot) => slot.child?.pid).join(", ")
      }`,
    );
    report(`ok ${Deno.pid} ${address}`);
    supervising = true;
    const onTerm = () => stop("SIGTERM received", "SIGTERM");
    const onInt = () => stop("SIGINT received", "SIGINT");
    // SIGHUP: the supervisor's own log file, then every worker's (they reload their plugins too).
    const onHup = () => {
      sinks.reopen();
      log.info("SIGHUP received: passed on to the workers");
      for (const slot of slots) signalChild(slot.child, "SIGHUP");
    };
    Deno.addSignalListener("SIGTERM", onTerm);
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGHUP", onHup);
    const code = await done;
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGHUP", onHup);
    return code;
  } finally {
    await metricsListener?.close();
    if (settings.pidFile) {
      try {
        Deno.removeSync(settings.pidFile);
      } catch { /* not written */ }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Waits until every worker's snapshot socket answers; a worker that exits first is the failure. */
async function waitForWorkers(
  slots: WorkerSlot[],
  socketOf: (index: number) => string,
): Promise<{ message: string; code: number } | undefined> {
  const giveUp = performance.now() + WORKER_READY_MS;
  const ready = new Set<number>();
  while (ready.size < slots.length) {
    for (const slot of slots) {
      if (ready.has(slot.index)) continue;
      if (!slot.child) {
        const status = await slot.exited!;
        return {
          message: `worker ${
            slot.index + 1
          } exited with code ${status.code} before it was listening`,
          code: status.code || 1,
        };
      }
      if (await fetchSnapshot(socketOf(slot.index))) ready.add(slot.index);
    }
    if (performance.now() > giveUp) {
      return { message: `workers not listening within ${WORKER_READY_MS / 1000} s`, code: 1 };
    }
    if (ready.size < slots.length) await sleep(50);
  }
  return undefined;
}

function signalChild(child: Deno.ChildProcess | undefined, signal: Deno.Signal): void {
  try {
    child?.kill(signal);
  } catch { /* already gone */ }
}

/** A free TCP port on `hostname` (bound and released: the workers bind it next, with SO_REUSEPORT). */
function freePort(hostname: string): number {
  const listener = Deno.listen({ hostname: hostname || "0.0.0.0", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
