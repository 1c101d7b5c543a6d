/**
 * A proxy's life as a whole, for the command line (main.ts) and the library (mod.ts) alike: settings checked and
 * plugins loaded (`prepareProxy`), then listening, the wrapped program, the pid file and the server
 * (`startProxy`), and the exit code once it is over. Process-wide concerns stay with the caller: signals, the
 * daemon, global error handlers, `Deno.exit`.
 *
 * @module
 */

import { sleep } from "./deadline.ts";
import { formatHostPort } from "./hostport.ts";
import { type Acceptor, openListener } from "./listen.ts";
import type { Logger } from "./log.ts";
import { FACILITY, FileSink, SyslogSink } from "./logsinks.ts";
import { type MetricsListener, serveMetrics } from "./metrics_server.ts";
import { loadPlugins, type ServerPlugins } from "./plugins.ts";
import { DEFAULT_TIMEOUTS, ProxyServer } from "./server.ts";
import type { Settings } from "./settings.ts";
import { checkStartup, fsReason, resolveSettings } from "./startup.ts";
import { describeError } from "./targets.ts";
import { serveSnapshots, type WorkerRole } from "./workers.ts";
import { chooseFreePort, preparePreloadLibrary, WrappedProgram } from "./wrap.ts";

/** Why a proxy could not start, and the exit code the command line gives for it. */
export class StartFailure extends Error {
  override name = "StartFailure";
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/**
 * Resolves the settings (certificate, `--web` real path), checks every path and address they name, and loads
 * the plugins. Throws a StartFailure naming the option at fault.
 */
export async function prepareProxy(
  given: Settings,
  log: Logger,
): Promise<{ settings: Settings; plugins: ServerPlugins }> {
  const resolved = await resolveSettings(given);
  if ("problem" in resolved) {
    throw new StartFailure(resolved.problem.message, resolved.problem.exitCode);
  }
  const { settings } = resolved;
  const problem = await checkStartup(settings);
  if (problem) throw new StartFailure(problem.message, problem.exitCode);
  try {
    const plugins = await loadPlugins(
      settings,
      (message) => log.warning(message),
      (message) => log.info(message),
    );
    return { settings, plugins };
  } catch (error) {
    throw new StartFailure(describeError(error), 2);
  }
}

/**
 * Adds `--log-file` and `--syslog` to the log's sinks. Returns their closer (flushes, then closes); throws a
 * StartFailure (exit code 1) when one cannot be opened, with none left open.
 */
export async function openLogSinks(
  settings: Settings,
  log: Logger,
): Promise<LogSinks> {
  const opened: { close(): void; flush?(): Promise<void>; reopen?(): void }[] = [];
  try {
    if (settings.logFile) {
      let sink: FileSink;
      try {
        sink = new FileSink(settings.logFile);
      } catch (error) {
        throw new Error(`--log-file '${settings.logFile}': ${fsReason(error)}`);
      }
      opened.push(sink);
      log.sinks.push(sink);
    }
    if (settings.syslog) {
      const sink = await SyslogSink.open(settings.syslog, {
        facility: settings.daemon ? FACILITY.daemon : FACILITY.user,
        legacy: settings.legacySyslog,
        hostname: Deno.hostname(),
        pid: Deno.pid,
      });
      opened.push(sink);
      log.sinks.push(sink);
    }
  } catch (error) {
    for (const sink of opened) sink.close();
    log.sinks.splice(log.sinks.length - opened.length, opened.length);
    throw new StartFailure(describeError(error), 1);
  }
  // An exit that skips the closer (the hard stop's Deno.exit) still closes them: no socket directory is left.
  const closeAll = () => opened.forEach((sink) => sink.close());
  globalThis.addEventListener("unload", closeAll);
  return {
    async close() {
      for (const sink of opened) await sink.flush?.();
      closeAll();
      globalThis.removeEventListener("unload", closeAll);
    },
    reopen() {
      for (const sink of opened) sink.reopen?.();
    },
  };
}

/** The log's extra sinks (`--log-file`, `--syslog`). */
export interface LogSinks {
  /** Flushes and closes them. */
  close(): Promise<void>;
  /** SIGHUP: the log file is opened again by its name (after logrotate moved it). */
  reopen(): void;
}

/**
 * SIGHUP: reopens the log file and has the plugins read their sources again (certificates need nothing: each
 * TLS connection reads them). A failure is logged; what failed serves on as before.
 */
export async function reload(log: Logger, sinks: LogSinks, plugins: ServerPlugins): Promise<void> {
  sinks.reopen();
  log.info("SIGHUP received: log file reopened, plugin sources read again");
  for (const plugin of [plugins.token, plugins.auth]) {
    if (!plugin?.reload) continue;
    try {
      await plugin.reload();
    } catch (error) {
      log.warning(`reload of ${plugin.name} failed (it serves as before): ${describeError(error)}`);
    }
  }
}

/** A proxy that is listening. */
export interface StartedProxy {
  readonly server: ProxyServer;
  /**
   * Resolves once the server has stopped and the wrapped program, preload library and pid file are gone: with
   * 0, or in wrap mode `exit` the program's exit code (unless `stop` was called first), or 1 when the wrapped
   * program could not start.
   */
  readonly finished: Promise<number>;
  /** The exit code as it stands now (what `finished` resolves with once it is over). */
  readonly exitCode: number;
  /** Set when the wrapped program could not be started (the proxy is then already stopping). */
  readonly startError: string | undefined;
  /** Where --metrics-listen listens (its port, when 0 was asked for). */
  readonly metricsAddr: Deno.NetAddr | undefined;
  /** Stops accepting, ends the sessions (close 1001) and the wrapped program; see `finished`. */
  stop(): void;
  /**
   * Graceful stop: stops accepting (/readyz 503), lets sessions go on for up to `seconds`, then as `stop`. A
   * `stop` meanwhile cuts the wait short.
   */
  drain(seconds: number): void;
}

/**
 * Listens, starts the wrapped program (wrap mode), writes the pid file, and serves. Throws a StartFailure (exit
 * code 1) when it cannot listen, prepare wrap mode or write the pid file; nothing is left behind then.
 */
export async function startProxy(
  given: Settings,
  log: Logger,
  plugins: ServerPlugins,
  role?: WorkerRole,
): Promise<StartedProxy> {
  // A --workers worker: the port its supervisor chose, shared; the pid file and the metrics listener are the
  // supervisor's (the worker answers for its metrics on its socket).
  const settings: Settings = role && given.listen.kind === "tcp"
    ? {
      ...given,
      listen: { ...given.listen, port: role.port, reusePort: true },
      pidFile: undefined,
      metricsListen: undefined,
      daemon: false,
    }
    : given;
  let listener: Acceptor;
  try {
    listener = await openListener(settings.listen);
  } catch (error) {
    throw new StartFailure(`Opening socket failed: ${listenFailure(settings, error)}`, 1);
  }

  // Wrap mode: the program's bind() to our port is moved to a free loopback port, where sessions go (the
  // settings the server runs with name that port).
  let wrapped: WrappedProgram | undefined;
  let library: Awaited<ReturnType<typeof preparePreloadLibrary>> | undefined;
  let running = settings;
  const { target, listen } = settings;
  if (target.kind === "command" && listen.kind === "tcp") {
    let port: number;
    try {
      library = await preparePreloadLibrary();
      port = chooseFreePort();
    } catch (error) {
      listener.close();
      await library?.dispose();
      throw new StartFailure(describeError(error), 1);
    }
    running = { ...settings, target: { ...target, port } };
    wrapped = new WrappedProgram({
      command: target.command,
      mode: settings.wrapMode,
      oldPort: listen.port,
      newPort: port,
      library: library.path,
      log,
    });
  }

  // Written before the caller reports readiness: whoever waits for a daemon may read it at once. Removed at any
  // exit, a hard stop's included.
  const { pidFile } = settings;
  const removePidFile = () => {
    globalThis.removeEventListener("unload", removePidFile);
    try {
      if (pidFile) Deno.removeSync(pidFile);
    } catch { /* already gone */ }
  };
  if (pidFile) {
    try {
      Deno.writeTextFileSync(pidFile, `${Deno.pid}\n`);
      globalThis.addEventListener("unload", removePidFile);
    } catch (error) {
      listener.close();
      await library?.dispose();
      throw new StartFailure(`--pid-file '${pidFile}': ${fsReason(error)}`, 1);
    }
  }

  let stopRequested = false;
  const server = new ProxyServer(
    running,
    listener,
    log,
    DEFAULT_TIMEOUTS,
    plugins,
    role ? { index: role.index, count: role.count } : undefined,
  );
  const snapshots = role
    ? serveSnapshots(role.snapshotPath, () => server.metrics.snapshot())
    : undefined;
  let metricsListener: MetricsListener | undefined;
  if (settings.metricsListen) {
    try {
      metricsListener = serveMetrics(settings.metricsListen, {
        snapshot: () => server.metrics.snapshot(),
        notReady: () => server.notReady(),
      });
    } catch (error) {
      listener.close();
      await library?.dispose();
      removePidFile();
      const { hostname, port } = settings.metricsListen;
      throw new StartFailure(
        `--metrics-listen: cannot listen on ${formatHostPort(hostname, port)}: ${
          describeError(error)
        }`,
        1,
      );
    }
  }
  // Workers: one banner (the first's) is enough.
  if (!role || role.index === 0) server.logBanner();
  if (metricsListener) {
    const { hostname, port } = metricsListener.addr;
    log.info(
      `  - Metrics on http://${formatHostPort(hostname, port)}/metrics (also /healthz, /readyz)`,
    );
  }
  let exitCode = 0;
  let startError: string | undefined;
  if (wrapped) {
    try {
      wrapped.start();
    } catch (error) {
      startError = `Starting the wrapped command failed: ${describeError(error)}`;
      log.error(startError);
      exitCode = 1;
      server.shutdown();
    }
    // In exit mode, the proxy's life ends with the program's, and so does its exit code (unless we were told to
    // stop, and the program got the same signal).
    wrapped.exited.then(async (code) => {
      // A supervisor stopping the whole group signals us too; our handler may run a moment after the program's
      // status arrives.
      if (code > 128) await sleep(200);
      if (!stopRequested) exitCode = code;
      server.shutdown();
    });
  }
  const finished = (async () => {
    await server.serve();
    await metricsListener?.close();
    await snapshots?.shutdown();
    await wrapped?.stop();
    await library?.dispose();
    removePidFile();
    return exitCode;
  })();
  return {
    server,
    finished,
    startError,
    get exitCode() {
      return exitCode;
    },
    metricsAddr: metricsListener?.addr,
    stop() {
      stopRequested = true;
      server.shutdown();
    },
    drain(seconds) {
      stopRequested = true;
      if (seconds > 0) server.drain(seconds * 1000, settings.drainGrace * 1000);
      else server.shutdown();
    },
  };
}

/** `cannot listen on 127.0.0.1:6080: Address already in use (os error 98)`: the address, then the reason. */
function listenFailure(settings: Settings, error: unknown): string {
  const { listen } = settings;
  if (listen.kind === "inetd") return describeError(error); // its message names --inetd
  const address = listen.kind === "unix"
    ? `unix socket ${listen.path}`
    : formatHostPort(listen.hostname || "::", listen.port);
  return `cannot listen on ${address}: ${describeError(error)}`;
}
