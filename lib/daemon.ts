/**
 * `-D/--daemon`. Deno cannot fork, so the program relaunches itself in a new session (`setsid`) with its standard
 * streams on /dev/null, and the launching process waits until the daemon reports that it listens (exit 0) or
 * why it could not (exit 1, with the reason) — Python's daemon reports nothing. The report travels through a
 * private status file named in the daemon's environment. All paths were made absolute by the command line.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "./deadline.ts";
import type { Logger } from "./log.ts";

/** Set in the daemon's environment: the status file to report to. */
export const DAEMON_ENV = "WEBSOCKIFY_DAEMON_STATUS";

/** How long the launcher waits for the daemon to report. */
const READY_TIMEOUT_MS = 30_000;

/** In the daemon: tells the launcher `ok <pid> <address>` or `error: <reason>` (once; no-op elsewhere). */
export function reportDaemonStatus(status: string): void {
  const path = Deno.env.get(DAEMON_ENV);
  if (!path) return;
  try {
    Deno.writeTextFileSync(`${path}.tmp`, status + "\n");
    Deno.renameSync(`${path}.tmp`, path); // the launcher never sees half a line
  } catch {
    // The launcher gave up and removed its directory; nothing to tell.
  }
  Deno.env.delete(DAEMON_ENV);
}

/**
 * The command that runs this program again: the executable itself, or `deno run` with the granted permissions
 * (and `--unstable-net` when this run has it, or `unstableNet` asks for it: workers need SO_REUSEPORT).
 */
export function relaunchCommand(options: { unstableNet?: boolean } = {}): string[] {
  const exec = Deno.execPath();
  if (!/^deno(\.exe)?$/.test(basename(exec))) return [exec, ...Deno.args]; // a compiled executable
  const main = fileURLToPath(Deno.mainModule);
  const args = ["run"];
  const names = ["net", "read", "write", "env", "run", "sys", "ffi", "import"] as const;
  const granted = names.filter((name) => Deno.permissions.querySync({ name }).state === "granted");
  // Everything granted is --allow-all, which Deno requires for paths under /dev (--syslog=/dev/log).
  if (granted.length === names.length) args.push("--allow-all");
  else args.push(...granted.map((name) => `--allow-${name}`));
  if ("listenDatagram" in Deno || options.unstableNet) args.push("--unstable-net");
  const config = `${dirname(main)}/deno.json`;
  try {
    // The project's config and its lock, as `deno task start` runs it.
    if (Deno.statSync(config).isFile) args.push(`--config=${config}`, "--frozen");
  } catch { /* run without the project's config */ }
  return [exec, ...args, main, ...Deno.args];
}

/** In the launcher: starts the daemon, waits for its report, returns the launcher's exit code. */
export async function startDaemon(log: Logger): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "websockify-daemon-" });
  const statusPath = `${dir}/status`;
  try {
    const child = new Deno.Command("setsid", {
      args: relaunchCommand(),
      env: { [DAEMON_ENV]: statusPath },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited: Deno.CommandStatus | undefined;
    child.status.then((status) => exited = status);
    const giveUp = performance.now() + READY_TIMEOUT_MS;
    while (performance.now() < giveUp) {
      let status: string | undefined;
      try {
        status = Deno.readTextFileSync(statusPath).trim();
      } catch { /* not yet */ }
      if (status?.startsWith("ok ")) {
        const [, pid, address] = status.split(" ");
        log.info(`daemon started: pid ${pid}, listening on ${address}`);
        child.unref();
        return 0;
      }
      if (status !== undefined) {
        log.error(`daemon failed to start: ${status.replace(/^error: /, "")}`);
        return 1;
      }
      if (exited) {
        log.error(`daemon exited with code ${exited.code} before it was listening`);
        return 1;
      }
      await sleep(50);
    }
    log.error(`daemon did not report within ${READY_TIMEOUT_MS / 1000} s`);
    return 1;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
