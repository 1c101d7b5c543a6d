// Running behind load balancers: --metrics-listen (/metrics, /healthz, /readyz), the session and handshake
// limits, and the graceful drain on SIGTERM. The proxy as users start it, real clients and targets; a second
// client address (127.0.0.2) through node:net's localAddress.
import assert from "node:assert/strict";
import net from "node:net";
import WebSocketClient from "ws";
import { makeCerts, serverCertArgs } from "../helpers/certs.ts";
import { parseExposition } from "../helpers/prometheus.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

/** The metrics listener's address, from the banner. */
async function metricsUrl(proxy: ProxyProcess): Promise<string> {
  await waitFor(() => /Metrics on (http:\S+)\/metrics/.test(proxy.stderr), 15000, "the banner");
  return proxy.stderr.match(/Metrics on (http:\S+)\/metrics/)![1];
}

async function scrape(base: string): Promise<Map<string, number>> {
  const response = await fetch(`${base}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

async function status(url: string): Promise<[number, string]> {
  const response = await fetch(url);
  return [response.status, (await response.text()).trim()];
}

/** An open WebSocket session (Deno's client) that echoes; `closed` resolves with the close code. */
async function openSession(url: string) {
  const ws = new WebSocket(url, ["binary"]);
  ws.binaryType = "arraybuffer";
  const messages: string[] = [];
  const closed = new Promise<number>((resolve) => ws.onclose = (event) => resolve(event.code));
  ws.onmessage = (event) => messages.push(new TextDecoder().decode(event.data as ArrayBuffer));
  await deadline(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`${url}: refused`));
    }),
    5000,
    "open",
  );
  const echo = async (text: string) => {
    const before = messages.length;
    ws.send(new TextEncoder().encode(text));
    await waitFor(() => messages.length > before, 5000, "the echo");
    return messages.at(-1);
  };
  return { ws, echo, closed };
}

/** A raw upgrade from `localAddress` (node:net): the status line the proxy answers, or "" if it just closes. */
async function upgradeFrom(localAddress: string, port: number, path = "/"): Promise<string> {
  const { status, socket } = await holdFrom(localAddress, port, path);
  socket.destroy();
  return status;
}

/** As upgradeFrom, but the connection (a session, if accepted) stays open until `socket.destroy()`. */
function holdFrom(
  localAddress: string,
  port: number,
  path = "/",
): Promise<{ status: string; socket: net.Socket }> {
  return new Promise((resolveHeld, reject) => {
    const resolve = (status: string) => {
      clearTimeout(timer);
      resolveHeld({ status, socket });
    };
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("timeout");
    }, 5000);
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    let received = "";
    socket.on("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ));
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (received.includes("\r\n")) resolve(received.split("\r\n")[0]);
    });
    socket.on("end", () => resolve(received.split("\r\n")[0]));
    socket.on("close", () => resolve(received.split("\r\n")[0]));
    socket.on("error", (error) => {
      if (received) return resolve(received.split("\r\n")[0]);
      clearTimeout(timer);
      reject(error);
    });
  });
}

Deno.test("--metrics-listen: counts by kind and reason, token lookups, bytes, sessions; /healthz and /readyz", async () => {
  const certs = await makeCerts();
  const target = echoTarget();
  const dir = await Deno.makeTempDir();
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = dead.addr.port;
  dead.close();
  await Deno.writeTextFile(
    `${dir}/tokens`,
    `good: 127.0.0.1:${target.port}\ndead: 127.0.0.1:${deadPort}\n`,
  );
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    "--metrics-listen=127.0.0.1:0",
    ...serverCertArgs(certs),
  ]);
  try {
    const port = await proxy.port();
    const base = await metricsUrl(proxy);
    assert.deepEqual(await status(`${base}/healthz`), [200, "ok"]);
    assert.deepEqual(await status(`${base}/readyz`), [200, "ready"]);
    assert.equal(await fetch(`${base}/nothing`).then((r) => (r.body?.cancel(), r.status)), 404);

    const plain = await openSession(`ws://127.0.0.1:${port}/?token=good`);
    assert.equal(await plain.echo("hello"), "hello");
    // wss with npm ws (it takes the test CA; Deno's client would need DENO_CERT at its start).
    const secure = new WebSocketClient(`wss://localhost:${port}/?token=good`, ["binary"], {
      ca: await Deno.readTextFile(certs.ca),
    });
    const secureEcho = new Promise<string>((resolve) =>
      secure.on("message", (data: Buffer) => resolve(data.toString()))
    );
    secure.on("open", () => secure.send(new TextEncoder().encode("hello over tls")));
    assert.equal(await deadline(secureEcho, 5000, "the wss echo"), "hello over tls");
    const secureClosed = new Promise((resolve) => secure.on("close", resolve));
    const during = await scrape(base);
    assert.equal(during.get("websockify_sessions_active"), 2);
    plain.ws.close();
    secure.close();
    await Promise.all([plain.closed, secureClosed]);
    assert.equal(await upgradeFrom("127.0.0.1", port, "/?token=nope"), "");
    assert.equal(
      await upgradeFrom("127.0.0.1", port, "/?token=dead"),
      "HTTP/1.1 101 Switching Protocols",
    );
    const get = await fetch(`http://127.0.0.1:${port}/`);
    await get.body?.cancel();
    assert.equal(get.status, 405);

    await waitFor(() => (proxy.stderr.match(/session ended/g) ?? []).length >= 2, 5000, "ends");
    await waitFor(() => /Failed to connect/.test(proxy.stderr), 5000, "the failed connect");
    const after = await scrape(base);
    const expect = (name: string, value: number) => assert.equal(after.get(name), value, name);
    expect('websockify_connections_total{kind="ws"}', 3);
    expect('websockify_connections_total{kind="wss"}', 1);
    expect('websockify_connections_total{kind="http"}', 1);
    expect('websockify_token_lookups_total{result="found"}', 3);
    expect('websockify_token_lookups_total{result="unknown"}', 1);
    expect('websockify_refusals_total{reason="token_unknown"}', 1);
    expect('websockify_refusals_total{reason="http_405"}', 1);
    expect("websockify_target_connect_failures_total", 1);
    expect("websockify_sessions_total", 2);
    expect("websockify_sessions_active", 0);
    expect("websockify_session_duration_seconds_count", 2);
    expect("websockify_token_lookup_seconds_count", 4);
    expect('websockify_bytes_total{direction="from_client"}', 5 + 14);
    expect('websockify_bytes_total{direction="to_client"}', 5 + 14);
    expect("websockify_draining", 0);
    assert.ok(after.get("process_open_fds")! > 5);
  } finally {
    await proxy.stop();
    await target.close();
    await certs.remove();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--max-sessions and --max-sessions-per-ip: 503 with a log line, /readyz 503 at the limit; room again once one ends", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--max-sessions=3",
    "--max-sessions-per-ip=2",
    "--metrics-listen=127.0.0.1:0",
  ]);
  try {
    const port = await proxy.port();
    const base = await metricsUrl(proxy);
    const first = await openSession(`ws://127.0.0.1:${port}/`);
    const second = await openSession(`ws://127.0.0.1:${port}/`);
    // A third from the same address: over the per-address limit.
    assert.match(await upgradeFrom("127.0.0.1", port), /^HTTP\/1\.1 503 /);
    assert.match(proxy.stderr, /Too many sessions from 127\.0\.0\.1 \(--max-sessions-per-ip 2\)/);
    // Another address still gets in, up to the total.
    assert.equal(await upgradeFrom("127.0.0.2", port), "HTTP/1.1 101 Switching Protocols");
    // (That raw session was dropped at once; wait until it no longer counts.)
    await waitFor(() => (proxy.stderr.match(/session ended/g) ?? []).length >= 1, 5000, "its end");
    const third = await holdFrom("127.0.0.2", port);
    assert.equal(third.status, "HTTP/1.1 101 Switching Protocols");
    assert.deepEqual(await status(`${base}/readyz`), [503, "session limit reached"]);
    assert.match(await upgradeFrom("127.0.0.2", port), /^HTTP\/1\.1 503 /);
    assert.match(proxy.stderr, /Session limit reached \(--max-sessions 3\)/);
    first.ws.close();
    await first.closed;
    await waitFor(() => (proxy.stderr.match(/session ended/g) ?? []).length >= 2, 5000, "its end");
    assert.deepEqual(await status(`${base}/readyz`), [200, "ready"]);
    assert.equal(await (await openSession(`ws://127.0.0.1:${port}/`)).echo("again"), "again");
    const samples = await scrape(base);
    assert.equal(samples.get('websockify_refusals_total{reason="max_sessions_per_ip"}'), 1);
    assert.equal(samples.get('websockify_refusals_total{reason="max_sessions"}'), 1);
    second.ws.close();
    third.socket.destroy();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--max-handshakes-per-ip: an address holding N unfinished handshakes gets no more; others are served", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--max-handshakes-per-ip=5",
  ]);
  const stalled: Deno.Conn[] = [];
  try {
    const port = await proxy.port();
    for (let i = 0; i < 5; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\n")); // never finished
      stalled.push(conn);
    }
    await new Promise((resolve) => setTimeout(resolve, 200)); // accepted and counted
    // The sixth from 127.0.0.1 is closed without an answer; 127.0.0.2 is served at once.
    assert.equal(await upgradeFrom("127.0.0.1", port), "");
    const started = performance.now();
    assert.equal(await upgradeFrom("127.0.0.2", port), "HTTP/1.1 101 Switching Protocols");
    assert.ok(performance.now() - started < 2000);
    // Once the stalled ones are gone, 127.0.0.1 is served again.
    for (const conn of stalled.splice(0)) conn.close();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await upgradeFrom("127.0.0.1", port), "HTTP/1.1 101 Switching Protocols");
  } finally {
    for (const conn of stalled) conn.close();
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--drain-timeout: SIGTERM stops accepting and fails /readyz; open sessions go on, then get 1001; exit 0", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--drain-timeout=3",
    "--metrics-listen=127.0.0.1:0",
  ]);
  try {
    const port = await proxy.port();
    const base = await metricsUrl(proxy);
    const session = await openSession(`ws://127.0.0.1:${port}/`);
    assert.equal(await session.echo("before"), "before");
    const signalled = performance.now();
    proxy.child.kill("SIGTERM");
    await waitFor(() => /draining/.test(proxy.stderr), 5000, "the drain line");
    assert.deepEqual(await status(`${base}/readyz`), [503, "draining"]);
    // New connections are refused; the open session still relays both ways.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(await session.echo("during the drain"), "during the drain");
    // At the drain timeout: 1001, then the process exits 0.
    assert.equal(await deadline(session.closed, 6000, "the 1001"), 1001);
    const elapsed = performance.now() - signalled;
    assert.ok(elapsed > 2500 && elapsed < 6000, `closed after ${elapsed} ms`);
    assert.equal((await proxy.status()).code, 0);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--drain-timeout: a drain with no session open ends at once; a second SIGTERM does not wait", async () => {
  const target = echoTarget();
  const idle = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--drain-timeout=30"]);
  const busy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--drain-timeout=30"]);
  try {
    await idle.port();
    let started = performance.now();
    idle.child.kill("SIGTERM");
    assert.equal((await idle.status()).code, 0);
    assert.ok(performance.now() - started < 3000);
    const session = await openSession(`ws://127.0.0.1:${await busy.port()}/`);
    busy.child.kill("SIGTERM");
    await waitFor(() => /draining/.test(busy.stderr), 5000, "the drain line");
    started = performance.now();
    busy.child.kill("SIGTERM");
    assert.equal(await deadline(session.closed, 5000, "the 1001"), 1001);
    assert.equal((await busy.status()).code, 0);
    assert.ok(performance.now() - started < 5000);
  } finally {
    await idle.stop();
    await busy.stop();
    await target.close();
  }
});

Deno.test("--drain-grace: /readyz fails at once but new sessions are served for N s, then refused; the drain timeout counts from the signal", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--drain-timeout=4",
    "--drain-grace=2",
    "--metrics-listen=127.0.0.1:0",
  ]);
  try {
    const port = await proxy.port();
    const base = await metricsUrl(proxy);
    const early = await openSession(`ws://127.0.0.1:${port}/`);
    const signalled = performance.now();
    proxy.child.kill("SIGTERM");
    await waitFor(() => /still accepting for 2 s/.test(proxy.stderr), 5000, "the grace line");
    // A load balancer sees 503 at once, while a connection it sent just before is still served.
    assert.deepEqual(await status(`${base}/readyz`), [503, "draining"]);
    const late = await openSession(`ws://127.0.0.1:${port}/`);
    assert.equal(await late.echo("in the grace"), "in the grace");
    assert.ok(performance.now() - signalled < 1800, "the late session opened within the grace");
    // After the grace: refused, and the open sessions go on until 4 s after the signal.
    await waitFor(
      () => /draining: no new connections; 2 open ones have 2 s to finish/.test(proxy.stderr),
      4000,
      "the grace's end",
    );
    assert.ok(performance.now() - signalled > 1900, "the grace lasted 2 s");
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
    assert.equal(await early.echo("after the grace"), "after the grace");
    assert.equal(await late.echo("after the grace"), "after the grace");
    assert.deepEqual(
      await Promise.all([early, late].map((session) => deadline(session.closed, 5000, "1001"))),
      [1001, 1001],
    );
    const elapsed = performance.now() - signalled;
    assert.ok(elapsed > 3500 && elapsed < 5500, `closed after ${elapsed} ms`);
    assert.equal((await proxy.status()).code, 0);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--drain-grace: a second SIGTERM during the grace stops at once; a grace not shorter than the drain is refused", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--drain-timeout=30",
    "--drain-grace=20",
  ]);
  const refused = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--drain-timeout=5",
    "--drain-grace=5",
  ]);
  try {
    const port = await proxy.port();
    proxy.child.kill("SIGTERM");
    await waitFor(() => /still accepting for 20 s/.test(proxy.stderr), 5000, "the grace line");
    // An idle proxy in its grace still accepts (it does not exit at once as without a grace).
    const session = await openSession(`ws://127.0.0.1:${port}/`);
    assert.equal(await session.echo("in the grace"), "in the grace");
    const started = performance.now();
    proxy.child.kill("SIGTERM");
    assert.equal(await deadline(session.closed, 5000, "the 1001"), 1001);
    assert.equal((await proxy.status()).code, 0);
    assert.ok(performance.now() - started < 5000);

    assert.equal((await refused.status()).code, 2);
    assert.match(
      refused.stderr,
      /error: --drain-grace 5 needs a longer --drain-timeout \(now 5\)/,
    );
  } finally {
    await proxy.stop();
    await refused.stop();
    await target.close();
  }
});
