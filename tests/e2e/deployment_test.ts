// A deployment as README's "Deployment" section describes it, with the real parts: HAProxy (mode tcp,
// send-proxy-v2, HTTP health checks on /readyz, redispatch) in front of two proxy processes that share one real
// redis-server as their token store (TokenRedis, with a password), real TCP targets named by the tokens. Sessions
// reach the right targets, both instances log the client's address (HAProxy connects from 127.0.0.3), both get
// sessions, their metrics add up; SIGTERM on one drains it (--drain-grace, then --drain-timeout): its sessions
// relay until the timeout and then get 1001, HAProxy marks it down, and of the sessions eight clients keep
// opening meanwhile none fails. Then: HAProxy before one proxy with --workers 2, and nginx's stream upstream
// (proxy_protocol on) before two proxies.

import assert from "node:assert/strict";
import net from "node:net";
import { writeAll } from "../../lib/io.ts";
import { HAPROXY_AVAILABLE, LoadBalancer, NGINX_STREAM_AVAILABLE } from "../helpers/balancers.ts";
import { parseExposition } from "../helpers/prometheus.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { REDIS_AVAILABLE, RedisServer } from "../helpers/redis.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A TCP target that first says its name (and a newline), then echoes. */
function namedTarget(name: string): TcpTarget {
  return new TcpTarget(async (conn) => {
    await writeAll(conn, encoder.encode(`${name}\n`));
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return;
      await writeAll(conn, buffer.subarray(0, n));
    }
  });
}

/** An open session (Deno's WebSocket client): the target's name, an echo, the close code once closed. */
interface Session {
  target: string;
  echo(text: string): Promise<string>;
  close(): Promise<number>;
  closed: Promise<number>;
  code: number | undefined;
  closedAt: number | undefined;
}

async function openSession(url: string): Promise<Session> {
  const ws = new WebSocket(url, ["binary"]);
  ws.binaryType = "arraybuffer";
  let received = "";
  const session: Session = {
    target: "",
    code: undefined,
    closedAt: undefined,
    closed: new Promise<number>((resolve) =>
      ws.onclose = (event) => {
        session.code = event.code;
        session.closedAt = performance.now();
        resolve(event.code);
      }
    ),
    async echo(text) {
      const before = received.length;
      ws.send(encoder.encode(text));
      await waitFor(() => received.length >= before + text.length, 5000, `the echo of ${text}`);
      const answer = received.slice(before);
      return answer;
    },
    async close() {
      ws.close(1000);
      return await deadline(session.closed, 5000, "the close");
    },
  };
  ws.onmessage = (event) => received += decoder.decode(event.data as ArrayBuffer);
  await deadline(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`${url}: the session did not open`));
    }),
    8000,
    `open ${url}`,
  );
  await waitFor(() => received.includes("\n"), 5000, "the target's name");
  session.target = received.slice(0, received.indexOf("\n"));
  received = "";
  return session;
}

/**
 * A session from `localAddress` (node:net binds it) with a hand-written upgrade: the status line, then what the
 * target says first. Closes it.
 */
function rawSessionFrom(
  localAddress: string,
  port: number,
  path: string,
): Promise<{ status: string; firstFrame: string; localPort: number }> {
  return deadline(
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress });
      let received = new Uint8Array(0);
      socket.on("connect", () =>
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
            "Sec-WebSocket-Protocol: binary\r\n\r\n",
        ));
      socket.on("data", (chunk: Uint8Array) => {
        const joined = new Uint8Array(received.length + chunk.length);
        joined.set(received);
        joined.set(chunk, received.length);
        received = joined;
        const text = new TextDecoder("latin1").decode(received);
        const end = text.indexOf("\r\n\r\n");
        if (end < 0) return;
        // One unmasked binary frame, payload under 126 bytes: 0x82, length, payload.
        const frame = received.subarray(end + 4);
        if (frame.length < 2 || frame.length < 2 + frame[1]) return;
        const localPort = socket.localPort!;
        socket.destroy();
        resolve({
          status: text.slice(0, text.indexOf("\r\n")),
          firstFrame: decoder.decode(frame.subarray(2, 2 + frame[1])),
          localPort,
        });
      });
      socket.on("error", reject);
      socket.on("close", () => reject(new Error("closed before the target's first frame")));
    }),
    8000,
    `a session from ${localAddress}`,
  );
}

/** The metrics listener's address, from the banner. */
async function metricsBase(proxy: ProxyProcess): Promise<string> {
  await waitFor(() => /Metrics on (http:\S+)\/metrics/.test(proxy.stderr), 15000, "the banner");
  return proxy.stderr.match(/Metrics on (http:\S+)\/metrics/)![1];
}

async function scrape(base: string): Promise<Map<string, number>> {
  const response = await fetch(`${base}/metrics`);
  assert.equal(response.status, 200);
  return parseExposition(await response.text());
}

async function readyz(base: string): Promise<number> {
  const response = await fetch(`${base}/readyz`);
  await response.body?.cancel();
  return response.status;
}

/** The per-connection log lines of `proxy` whose client is `address`. */
function linesFrom(proxy: ProxyProcess, address: string): string[] {
  return proxy.stderr.split("\n").filter((line) => line.startsWith(`${address} - - [`));
}

const count = (text: string, pattern: RegExp) => (text.match(pattern) ?? []).length;

Deno.test({
  name:
    "deployment: HAProxy (send-proxy-v2, /readyz checks, redispatch) before two proxies sharing Redis tokens; a drain loses no session",
  ignore: !HAPROXY_AVAILABLE || !REDIS_AVAILABLE,
  async fn() {
    const alpha = namedTarget("alpha");
    const beta = namedTarget("beta");
    const redis = await RedisServer.start();
    const dir = await Deno.makeTempDir();
    const proxies: ProxyProcess[] = [];
    let haproxy: LoadBalancer | undefined;
    const sessions: Session[] = [];
    let startedOnA = 0;
    try {
      // The tokens, written with redis-cli: a plain value and a JSON one, under a namespace.
      await redis.cli(["SET", "ws:alpha", `127.0.0.1:${alpha.port}`]);
      await redis.cli(["SET", "ws:beta", JSON.stringify({ host: `127.0.0.1:${beta.port}` })]);
      await Deno.writeTextFile(`${dir}/redis.pw`, redis.password);
      for (let i = 0; i < 2; i++) {
        proxies.push(
          new ProxyProcess([
            "127.0.0.1:0",
            "--proxy-protocol",
            "--metrics-listen=127.0.0.1:0",
            "--drain-timeout=4",
            "--drain-grace=1",
            "--token-plugin=TokenRedis",
            `--token-source=127.0.0.1:${redis.port}::@${dir}/redis.pw:ws`,
            "--verbose",
          ]),
        );
      }
      const [a, b] = proxies;
      const ports = await Promise.all(proxies.map((proxy) => proxy.port()));
      const bases = await Promise.all(proxies.map(metricsBase));
      const metricsPorts = bases.map((base) => Number(new URL(base).port));
      haproxy = await LoadBalancer.haproxy([
        "balance roundrobin",
        "option httpchk GET /readyz",
        "option redispatch",
        "retries 3",
        ...[0, 1].map((i) =>
          `server proxy${i} 127.0.0.1:${ports[i]} send-proxy-v2 source 127.0.0.3 ` +
          `check port ${metricsPorts[i]} inter 200ms fall 1 rise 1`
        ),
      ]);
      const url = (token: string) => `ws://127.0.0.1:${haproxy!.port}/?token=${token}`;

      // 1. Sessions reach the target their token names, through either instance.
      let opened = 0;
      for (let i = 0; i < 6; i++) {
        const token = i % 2 ? "beta" : "alpha";
        const session = await openSession(url(token));
        opened++;
        assert.equal(session.target, token);
        assert.equal(await session.echo(`hello ${i}`), `hello ${i}`);
        assert.equal(await session.close(), 1000);
      }
      // A client from 127.0.0.2: the instance that served it logs that address and its port.
      const raw = await rawSessionFrom("127.0.0.2", haproxy.port, "/?token=beta");
      opened++;
      assert.equal(raw.status, "HTTP/1.1 101 Switching Protocols");
      assert.equal(raw.firstFrame, "beta\n");
      await waitFor(
        () => count(a.stderr + b.stderr, /session ended/g) >= opened,
        5000,
        "the session summaries",
      );
      const both = a.stderr + b.stderr;
      assert.match(
        both,
        new RegExp(`127\\.0\\.0\\.2 - - \\[.*PROXY v2 from 127\\.0\\.0\\.2:${raw.localPort} to`),
      );
      for (const proxy of proxies) {
        // Every connection line names the client (127.0.0.1 or .2), never HAProxy (127.0.0.3).
        assert.deepEqual(linesFrom(proxy, "127.0.0.3"), [], proxy.stderr);
        assert.ok(linesFrom(proxy, "127.0.0.1").length > 0, proxy.stderr);
        assert.match(
          proxy.stderr,
          /PROXY v2 from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+, via 127\.0\.0\.3:/,
        );
      }
      const samples = await Promise.all(bases.map(scrape));
      const started = samples.map((sample) => sample.get("websockify_sessions_total")!);
      assert.equal(started[0] + started[1], opened);
      assert.ok(started[0] > 0 && started[1] > 0, `sessions per instance: ${started}`);
      assert.equal(
        samples[0].get('websockify_token_lookups_total{result="found"}')! +
          samples[1].get('websockify_token_lookups_total{result="found"}')!,
        opened,
      );
      for (const sample of samples) {
        assert.equal(sample.get("websockify_sessions_active"), 0);
        assert.equal(sample.get('websockify_refusals_total{reason="proxy_protocol"}') ?? 0, 0);
      }

      // 2. Long sessions on both instances; clients opening short sessions all the time; then SIGTERM on A.
      for (let i = 0; i < 6; i++) sessions.push(await openSession(url("alpha")));
      const onA = (await scrape(bases[0])).get("websockify_sessions_active")!;
      assert.ok(onA > 0 && onA < sessions.length, `long sessions on A: ${onA} of 6`);
      assert.equal(await readyz(bases[0]), 200);
      const churn = { opened: 0, failures: [] as string[], stop: false };
      // Eight clients at once. Without --drain-grace, 1 run in 8 lost a session here (3 in 10 with twelve
      // clients): HAProxy had sent it to A just as A closed its port ("SD" in HAProxy's log, no retry possible).
      const openers = [0, 1, 2, 3, 4, 5, 6, 7].map(async (worker) => {
        for (let i = 0; !churn.stop && i < 1000; i++) {
          try {
            const session = await openSession(url("beta"));
            assert.equal(session.target, "beta");
            assert.equal(await session.echo(`${worker}.${i}`), `${worker}.${i}`);
            assert.equal(await session.close(), 1000);
            churn.opened++;
          } catch (error) {
            churn.failures.push(`${worker}.${i}: ${(error as Error).message}`);
          }
        }
      });
      await waitFor(() => churn.opened >= 6, 5000, "the first short sessions");
      const signalled = performance.now();
      a.child.kill("SIGTERM");
      const aExit = a.status(15000);
      try {
        await waitFor(() => /draining/.test(a.stderr), 5000, "A's drain line");
        assert.equal(await readyz(bases[0]), 503);
        assert.equal(await readyz(bases[1]), 200);
        await waitFor(
          () => /proxies\/proxy0 is DOWN/.test(haproxy!.output),
          3000,
          "HAProxy's check",
        );
        // Halfway through the drain every long session still relays, A's as well as B's.
        await sleep(2000 - (performance.now() - signalled));
        for (const [i, session] of sessions.entries()) {
          assert.equal(await session.echo(`still ${i}`), `still ${i}`);
        }
        const probed = performance.now() - signalled;
        assert.ok(probed < 3800, `the long sessions were probed ${probed} ms in`);
        // Sessions A served, counted while it drains: nothing new reaches it any more.
        startedOnA = (await scrape(bases[0])).get("websockify_sessions_total")!;
        assert.equal((await aExit).code, 0);
      } finally {
        churn.stop = true;
        await deadline(Promise.all(openers), 20_000, "the short sessions' end");
      }
      const elapsed = performance.now() - signalled;
      assert.ok(elapsed > 3500 && elapsed < 8000, `A exited ${elapsed} ms after SIGTERM`);
      // No session failed to open (or to relay) while A drained.
      assert.deepEqual(churn.failures, []);
      assert.ok(churn.opened >= 20, `${churn.opened} short sessions`);
      // A's sessions got 1001 at its drain timeout; B's still relay.
      await waitFor(
        () => sessions.filter((session) => session.code !== undefined).length >= onA,
        3000,
        "the 1001s",
      );
      const closedOnes = sessions.filter((session) => session.code !== undefined);
      assert.equal(closedOnes.length, onA);
      assert.deepEqual(closedOnes.map((session) => session.code), closedOnes.map(() => 1001));
      for (const session of closedOnes) {
        const after = session.closedAt! - signalled;
        assert.ok(after > 3500, `a session on A closed ${after} ms after SIGTERM`);
      }
      const open = sessions.filter((session) => session.code === undefined);
      for (const [i, session] of open.entries()) {
        assert.equal(await session.echo(`after ${i}`), `after ${i}`);
      }
      const onB = await scrape(bases[1]);
      // Every session went to exactly one instance.
      assert.equal(
        startedOnA + onB.get("websockify_sessions_total")!,
        opened + sessions.length + churn.opened,
      );
      assert.equal(onB.get("websockify_sessions_active"), open.length);
      for (const session of open) assert.equal(await session.close(), 1000);
      assert.doesNotMatch(b.stderr, /draining/);
    } finally {
      for (const session of sessions) {
        if (session.code === undefined) await session.close().catch(() => {});
      }
      await haproxy?.stop();
      for (const proxy of proxies) await proxy.stop();
      await redis.remove();
      await alpha.close();
      await beta.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "deployment: HAProxy before one proxy with --workers 2: both workers serve, the logs name the clients",
  ignore: !HAPROXY_AVAILABLE,
  async fn() {
    const target = namedTarget("gamma");
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      `127.0.0.1:${target.port}`,
      "--workers=2",
      "--proxy-protocol",
      "--metrics-listen=127.0.0.1:0",
      "--verbose",
    ]);
    let haproxy: LoadBalancer | undefined;
    try {
      await waitFor(() => /2 workers listening on/.test(proxy.stderr), 20000, "the workers");
      const port = Number(proxy.stderr.match(/2 workers listening on 127\.0\.0\.1:(\d+)/)![1]);
      const base = await metricsBase(proxy);
      haproxy = await LoadBalancer.haproxy([
        "option httpchk GET /readyz",
        `server workers 127.0.0.1:${port} send-proxy-v2 source 127.0.0.3 ` +
        `check port ${new URL(base).port} inter 200ms fall 1 rise 1`,
      ]);
      for (let i = 0; i < 20; i++) {
        const session = await openSession(`ws://127.0.0.1:${haproxy.port}/`);
        assert.equal(session.target, "gamma");
        assert.equal(await session.echo(`hello ${i}`), `hello ${i}`);
        assert.equal(await session.close(), 1000);
      }
      const raw = await rawSessionFrom("127.0.0.2", haproxy.port, "/");
      assert.equal(raw.firstFrame, "gamma\n");
      await waitFor(() => count(proxy.stderr, /session ended/g) >= 21, 5000, "the summaries");
      assert.match(
        proxy.stderr,
        new RegExp(`127\\.0\\.0\\.2 - - \\[.*PROXY v2 from 127\\.0\\.0\\.2:${raw.localPort} to`),
      );
      assert.deepEqual(linesFrom(proxy, "127.0.0.3"), []);
      const samples = await scrape(base);
      const perWorker = ["1", "2"].map((worker) =>
        samples.get(`websockify_worker_sessions_total{worker="${worker}"}`)!
      );
      assert.equal(perWorker[0] + perWorker[1], 21);
      assert.ok(perWorker[0] > 0 && perWorker[1] > 0, `sessions per worker: ${perWorker}`);
      assert.equal(samples.get("websockify_sessions_total"), 21);
      assert.equal(await readyz(base), 200);
      assert.doesNotMatch(haproxy.output, /is DOWN/);
      proxy.child.kill("SIGTERM");
      assert.equal((await proxy.status()).code, 0);
    } finally {
      await haproxy?.stop();
      await proxy.stop();
      await target.close();
    }
  },
});

Deno.test({
  name:
    "deployment: nginx stream upstream (proxy_protocol on) before two proxies: both serve, the logs name the clients; one gone, the other takes all",
  ignore: !NGINX_STREAM_AVAILABLE,
  async fn() {
    const target = namedTarget("delta");
    const proxies = [0, 1].map(() =>
      new ProxyProcess([
        "127.0.0.1:0",
        `127.0.0.1:${target.port}`,
        "--proxy-protocol",
        "--drain-timeout=3",
        "--drain-grace=1",
        "--verbose",
      ])
    );
    let nginx: LoadBalancer | undefined;
    try {
      const ports = await Promise.all(proxies.map((proxy) => proxy.port()));
      // As README's Deployment section has it (nginx picks the next server when one refuses).
      nginx = await LoadBalancer.nginx(
        "proxy_pass websockify; proxy_protocol on; proxy_next_upstream on; proxy_timeout 1h; proxy_bind 127.0.0.3;",
        `upstream websockify { ${
          ports.map((port) => `server 127.0.0.1:${port} max_fails=1 fail_timeout=10s;`).join(" ")
        } }`,
      );
      const url = `ws://127.0.0.1:${nginx.port}/`;
      for (let i = 0; i < 6; i++) {
        const session = await openSession(url);
        assert.equal(session.target, "delta");
        assert.equal(await session.echo(`hello ${i}`), `hello ${i}`);
        assert.equal(await session.close(), 1000);
      }
      const raw = await rawSessionFrom("127.0.0.2", nginx.port, "/");
      assert.equal(raw.firstFrame, "delta\n");
      await waitFor(
        () => count(proxies[0].stderr + proxies[1].stderr, /session ended/g) >= 7,
        5000,
        "the summaries",
      );
      assert.match(
        proxies[0].stderr + proxies[1].stderr,
        new RegExp(`127\\.0\\.0\\.2 - - \\[.*PROXY v1 from 127\\.0\\.0\\.2:${raw.localPort} to`),
      );
      for (const proxy of proxies) {
        assert.ok(count(proxy.stderr, /session ended/g) > 0, "each instance served sessions");
        assert.deepEqual(linesFrom(proxy, "127.0.0.3"), [], proxy.stderr);
      }
      // The first one stops (no session open: it exits after its grace); nginx sends everything to the other.
      proxies[0].child.kill("SIGTERM");
      assert.equal((await proxies[0].status()).code, 0);
      const before = count(proxies[1].stderr, /session ended/g);
      for (let i = 0; i < 4; i++) {
        const session = await openSession(url);
        assert.equal(await session.echo(`after ${i}`), `after ${i}`);
        assert.equal(await session.close(), 1000);
      }
      await waitFor(
        () => count(proxies[1].stderr, /session ended/g) >= before + 4,
        5000,
        "the other's summaries",
      );
      // (nginx did try the stopped one, and moved on.)
      assert.match(nginx.output, /Connection refused\) while connecting to upstream/);
    } finally {
      await nginx?.stop();
      for (const proxy of proxies) await proxy.stop();
      await target.close();
    }
  },
});
