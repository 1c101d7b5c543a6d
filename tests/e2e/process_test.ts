// The proxy as a real child process: command line, exit codes, signals, memory under a stalled target, running
// out of file descriptors.
import assert from "node:assert/strict";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { serverCertArgs, type TestCerts, withTestCerts } from "../helpers/certs.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { MASK, RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

Deno.test("--help exits 0 and lists the options; usage errors exit 2 with the reason", async () => {
  const help = new ProxyProcess(["--help"]);
  const helpStatus = await help.status();
  assert.equal(helpStatus.code, 0);
  assert.match(help.stdout, /--unix-listen-mode=MODE/);
  assert.match(help.stdout, /--heartbeat=SECONDS/);

  const tooFew = new ProxyProcess(["6080"]);
  assert.equal((await tooFew.status()).code, 2);
  assert.match(tooFew.stderr, /Usage:/);
  assert.match(tooFew.stderr, /websockify: error: Too few arguments/);

  const badOption = new ProxyProcess(["6080", "h:1", "--nonsense"]);
  assert.equal((await badOption.status()).code, 2);
  assert.match(badOption.stderr, /websockify: error: no such option: --nonsense/);
});

Deno.test("a failed bind is a clear message and a non-zero exit", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    const proxy = new ProxyProcess([`127.0.0.1:${port}`, "127.0.0.1:1"]);
    const status = await proxy.status();
    assert.equal(status.code, 1);
    assert.match(proxy.stderr, /Opening socket failed: .*(in use|Address already)/i);
  } finally {
    taken.close();
  }
});

Deno.test("SIGTERM: open sessions get close 1001, the process exits 0 promptly", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`]);
  try {
    const port = await proxy.port();
    assert.match(proxy.stderr, /WebSocket server settings:/);
    assert.match(
      proxy.stderr,
      new RegExp(`proxying from 127\\.0\\.0\\.1:${port} to 127\\.0\\.0\\.1:${target.port}`),
    );
    const clients = await Promise.all([1, 2, 3].map(() => RawClient.open(port)));
    for (const client of clients) {
      await client.sendFrame(Opcode.Binary, "hi");
      await client.readData(2);
    }
    const started = performance.now();
    proxy.child.kill("SIGTERM");
    for (const client of clients) {
      assert.deepEqual(await client.nextClose(), {
        kind: "close",
        code: 1001,
        reason: "Server shutting down",
      });
    }
    // Two clients answer the close; one never does: the exit is still bounded.
    await clients[0].sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe9]));
    await clients[1].sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe9]));
    const status = await proxy.status(10000);
    assert.equal(status.code, 0);
    assert.ok(performance.now() - started < 6000);
    for (const client of clients) client.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

/** A client floods a target that never reads, for 3 s: the proxy must stop reading it, not buffer it all. */
async function floodStalledTarget(
  tls: { certs: TestCerts; ca: string } | undefined,
): Promise<void> {
  const stalled: Deno.Conn[] = [];
  const release = Promise.withResolvers<void>();
  const target = new TcpTarget(async (conn) => {
    stalled.push(conn); // accepted, never read
    await release.promise;
  });
  const certArgs = tls ? serverCertArgs(tls.certs) : [];
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, ...certArgs]);
  try {
    const port = await proxy.port();
    const client = tls ? await RawClient.openTls(port, tls.ca) : await RawClient.open(port);
    const frame = encodeFrame(Opcode.Binary, new Uint8Array(64 * 1024), { mask: MASK });
    await sleep(300);
    const before = proxy.rssKiB();
    let sent = 0;
    let stop = false;
    const flooding = (async () => {
      try {
        while (!stop) {
          await writeAll(client.conn, frame);
          sent += frame.length;
        }
      } catch { /* closed below */ }
    })();
    await sleep(3000);
    stop = true;
    const after = proxy.rssKiB();
    client.close(); // unblocks the pending write
    await deadline(flooding, 5000, "flood writer");
    const growthMiB = (after - before) / 1024;
    // With no backpressure the proxy would have buffered everything sent; the kernel buffers (client send,
    // proxy receive, proxy send, target receive) take a few MiB, then every write blocks.
    assert.ok(sent < 64 * 1024 * 1024, `client managed to send ${sent} bytes`);
    assert.ok(growthMiB < 20, `proxy RSS grew ${growthMiB.toFixed(1)} MiB (sent ${sent} bytes)`);
  } finally {
    await proxy.stop();
    release.resolve();
    await target.close();
  }
}

Deno.test("a target that never reads: the flooding client is throttled, the proxy's memory stays flat", async () => {
  await floodStalledTarget(undefined);
});

/** A target floods a client that never reads, for 3 s: the proxy must stop reading the target. */
async function floodStalledClient(
  tls: { certs: TestCerts; ca: string } | undefined,
): Promise<void> {
  let written = 0;
  let stop = false;
  const target = new TcpTarget(async (conn) => {
    const chunk = new Uint8Array(64 * 1024).fill(7);
    try {
      while (!stop) {
        await writeAll(conn, chunk);
        written += chunk.length;
      }
    } catch { /* closed at the end */ }
  });
  const certArgs = tls ? serverCertArgs(tls.certs) : [];
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, ...certArgs]);
  try {
    const port = await proxy.port();
    const before = proxy.rssKiB();
    const client = tls ? await RawClient.openTls(port, tls.ca) : await RawClient.open(port);
    await sleep(3000); // the client reads nothing
    const after = proxy.rssKiB();
    stop = true;
    client.close();
    const growthMiB = (after - before) / 1024;
    assert.ok(written < 64 * 1024 * 1024, `the target managed to write ${written} bytes`);
    assert.ok(
      growthMiB < 20,
      `proxy RSS grew ${growthMiB.toFixed(1)} MiB (target wrote ${written})`,
    );
  } finally {
    await proxy.stop();
    await target.close();
  }
}

Deno.test("a client that never reads: the flooding target is throttled, over ws and wss", async () => {
  await floodStalledClient(undefined);
  await withTestCerts((certs, ca) => floodStalledClient({ certs, ca }));
});

Deno.test("out of file descriptors: the server backs off, keeps serving, accepts again later", async () => {
  const target = echoTarget();
  // A low descriptor limit for the proxy alone; Deno itself needs a few dozen.
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`], {
    shell: "ulimit -n 80;",
  });
  const clients: RawClient[] = [];
  const idle: Deno.Conn[] = [];
  try {
    const port = await proxy.port();
    // Open sessions (two descriptors each) until one fails: the proxy is at its limit.
    for (let i = 0; i < 60; i++) {
      const client = await trySession(port);
      if (!client) break;
      clients.push(client);
    }
    assert.ok(
      clients.length >= 5 && clients.length < 60,
      `${clients.length} sessions before the limit`,
    );
    // Connections that send nothing take the last descriptors; accept() then fails with EMFILE.
    for (let i = 0; i < 3; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await waitFor(
      () => /accept failed: .*backing off/.test(proxy.stderr),
      5000,
      "back-off log line",
    );
    // Open sessions still work.
    for (const client of clients.slice(0, 3)) {
      await client.sendFrame(Opcode.Binary, "still here");
      assert.equal(new TextDecoder().decode(await client.readData(10)), "still here");
    }
    // Free descriptors: new sessions are accepted and served again.
    for (const client of clients.splice(0, 6)) client.close();
    for (const conn of idle.splice(0)) conn.close();
    let late: RawClient | undefined;
    for (let i = 0; i < 20 && !late; i++) late = await trySession(port);
    assert.ok(late, "no session after descriptors were freed");
    clients.push(late);
    await waitFor(
      () => /accepting connections again/.test(proxy.stderr),
      5000,
      "recovery log line",
    );
    assert.doesNotMatch(proxy.stderr, /internal error|Uncaught/);
  } finally {
    for (const client of clients) client.close();
    for (const conn of idle) conn.close();
    await proxy.stop();
    await target.close();
  }
});

/** Opens a session and checks it echoes; undefined if the proxy could not serve it within 2 s. */
async function trySession(port: number): Promise<RawClient | undefined> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const client = RawClient.wrap(conn);
  try {
    await client.send(new TextEncoder().encode(upgradeRequest()));
    const head = await client.readHead(2000);
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(head);
    await client.sendFrame(Opcode.Binary, "ok?");
    const event = await client.next(2000);
    if (event?.kind !== "data") throw new Error(JSON.stringify(event));
    return client;
  } catch {
    client.close();
    return undefined;
  }
}

Deno.test("--unix-listen: a stale socket file is replaced, the mode applied, sessions served", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ws.sock`;
  const stale = Deno.listen({ transport: "unix", path });
  stale.close(); // leaves the socket file behind, as a crashed server would
  const target = echoTarget();
  const proxy = new ProxyProcess([
    `--unix-listen=${path}`,
    "--unix-listen-mode=0640",
    `127.0.0.1:${target.port}`,
  ]);
  try {
    await waitFor(() => /Listen on unix socket/.test(proxy.stderr), 15000, "banner");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o640);
    const conn = await Deno.connect({ transport: "unix", path });
    const client = RawClient.wrap(conn);
    await client.send(new TextEncoder().encode(upgradeRequest()));
    assert.match(await client.readHead(), /^HTTP\/1\.1 101 /);
    await client.sendFrame(Opcode.Binary, "via unix");
    assert.equal(new TextDecoder().decode(await client.readData(8)), "via unix");
    client.close();
    assert.equal((await proxy.stop()).code, 0);
    await assert.rejects(
      Deno.stat(path),
      Deno.errors.NotFound,
      "the socket file is removed on exit",
    );
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});
