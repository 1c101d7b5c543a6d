/**
 * A real redis-server (Debian's `redis-server`) on a free loopback port, with a password, no persistence, in a
 * temporary directory; optionally TLS only. Data goes in with the real `redis-cli`, never with the client under
 * test.
 */

import { deadline, waitFor } from "./waits.ts";

function hasRedis(): boolean {
  try {
    return new Deno.Command("redis-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success &&
      new Deno.Command("redis-cli", { args: ["--version"], stdout: "null", stderr: "null" })
        .outputSync().success;
  } catch {
    return false;
  }
}

/** Whether redis-server and redis-cli are here (Debian's redis-server and redis-tools; .ci/run installs them). */
export const REDIS_AVAILABLE = hasRedis();
if (!REDIS_AVAILABLE) {
  console.warn("SKIP the TokenRedis tests with a server: install redis-server (.ci/run does)");
}

/** Deno.test for a test that needs a real redis-server: skipped, with the reason printed, without one. */
export function redisTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !REDIS_AVAILABLE, fn });
}

/** A free loopback TCP port (bound and released; redis binds it right after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export interface RedisTls {
  cert: string;
  key: string;
  ca: string;
}

export class RedisServer {
  #child: Deno.ChildProcess | undefined;
  #output = "";
  #reading: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly port: number,
    readonly password: string,
    readonly dir: string,
    readonly tls: RedisTls | undefined,
    readonly args: string[],
  ) {}

  /** Starts redis-server (with more `args`, e.g. `--rename-command`) and waits until it accepts connections. */
  static async start(
    options: { password?: string; tls?: RedisTls; args?: string[] } = {},
  ): Promise<RedisServer> {
    const dir = await Deno.makeTempDir({ prefix: "websockify-redis-" });
    const server = new RedisServer(
      freePort(),
      options.password ?? "s3cret:pw",
      dir,
      options.tls,
      options.args ?? [],
    );
    await server.#spawn();
    return server;
  }

  get output(): string {
    return this.#output;
  }

  async #spawn(): Promise<void> {
    const ports = this.tls
      ? [
        "--port",
        "0",
        "--tls-port",
        String(this.port),
        "--tls-cert-file",
        this.tls.cert,
        "--tls-key-file",
        this.tls.key,
        "--tls-ca-cert-file",
        this.tls.ca,
        "--tls-auth-clients",
        "no",
      ]
      : ["--port", String(this.port)];
    this.#output = "";
    this.#child = new Deno.Command("redis-server", {
      args: [
        ...ports,
        "--bind",
        "127.0.0.1",
        "--requirepass",
        this.password,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        "--daemonize",
        "no",
        ...this.args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const decoder = new TextDecoder();
    this.#reading = Promise.all([this.#child.stdout, this.#child.stderr].map(async (stream) => {
      for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
    }));
    await waitFor(
      () => /Ready to accept connections/.test(this.#output),
      10000,
      "redis-server ready",
    ).catch((error) => {
      throw new Error(`${error.message}\n${this.#output}`);
    });
  }

  /** Runs redis-cli against this server (db `db`) and returns its output, trimmed. */
  async cli(args: string[], db = 0, password = this.password): Promise<string> {
    const tlsArgs = this.tls ? ["--tls", "--cacert", this.tls.ca] : [];
    const output = await new Deno.Command("redis-cli", {
      args: [
        "-h",
        "127.0.0.1",
        "-p",
        String(this.port),
        ...tlsArgs,
        "--no-auth-warning",
        "-a",
        password,
        "-n",
        String(db),
        ...args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout).trim();
    if (!output.success || text.startsWith("ERR") || text.startsWith("WRONGPASS")) {
      throw new Error(
        `redis-cli ${args.join(" ")}: ${text} ${new TextDecoder().decode(output.stderr)}`,
      );
    }
    return text;
  }

  /** Starts `redis-cli MONITOR`: every command the server runs, as it shows them (arguments quoted, escaped). */
  monitor(): { text(): string; stop(): Promise<void> } {
    const tlsArgs = this.tls ? ["--tls", "--cacert", this.tls.ca] : [];
    const child = new Deno.Command("redis-cli", {
      args: [
        "-h",
        "127.0.0.1",
        "-p",
        String(this.port),
        ...tlsArgs,
        "--no-auth-warning",
        "-a",
        this.password,
        "MONITOR",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let text = "";
    const decoder = new TextDecoder();
    const reading = (async () => {
      for await (const chunk of child.stdout) text += decoder.decode(chunk, { stream: true });
    })();
    return {
      text: () => text,
      async stop() {
        try {
          child.kill("SIGTERM");
        } catch {
          // already gone
        }
        await deadline(child.status, 5000, "redis-cli MONITOR exit");
        await deadline(reading, 5000, "redis-cli MONITOR output");
      },
    };
  }

  /** The connections named `name` (CLIENT SETNAME) that the server holds now. */
  async namedClients(name: string): Promise<number> {
    const list = await this.cli(["CLIENT", "LIST"]);
    return list.split("\n").filter((line) => line.includes(` name=${name} `)).length;
  }

  /** Stops the server (SIGTERM) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await deadline(child.status, 10000, "redis-server exit");
    await deadline(this.#reading, 5000, "redis-server output");
  }

  /** Starts it again on the same port (its data is gone: no persistence). */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  async remove(): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}
