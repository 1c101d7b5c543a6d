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
import {
  type LogSinks,
  openLogSinks,
  prepareProxy,
  reload,
  type StartedProxy,
  StartFailure,
  startProxy,
} from "./lib/app.ts";
import { Logger } from "./lib/log.ts";
import type { ServerPlugins } from "./lib/plugins.ts";
import type { Settings } from "./lib/settings.ts";
import { describeError } from "./lib/targets.ts";
import { supervise, type WorkerRole, workerRole } from "./lib/workers.ts";

const PROGRAM = "websockify";
/** After a stop signal the process exits within this time, whatever a peer or program does. */
const HARD_STOP_MS = 8000;

async function main(argv: string[]): Promise<number> {
  let command;
  // Relative paths are the user's: `deno task` runs in the project's folder but says where it was started.
  const startDir = Deno.env.get("INIT_CWD") || Deno.cwd();
  try {
    command = parseCommandLine(argv, startDir);
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
  log.format = command.settings.logFormat;
  // A --workers worker: its supervisor checked, reported and daemonized; the worker only serves.
  const role = workerRole();
  const inDaemon = !role && Deno.env.get(DAEMON_ENV) !== undefined;

  // What can be checked before listening is checked now, with a clear message.
  if (!inDaemon && !role) {
    for (const note of command.settings.notes) log.warning(`note: ${note}`);
  }
  // Every path and address is tried before -D detaches: a mistake stops the start, naming the option.
  let prepared;
  try {
    prepared = await prepareProxy(command.settings, log);
  } catch (error) {
    if (!(error instanceof StartFailure)) throw error;
    return startupFailure(error, log);
  }
  const { settings, plugins } = prepared;
  if (settings.daemon && !inDaemon && !role) {
    // The daemon listens where the plugins listen (ReverseConnection): this process lets go first.
    plugins.token?.close?.();
    return await startDaemon(log);
  }
  if (inDaemon) Deno.chdir("/");

  let sinks;
  try {
    sinks = await openLogSinks(settings, log);
  } catch (error) {
    if (!(error instanceof StartFailure)) throw error;
    reportDaemonStatus(`error: ${error.message}`);
    log.error(error.message);
    return error.exitCode;
  }
  try {
    if (settings.workers > 1 && !role) {
      // The supervisor serves no connection: its plugins were loaded only to check them.
      plugins.token?.close?.();
      return await supervise(settings, log, reportDaemonStatus, startDir, sinks);
    }
    return await serve(settings, log, plugins, role, sinks);
  } finally {
    await sinks.close();
  }
}

async function serve(
  settings: Settings,
  log: Logger,
  plugins: ServerPlugins,
  role: WorkerRole | undefined,
  sinks: LogSinks,
): Promise<number> {
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

  let proxy: StartedProxy;
  try {
    proxy = await startProxy(settings, log, plugins, role);
  } catch (error) {
    if (!(error instanceof StartFailure)) throw error;
    reportDaemonStatus(`error: ${error.message}`);
    log.error(error.message);
    return error.exitCode;
  }
  reportDaemonStatus(
    proxy.startError ? `error: ${proxy.startError}` : `ok ${Deno.pid} ${proxy.server.listenText}`,
  );

  let signals = 0;
  let firstSignalAt = 0;
  const stop = (signal: string) => {
    // A worker gets SIGTERM twice when a supervisor and the process group both send it (systemd's default
    // KillMode, a terminal): one stop, not a drain cut short.
    if (signals > 0 && signal === "SIGTERM" && role && performance.now() - firstSignalAt < 1000) {
      return;
    }
    if (signals === 0) firstSignalAt = performance.now();
    // SIGTERM with --drain-timeout drains first; a second signal (or SIGINT) stops at once.
    const drain = signal === "SIGTERM" && signals === 0 ? settings.drainTimeout : 0;
    signals++;
    if (drain > 0) {
      log.info(`${signal} received, draining for up to ${drain} s`);
      proxy.drain(drain);
    } else {
      log.info(`${signal} received, shutting down`);
      proxy.stop();
    }
    // The shutdown is bounded connection by connection; this bounds the whole, whatever a peer does.
    Deno.unrefTimer(setTimeout(() => {
      log.error("connections still open after the shutdown limit; exiting anyway");
      Deno.exit(proxy.exitCode);
    }, drain * 1000 + HARD_STOP_MS));
  };
  const onInt = () => stop("SIGINT");
  const onTerm = () => stop("SIGTERM");
  const onHup = () => void reload(log, sinks, plugins);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGHUP", onHup);
  const exitCode = await proxy.finished;
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  Deno.removeSignalListener("SIGHUP", onHup);
  return exitCode;
}

/** Reports why the start failed (to stderr, and to a -D launcher); returns the exit code. */
function startupFailure(problem: StartFailure, log: Logger): number {
  reportDaemonStatus(`error: ${problem.message}`);
  if (log.format === "json") log.error(`error: ${problem.message}`);
  else console.error(`${PROGRAM}: error: ${problem.message}`);
  return problem.exitCode;
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
