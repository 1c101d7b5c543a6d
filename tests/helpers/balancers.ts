/**
 * Real load balancers in front of the proxy: Debian's HAProxy (`haproxy`) and nginx with its stream module
 * (`nginx-light` + `libnginx-mod-stream`), each started in the foreground with a generated configuration on a
 * free loopback port, stopped by the test. .ci/run installs them.
 */

import { deadline, sleep } from "./waits.ts";

function runs(command: string, args: string[]): boolean {
  try {
    return new Deno.Command(command, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

/** Whether `haproxy` is here. */
export const HAPROXY_AVAILABLE = runs("haproxy", ["-v"]);
/** Whether `nginx` and its stream module are here. */
export const NGINX_STREAM_AVAILABLE = runs("nginx", ["-v"]) && (() => {
  try {
    return Deno.statSync(NGINX_STREAM_MODULE).isFile;
  } catch {
    return false;
  }
})();
/** Whether `nginx` is here (its HTTP proxy: any Debian nginx package). */
export const NGINX_AVAILABLE = runs("nginx", ["-v"]);
if (!HAPROXY_AVAILABLE) console.warn("SKIP the HAProxy tests: install haproxy (.ci/run does)");
if (!NGINX_STREAM_AVAILABLE) {
  console.warn("SKIP the nginx tests: install nginx-light and libnginx-mod-stream (.ci/run does)");
}

/** A free loopback TCP port (bound and released; the balancer binds it right after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Whether something listens on TCP `port` (from /proc/net/tcp: no connection is made to find out). */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let table = "";
    try {
      table = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of table.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1] && (fields[1] + " ").endsWith(hex) && fields[3] === "0A") return true;
    }
  }
  return false;
}

/** A load balancer process listening on `port`, its output collected. */
export class LoadBalancer {
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  output = "";

  private constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    command: string,
    args: string[],
  ) {
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const decoder = new TextDecoder();
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) this.output += decoder.decode(chunk, { stream: true });
    };
    this.#reading = Promise.all([pump(this.#child.stdout), pump(this.#child.stderr)]).then(
      () => {},
    );
  }

  /**
   * HAProxy in TCP mode (or `mode`): a frontend on a free loopback port (with `frontend` lines added), one
   * backend with `server` as given (e.g. `server proxy 127.0.0.1:6080 send-proxy-v2`), or with these lines
   * (`balance`, `option`, several `server`s).
   */
  static haproxy(
    server: string | string[],
    { mode = "tcp", frontend = [] }: { mode?: "tcp" | "http"; frontend?: string[] } = {},
  ): Promise<LoadBalancer> {
    const port = freePort();
    const config = [
      "global",
      "  maxconn 200",
      "defaults",
      `  mode ${mode}`,
      "  timeout connect 2s",
      "  timeout client 30s",
      "  timeout server 30s",
      ...(mode === "http" ? ["  timeout tunnel 1h"] : []),
      "frontend clients",
      `  bind 127.0.0.1:${port}`,
      ...frontend.map((line) => `  ${line}`),
      "  default_backend proxies",
      "backend proxies",
      ...[server].flat().map((line) => `  ${line}`),
      "",
    ].join("\n");
    return LoadBalancer.#start("haproxy", port, () => config, (file) => ["-db", "-f", file]);
  }

  /**
   * nginx's stream module: `server { listen <free port>; <directives> }` (e.g. `proxy_pass ...; proxy_protocol on;`),
   * after `stream` (more of the stream block, e.g. an `upstream`).
   */
  static nginx(directives: string, stream = ""): Promise<LoadBalancer> {
    const port = freePort();
    const config = (dir: string) =>
      [
        `load_module ${NGINX_STREAM_MODULE};`,
        "daemon off;",
        "master_process off;",
        `pid ${dir}/nginx.pid;`,
        "error_log stderr info;",
        "events { worker_connections 64; }",
        "stream {",
        ...(stream ? [`  ${stream}`] : []),
        `  server { listen 127.0.0.1:${port}; ${directives} }`,
        "}",
        "",
      ].join("\n");
    return LoadBalancer.#start("nginx", port, config, (file, dir) => [
      "-p",
      dir,
      "-c",
      file,
      "-e",
      "stderr",
    ]);
  }

  /**
   * nginx as an HTTP reverse proxy: `location / { <directives> }` in a server listening on a free port of
   * 127.0.0.1 and of [::1] (the same port), its temporary files in its own directory.
   */
  static nginxHttp(directives: string): Promise<LoadBalancer> {
    const port = freePort();
    const config = (dir: string) =>
      [
        "daemon off;",
        "master_process off;",
        `pid ${dir}/nginx.pid;`,
        "error_log stderr info;",
        "events { worker_connections 64; }",
        "http {",
        "  access_log off;",
        ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((kind) =>
          `  ${kind}_temp_path ${dir}/${kind};`
        ),
        `  server { listen 127.0.0.1:${port}; listen [::1]:${port}; location / { ${directives} } }`,
        "}",
        "",
      ].join("\n");
    return LoadBalancer.#start("nginx", port, config, (file, dir) => [
      "-p",
      dir,
      "-c",
      file,
      "-e",
      "stderr",
    ]);
  }

  static async #start(
    name: string,
    port: number,
    config: (dir: string) => string,
    args: (file: string, dir: string) => string[],
  ): Promise<LoadBalancer> {
    const dir = await Deno.makeTempDir({ prefix: `websockify-${name}-` });
    const file = `${dir}/${name}.conf`;
    await Deno.writeTextFile(file, config(dir));
    const balancer = new LoadBalancer(name, port, dir, name, args(file, dir));
    const end = performance.now() + 10_000;
    while (!listening(port)) {
      if (performance.now() > end) {
        await balancer.stop();
        throw new Error(`${name} did not listen on ${port}:\n${balancer.output}`);
      }
      await sleep(20);
    }
    return balancer;
  }

  /** Stops it (SIGTERM, then SIGKILL) and removes its directory. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* already exited */ }
    try {
      await deadline(this.#child.status, 5000, `${this.name} exit`);
    } catch {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already exited */ }
      await deadline(this.#child.status, 5000, `${this.name} exit`);
    }
    await deadline(this.#reading, 2000, `${this.name} output`).catch(() => {});
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
