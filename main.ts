/**
 * websockify for Deno: a WebSocket-to-TCP proxy, drop-in for Python websockify's command line.
 *
 *     deno run -A main.ts [options] [source_addr:]source_port target_addr:target_port
 *
 * This file only wires: command line -> checks -> (daemon) -> logging -> listener -> wrapped program -> server ->
 * signals -> exit code.
 *
 * @module
 */

import { helpText, parseCommandLine, USAGE, UsageError } from "./lib/cli.ts";
import { DAEMON_ENV, reportDaemonStatus, startDaemon } from "./lib/daemon.ts";
import { sleep } from "./lib/deadline.ts";
import { type Acceptor, openListener } from "./lib/listen.ts";
import { formatHostPort } from "./lib/hostport.ts";
import { Logger } from "./lib/log.ts";
import { FACILITY, FileSink, SyslogSink } from "./lib/logsinks.ts";
import { loadPlugins, type ServerPlugins } from "./lib/plugins.ts";
import { DEFAULT_TIMEOUTS, ProxyServer } from "./lib/server.ts";
import type { Settings } from "./lib/settings.ts";
import { checkStartup, fsReason, resolveSettings, type StartupProblem } from "./lib/startup.ts";
import { describeError } from "./lib/targets.ts";
import { chooseFreePort, preparePreloadLibrary, WrappedProgram } from "./lib/wrap.ts";

const PROGRAM = "websockify";
/** After a stop signal the process exits within this time, whatever a peer or program does. */
const HARD_STOP_MS = 8000;

async function main(argv: string[]): Promise<number> {
  let command;
  try {
    // Relative paths are the user's: `deno task` runs in the project's folder but says where it was started.
    command = parseCommandLine(argv, Deno.env.get("INIT_CWD") || Deno.cwd());
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${USAGE}\n\n${PROGRAM}: error: ${error.message}`);
    return 2;
  }
  if (command.kind === "help") {
    console.log(helpText());
    return 0;
  }
  const log = new Logger();
  log.verbose = command.settings.verbose;
  const inDaemon = Deno.env.get(DAEMON_ENV) !== undefined;

  // What can be checked before listening is checked now, with a clear message.
  if (!inDaemon) { for (const note of command.settings.notes) log.warning(`note: ${note}`); }
  const resolved = await resolveSettings(command.settings);
  if ("problem" in resolved) return startupFailure(resolved.problem);
  const { settings } = resolved;
  // Every path and address is tried too, before -D detaches: a mistake stops the start, naming the option.
  const problem = await checkStartup(settings);
  if (problem) return startupFailure(problem);
  let plugins: ServerPlugins;
  try {
    plugins = await loadPlugins(settings, (message) => log.warning(message));
  } catch (error) {
    reportDaemonStatus(`error: ${describeError(error)}`);
    console.error(`${PROGRAM}: error: ${describeError(error)}`);
    return 2;
  }
  if (settings.daemon && !inDaemon) return await startDaemon(log);
  if (inDaemon) Deno.chdir("/");

  const closeSinks = await openLogSinks(settings, log);
  if (closeSinks === undefined) return 1;
  try {
    return await serve(settings, log, plugins);
  } finally {
    await closeSinks();
  }
}

/** Reports why the start failed (to stderr, and to a -D launcher); returns the exit code. */
function startupFailure(problem: StartupProblem): number {
  reportDaemonStatus(`error: ${problem.message}`);
  console.error(`${PROGRAM}: error: ${problem.message}`);
  return problem.exitCode;
}

/** --log-file and --syslog, besides stderr. Returns their closer, or undefined after logging why it failed. */
async function openLogSinks(
  settings: Settings,
  log: Logger,
): Promise<(() => Promise<void>) | undefined> {
  const opened: { close(): void; flush?(): Promise<void> }[] = [];
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
    reportDaemonStatus(`error: ${describeError(error)}`);
    log.error(describeError(error));
    return undefined;
  }
  // An exit that skips the closer (the hard stop's Deno.exit) still closes them: no socket directory is left.
  const closeAll = () => opened.forEach((sink) => sink.close());
  globalThis.addEventListener("unload", closeAll);
  return async () => {
    for (const sink of opened) await sink.flush?.();
    closeAll();
    globalThis.removeEventListener("unload", closeAll);
  };
}

async function serve(settings: Settings, log: Logger, plugins: ServerPlugins): Promise<number> {
  // Last line of defence: one connection's bug must never take the others down.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error(`internal error (unhandled rejection): ${describeError(event.reason)}`);
  });
  // Deno's node:tls can throw from inside its own callbacks when a peer misbehaves (seen in probes): log it,
  // keep serving.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log.error(`internal error (uncaught exception): ${describeError(event.error)}`);
  });

  let listener: Acceptor;
  try {
    listener = await openListener(settings.listen);
  } catch (error) {
    const reason = `Opening socket failed: ${listenFailure(settings, error)}`;
    reportDaemonStatus(`error: ${reason}`);
    log.error(reason);
    return 1;
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
      reportDaemonStatus(`error: ${describeError(error)}`);
      log.error(describeError(error));
      return 1;
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

  // Written before readiness is reported: whoever waits for the daemon may read it at once. Removed at any exit,
  // the hard stop's included.
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
      const reason = `--pid-file '${pidFile}': ${fsReason(error)}`;
      reportDaemonStatus(`error: ${reason}`);
      log.error(reason);
      return 1;
    }
  }

  let stopRequested = false;
  const server = new ProxyServer(running, listener, log, DEFAULT_TIMEOUTS, plugins);
  server.logBanner();
  let exitCode = 0;
  if (wrapped) {
    try {
      wrapped.start();
    } catch (error) {
      reportDaemonStatus(`error: Starting the wrapped command failed: ${describeError(error)}`);
      log.error(`Starting the wrapped command failed: ${describeError(error)}`);
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
  reportDaemonStatus(`ok ${Deno.pid} ${server.listenText}`);

  const stop = (signal: string) => {
    log.info(`${signal} received, shutting down`);
    stopRequested = true;
    server.shutdown();
    // The shutdown is bounded connection by connection; this bounds the whole, whatever a peer does.
    Deno.unrefTimer(setTimeout(() => {
      log.error("connections still open after the shutdown limit; exiting anyway");
      Deno.exit(exitCode);
    }, HARD_STOP_MS));
  };
  const onInt = () => stop("SIGINT");
  const onTerm = () => stop("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  await server.serve();
  await wrapped?.stop();
  await library?.dispose();
  removePidFile();
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  return exitCode;
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

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    // A bug, not a user's mistake: still a non-zero exit, and a -D launcher that hears why.
    const reason = `internal error: ${error instanceof Error ? error.stack : String(error)}`;
    reportDaemonStatus(`error: ${reason.split("\n")[0]}`);
    console.error(`${PROGRAM}: ${reason}`);
    code = 70;
  }
  Deno.exit(code);
}
