/**
 * The metrics and health listener (`--metrics-listen`), apart from the proxy's port: `/metrics` (Prometheus
 * text), `/healthz` (200 while the process serves) and `/readyz` (503 while draining or at --max-sessions, for
 * load balancers' health checks). Deno's own HTTP server: this port speaks to monitoring, not to clients.
 *
 * @module
 */

import { exposition, type MetricsSnapshot } from "./metrics.ts";

/** What the listener reports on. */
export interface HealthSource {
  snapshot(): MetricsSnapshot | Promise<MetricsSnapshot>;
  /** undefined when ready; else why not (the body of the 503). */
  notReady(): string | undefined;
}

export interface MetricsListener {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

/** Starts the listener; throws (with the OS reason) when it cannot listen. */
export function serveMetrics(
  address: { hostname: string; port: number },
  source: HealthSource,
): MetricsListener {
  const server = Deno.serve({
    hostname: address.hostname,
    port: address.port,
    onListen: () => {},
  }, async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET, HEAD" } });
    }
    const text = (status: number, body: string, type = "text/plain; charset=utf-8") =>
      new Response(request.method === "HEAD" ? null : body, {
        status,
        headers: { "Content-Type": type, "Cache-Control": "no-store" },
      });
    switch (new URL(request.url).pathname) {
      case "/metrics":
        return text(
          200,
          exposition(await source.snapshot()),
          "text/plain; version=0.0.4; charset=utf-8",
        );
      case "/healthz":
        return text(200, "ok\n");
      case "/readyz": {
        const why = source.notReady();
        return why === undefined ? text(200, "ready\n") : text(503, `${why}\n`);
      }
      default:
        return text(404, "not found: /metrics, /healthz, /readyz\n");
    }
  });
  return {
    addr: server.addr as Deno.NetAddr,
    close: () => server.shutdown(),
  };
}
