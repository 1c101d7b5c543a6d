// --workers: processes sharing the port (SO_REUSEPORT) under a supervisor, with real clients and targets: both
// workers serve, --record numbers stay unique, the metrics are summed, a killed worker is restarted while the
// other keeps serving, SIGTERM stops them all.
import assert from "node:assert/strict";
import { parseExposition } from "../helpers/prometheus.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

/** One WebSocket session: sends `text`, returns the echo, closes (cleanly). */
async function echoOnce(port: number, text: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, ["binary"]);
  ws.binaryType = "arraybuffer";
  try {
    return await deadline(
      new Promise<string>((resolve, reject) => {
        ws.onopen = () => ws.send(new TextEncoder().encode(text));
        ws.onmessage = (event) => resolve(new TextDecoder().decode(event.data as ArrayBuffer));
        ws.onerror = () => reject(new Error("refused"));
      }),
      5000,
      "the echo",
    );
  } finally {
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await deadline(closed, 5000, "the close");
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

async function scrape(proxy: ProxyProcess): Promise<Map<string, number>> {
  const base = proxy.stderr.match(/Metrics on (http:\S+)\/metrics/)![1];
  return parseExposition(await (await fetch(`${base}/metrics`)).text());
}

Deno.test("--workers 2: both workers serve, records are numbered apart, metrics are summed; a killed worker is restarted", async () => {
  const target = echoTarget();
  const dir = await Deno.makeTempDir();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    "--workers=2",
    "--metrics-listen=127.0.0.1:0",
    `--record=${dir}/session`,
    `--pid-file=${dir}/pid`,
  ]);
  try {
    await waitFor(() => /2 workers listening on/.test(proxy.stderr), 20000, "the workers");
    const [, port, pids] = proxy.stderr.match(
      /2 workers listening on 127\.0\.0\.1:(\d+): pids (\S+, \S+)/,
    )!;
    const [first, second] = pids.split(", ").map(Number);
    assert.equal(Deno.readTextFileSync(`${dir}/pid`).trim(), String(proxy.child.pid));
    // Forty sessions: the kernel spreads them over both workers.
    for (let i = 0; i < 40; i++) {
      assert.equal(await echoOnce(Number(port), `hello ${i}`), `hello ${i}`);
    }
    await waitFor(() => (proxy.stderr.match(/session ended/g) ?? []).length >= 40, 5000, "ends");
    let samples = await scrape(proxy);
    const one = samples.get('websockify_worker_sessions_total{worker="1"}')!;
    const two = samples.get('websockify_worker_sessions_total{worker="2"}')!;
    assert.equal(one + two, 40);
    assert.ok(one > 0 && two > 0, `sessions per worker: ${one} and ${two}`);
    assert.equal(samples.get("websockify_sessions_total"), 40);
    assert.equal(samples.get("websockify_workers"), 2);
    const records = [...Deno.readDirSync(dir)].map((entry) => entry.name).filter((name) =>
      name.startsWith("session.")
    );
    assert.equal(new Set(records).size, 40, "one record file per session, none reused");

    // A worker dies: it is restarted, and the other one serves meanwhile.
    Deno.kill(first, "SIGKILL");
    await waitFor(() => /restarting worker 1/.test(proxy.stderr), 5000, "the restart");
    for (let i = 0; i < 10; i++) {
      assert.equal(await echoOnce(Number(port), `meanwhile ${i}`), `meanwhile ${i}`);
    }
    await waitFor(
      () => /worker 1 \(pid \d+\) listening/.test(proxy.stderr),
      15000,
      "worker 1 back",
    );
    assert.match(
      proxy.stderr,
      new RegExp(`worker 1 \\(pid ${first}\\) exited with signal SIGKILL`),
    );
    for (let i = 0; i < 10; i++) {
      assert.equal(await echoOnce(Number(port), `again ${i}`), `again ${i}`);
    }
    assert.ok(alive(second));
    samples = await scrape(proxy);
    assert.equal(samples.get('websockify_worker_restarts_total{worker="1"}'), 1);

    // SIGTERM: every worker stops, the supervisor exits 0 and removes its pid file.
    proxy.child.kill("SIGTERM");
    assert.equal((await proxy.status()).code, 0);
    await waitFor(() => !alive(second), 5000, "the workers' exit");
    assert.throws(() => Deno.statSync(`${dir}/pid`));
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--workers: refused with what cannot be shared; a port in use fails the start with 1", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--workers=2", "--run-once", "127.0.0.1:0", "h:1"],
      /--workers cannot be used with --run-once/,
    ],
    [
      ["--workers=2", "127.0.0.1:6080", "--", "sleep", "1"],
      /--workers cannot be used with a wrapped/,
    ],
    [
      ["--workers=2", "--unix-listen=/tmp/x.sock", "h:1"],
      /--workers cannot be used with --unix-listen/,
    ],
    [["--workers=many", "127.0.0.1:0", "h:1"], /--workers 'many': a number of processes/],
  ];
  for (const [args, why] of cases) {
    const proxy = new ProxyProcess(args);
    assert.equal((await proxy.status()).code, 2, args.join(" "));
    assert.match(proxy.stderr, why);
  }
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const proxy = new ProxyProcess([`127.0.0.1:${taken.addr.port}`, "h:1", "--workers=2"]);
    assert.equal((await proxy.status(30000)).code, 1);
    assert.match(proxy.stderr, /exited with code 1 before it was listening/);
  } finally {
    taken.close();
  }
});
