/** The proxy under test: in this process on a free loopback port, or as a child process (`deno run main.ts`). */

import { parseCommandLine } from "../../lib/cli.ts";
import { Logger, type LogSink } from "../../lib/log.ts";
import { openListener } from "../../lib/listen.ts";
import { loadPlugins } from "../../lib/plugins.ts";
import { DEFAULT_TIMEOUTS, ProxyServer, type ServerTimeouts } from "../../lib/server.ts";
import { resolveSettings } from "../../lib/startup.ts";
import { ROOT } from "./paths.ts";
import { deadline, waitFor } from "./waits.ts";

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
  logger.format = settings.logFormat;
  const listener = await openListener(settings.listen);
  const plugins = await loadPlugins(
    settings,
    (message) => logger.warning(message),
    (message) => logger.info(message),
  );
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
        // The shell may change folder first: no INIT_CWD, so the proxy takes its own folder.
        env: { NO_COLOR: "1", INIT_CWD: "", ...options.env },
      })
      : new Deno.Command(Deno.execPath(), {
        args: denoArgs,
        cwd: options.task ? ROOT : undefined,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        // Relative paths resolve against INIT_CWD when set (deno task sets it where the user typed the
        // command, and keeps one inherited): here, the child's own folder.
        env: { NO_COLOR: "1", INIT_CWD: options.task ? ROOT : Deno.cwd(), ...options.env },
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
    // The banner's last line: the rest of it has been read too (tests look at its other lines).
    await waitFor(() => /- proxying from /.test(this.stderr) || this.exited, ms, "the banner");
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
