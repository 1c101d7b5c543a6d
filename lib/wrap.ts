/**
 * Wrap mode: launch a program with rebind.so preloaded so that its bind() to the proxy's port lands on a free
 * loopback port, proxy to it, and supervise it (`--wrap-mode` exit | ignore | respawn).
 *
 * The dynamic loader needs rebind.so as a real file, and a single executable carries it only in its embedded
 * file system, so it is always copied to a private temporary directory first (the same path under `deno run`).
 *
 * @module
 */

import type { Logger } from "./log.ts";
import type { WrapMode } from "./settings.ts";

/** Where rebind.so and its source live, relative to this module (also inside a compiled executable). */
export const REBIND_SO = new URL("../rebind/rebind.so", import.meta.url);
const REBIND_C = new URL("../rebind/rebind.c", import.meta.url);

/** Respawn throttle: at most this many starts within the window. */
const RESPAWN_STARTS = 3;
const RESPAWN_WINDOW_MS = 10_000;

/** Raised when wrap mode cannot start; the message says what to do. */
export class WrapError extends Error {
  override name = "WrapError";
}

/**
 * A private copy of rebind.so: the shipped or embedded file, or, under `deno run` without one, built on the spot
 * from rebind.c when a C compiler exists. `dispose` removes it.
 */
export async function preparePreloadLibrary(): Promise<{ path: string; dispose(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "websockify-rebind-" });
  await Deno.chmod(dir, 0o700);
  const path = `${dir}/rebind.so`;
  const dispose = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    let library: Uint8Array | undefined;
    try {
      library = await Deno.readFile(REBIND_SO);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (library) {
      await Deno.writeFile(path, library, { mode: 0o600 });
    } else {
      await compileRebind(path);
    }
    return { path, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

async function compileRebind(output: string): Promise<void> {
  const source = REBIND_C.protocol === "file:" ? decodeURIComponent(REBIND_C.pathname) : undefined;
  let sourceExists = false;
  try {
    sourceExists = source !== undefined && (await Deno.stat(source)).isFile;
  } catch { /* no source */ }
  const howTo = "build it with `make -C rebind` (needs a C compiler) or use a release executable";
  if (!sourceExists) throw new WrapError(`rebind.so not found; ${howTo}`);
  for (const compiler of ["cc", "gcc", "clang"]) {
    let result: Deno.CommandOutput;
    try {
      result = await new Deno.Command(compiler, {
        args: ["-O2", "-fPIC", "-shared", "-o", output, source!, "-ldl"],
        stdout: "null",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue; // no such compiler
      throw error;
    }
    if (!result.success) {
      throw new WrapError(
        `building rebind.so with ${compiler} failed: ${
          new TextDecoder().decode(result.stderr).trim()
        }`,
      );
    }
    return;
  }
  throw new WrapError(`rebind.so not found and no C compiler to build it; ${howTo}`);
}

/**
 * A free loopback port for the program: free on 127.0.0.1 and, where IPv6 exists, on ::1 (the library moves
 * IPv6 binds there). Racy by nature, as in Python websockify: the port is free now, not promised later.
 */
export function chooseFreePort(): number {
  for (let attempt = 0; attempt < 20; attempt++) {
    const v4 = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (v4.addr as Deno.NetAddr).port;
    try {
      Deno.listen({ hostname: "::1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) return port; // no IPv6 here: IPv4 is what counts
    } finally {
      v4.close();
    }
  }
  throw new WrapError("could not find a free loopback port for the wrapped program");
}

/** `'cmd arg1 arg2'` as websockify logs a command. */
export function describeCommand(command: readonly string[]): string {
  return `'${command.join(" ")}'`;
}

export interface WrapOptions {
  command: readonly string[];
  mode: WrapMode;
  /** The proxy's listen port: the port the program binds. */
  oldPort: number;
  /** The loopback port its bind is moved to. */
  newPort: number;
  /** The private rebind.so. */
  library: string;
  log: Logger;
  /** Milliseconds between SIGTERM and SIGKILL when stopping the program. */
  killGrace?: number;
}

/** Launches the program and supervises it according to the wrap mode. */
export class WrappedProgram {
  readonly #options: WrapOptions;
  readonly #starts: number[] = [];
  #child: Deno.ChildProcess | undefined;
  #stopping = false;
  readonly #finished = Promise.withResolvers<number>();
  #supervising: Promise<void> | undefined;

  constructor(options: WrapOptions) {
    this.#options = options;
  }

  /**
   * Resolves, in `exit` mode, with the exit code the proxy should exit with once the program has exited (a
   * signal N gives 128 + N). Never resolves in the other modes.
   */
  get exited(): Promise<number> {
    return this.#finished.promise;
  }

  /** Starts the program (throws if it cannot be started at all) and keeps supervising it. */
  start(): void {
    this.#spawn();
    this.#supervising = this.#supervise();
  }

  #spawn(): void {
    const { command, library, oldPort, newPort, log } = this.#options;
    const existing = Deno.env.get("LD_PRELOAD");
    log.info(`Starting ${describeCommand(command)}`);
    this.#starts.push(performance.now());
    this.#child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: {
        LD_PRELOAD: existing ? `${existing}:${library}` : library,
        REBIND_OLD_PORT: String(oldPort),
        REBIND_NEW_PORT: String(newPort),
      },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  }

  async #supervise(): Promise<void> {
    const { mode, log } = this.#options;
    while (true) {
      const status = await this.#child!.status;
      const code = status.signal ? 128 + signalNumber(status.signal) : status.code;
      if (this.#stopping) return;
      log.debug(`Wrapped command exited (or daemon). Returned ${code}`);
      if (mode === "exit") {
        log.info(`${describeCommand(this.#options.command)} exited with ${code}; stopping`);
        this.#finished.resolve(code);
        return;
      }
      if (mode === "ignore") return; // daemonizing programs: keep proxying to whatever listens
      // respawn, at most RESPAWN_STARTS starts within RESPAWN_WINDOW_MS.
      const recent = this.#starts.slice(-RESPAWN_STARTS);
      const wait = recent.length === RESPAWN_STARTS
        ? recent[0] + RESPAWN_WINDOW_MS - performance.now()
        : 0;
      if (wait > 0) {
        log.warning(`Command respawning too fast; next start in ${(wait / 1000).toFixed(1)} s`);
        await this.#sleepUnlessStopped(wait);
        if (this.#stopping) return;
      }
      try {
        this.#spawn();
      } catch (error) {
        log.error(`respawning ${describeCommand(this.#options.command)} failed: ${error}`);
        this.#finished.resolve(1);
        return;
      }
    }
  }

  #wake: (() => void) | undefined;

  #sleepUnlessStopped(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Stops the program: SIGTERM, then SIGKILL after the grace period. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const child = this.#child;
    if (child) {
      const exited = child.status.then(() => true);
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      const grace = this.#options.killGrace ?? 3000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<boolean>((resolve) =>
        timer = setTimeout(() => resolve(false), grace)
      );
      const inTime = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (!inTime) {
        this.#options.log.warning(
          `${describeCommand(this.#options.command)} ignored SIGTERM; killing it`,
        );
        try {
          child.kill("SIGKILL");
        } catch { /* exited meanwhile */ }
        await child.status;
      }
    }
    await this.#supervising;
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGABRT: 6,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function signalNumber(signal: Deno.Signal): number {
  return SIGNALS[signal] ?? 0;
}
