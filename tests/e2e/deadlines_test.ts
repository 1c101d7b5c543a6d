// Every wait ends on time, whatever the peer does: aborted TLS handshakes, trickled heads, resets before
// accept, a client gone while its target stalls, a broken protocol, and a shutdown in every state of a
// connection.
import assert from "node:assert/strict";
import { Opcode } from "../../lib/websocket/frames.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { serverCertArgs, withTestCerts } from "../helpers/certs.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { RawClient, TLS_START, upgradeRequest } from "../helpers/raw_client.ts";
import { liveMemoryKiB, openFiles } from "../helpers/system.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

const encoder = new TextEncoder();

/** Waits until the server closes `conn`; returns the milliseconds it took. */
async function msUntilClosed(conn: Deno.Conn, ms: number, what: string): Promise<number> {
  const started = performance.now();
  await deadline(readToEnd(conn).catch(() => new Uint8Array(0)), ms, what);
  return performance.now() - started;
}

Deno.test({
  name:
    "aborted TLS handshakes end at once (0x16 then close) or at the deadline (0x16 then silence): nothing kept",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTestCerts(async (certs) => {
      const target = echoTarget();
      // 1,020 handshakes from one address in bursts: no per-address bound here (tested in scaleout_test.ts).
      const proxy = await startProxy(
        [`127.0.0.1:${target.port}`, ...serverCertArgs(certs), "--max-handshakes-per-ip=0"],
        { head: 1500 },
      );
      try {
        // Warm up the TLS code, then measure.
        const warm = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
        await writeAll(warm, TLS_START);
        warm.close();
        await sleep(300);
        const before = liveMemoryKiB();
        const files = openFiles(Deno.pid);
        for (let round = 0; round < 10; round++) {
          await Promise.all(Array.from({ length: 100 }, async () => {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
            await writeAll(conn, TLS_START);
            conn.close();
          }));
        }
        // Silent after 0x16: cut by the head deadline (1.5 s here), not left pending.
        const silent = await Promise.all(Array.from({ length: 20 }, async () => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
          await writeAll(conn, TLS_START);
          return conn;
        }));
        const waited = await Promise.all(
          silent.map((conn) => msUntilClosed(conn, 5000, "a silent TLS handshake to be cut")),
        );
        for (const conn of silent) conn.close();
        assert.ok(Math.max(...waited) < 2500, `cut after ${Math.max(...waited)} ms, limit 1500`);
        await waitFor(
          () => proxy.log.lines.filter((line) => /TLS handshake failed/.test(line)).length >= 1021,
          5000,
          "every handshake to be logged as failed",
        );
        assert.ok(proxy.log.has(/TLS handshake failed: timed out/));
        await waitFor(() => openFiles(Deno.pid) <= files, 5000, "open files back");
        const after = liveMemoryKiB();
        console.log(`1,020 aborted handshakes: live memory ${before} -> ${after} KiB`);
        // Kept handlers cost about 51 KB each: 1,000 of them would be 50 MB.
        assert.ok(after - before < 8 * 1024, `live memory grew ${after - before} KiB`);
      } finally {
        await proxy.stop();
        await target.close();
      }
    }),
});

Deno.test("one deadline from accept: a trickled policy request or request head cannot stretch it", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`], { firstByte: 1000, head: 1500 });
  try {
    const trickle = async (text: string) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      const started = performance.now();
      const closed = readToEnd(conn).catch(() => new Uint8Array(0)).then(() =>
        performance.now() - started
      );
      let open = true;
      closed.then(() => open = false);
      for (let i = 0; i < text.length && open; i++) {
        await writeAll(conn, encoder.encode(text[i])).catch(() => {});
        await sleep(300); // each byte well within the first-byte limit
      }
      const ms = await deadline(closed, 5000, "the trickling connection to be closed");
      conn.close();
      return ms;
    };
    const [policy, head] = await Promise.all([
      trickle("<policy-file-request/>"),
      trickle(upgradeRequest()),
    ]);
    assert.ok(policy >= 1400 && policy < 2200, `policy trickle closed after ${policy} ms`);
    assert.ok(head >= 1400 && head < 2200, `head trickle closed after ${head} ms`);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test({
  name: "a flood of connections reset before accept: served at once, nothing logged per reset",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const target = echoTarget();
    const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`]);
    // A Python client that connects and resets (SO_LINGER 0) at once, 300 times a second for 3 s.
    let flood: Deno.ChildProcess | undefined;
    try {
      const port = await proxy.port();
      flood = new Deno.Command("python3", {
        args: [
          "-c",
          `
import socket, struct, time
end = time.time() + 3
while time.time() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.connect(("127.0.0.1", ${port}))
    except OSError:
        pass
    s.close()
    time.sleep(1 / 300)
`,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const latencies: number[] = [];
      await sleep(300);
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const client = await RawClient.open(port);
        await client.sendFrame(Opcode.Binary, "ping");
        await client.readData(4);
        latencies.push(performance.now() - started);
        client.close();
        await sleep(100);
      }
      await flood.status;
      flood = undefined;
      latencies.sort((a, b) => a - b);
      console.log(
        `handshake + echo during the reset flood: median ${latencies[10].toFixed(1)} ms, max ${
          latencies[19].toFixed(1)
        } ms`,
      );
      const acceptFailures = (proxy.stderr.match(/accept failed/g) ?? []).length;
      assert.equal(acceptFailures, 0, `accept failures logged:\n${proxy.stderr.slice(-2000)}`);
    } finally {
      try {
        flood?.kill();
        await flood?.status;
      } catch { /* already exited */ }
      await proxy.stop();
      await target.close();
    }
  },
});

Deno.test("a client gone while its target does not read: the target is closed after the closing wait", async () => {
  const release = Promise.withResolvers<void>();
  const targetSawEof = Promise.withResolvers<void>();
  const target = new TcpTarget(async (conn) => {
    await Promise.race([release.promise, sleep(15_000)]); // reads nothing meanwhile
    // The proxy must have closed its side by now: reading drains what it sent, then EOF.
    await deadline(readToEnd(conn), 10_000, "EOF from the proxy");
    targetSawEof.resolve();
  });
  // The client comes over a unix socket, whose buffers are small and fixed (a TCP connection's grow to
  // megabytes): what it has in flight when it drops fits in what the relay reads ahead to find out.
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ws.sock`;
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--unix-listen=${path}`], {
    close: 1000,
  });
  try {
    const client = RawClient.wrap(await Deno.connect({ transport: "unix", path }));
    assert.match(await client.request(upgradeRequest()), /^HTTP\/1\.1 101/);
    const chunk = new Uint8Array(60_000);
    // Fill the target's and the proxy's buffers, so a write to the target is pending.
    for (let i = 0; i < 400; i++) {
      const sent = await deadline(client.sendFrame(Opcode.Binary, chunk), 300, "send").then(
        () => true,
        () => false,
      );
      if (!sent) break;
    }
    const dropped = performance.now();
    client.close(); // gone, no close frame
    await waitFor(
      () => proxy.log.has(/session ended by client-dropped/),
      5000,
      "the session to end while the target still does not read",
    );
    const ms = performance.now() - dropped;
    assert.ok(
      proxy.log.has(/Client went away; target not reading/),
      proxy.log.lines.filter((line) => /session ended/.test(line)).join("\n"),
    );
    // Noticed within the stall check (0.5 s), then the closing wait (1 s here).
    assert.ok(ms < 3000, `the session ended ${ms} ms after the client dropped`);
    release.resolve();
    await deadline(targetSawEof.promise, 5000, "the target to see EOF");
  } finally {
    release.resolve();
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("after a protocol error, the client's close reply ends the session at once", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`], { close: 3000 });
  try {
    const client = await RawClient.open(proxy.port);
    await client.send(new Uint8Array([0x82, 0x01, 0x41])); // unmasked: a protocol error
    const close = await client.nextClose();
    assert.equal(close?.code, 1002);
    const started = performance.now();
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xea]));
    assert.equal(await client.next(3000), undefined, "the server closes TCP");
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `closed ${ms} ms after the reply (the closing wait is 3000 ms)`);
    client.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

// ---- shutdown in every state of a connection -------------------------------------------------------------

type Opened = { conn: Deno.Conn; expectClose1001?: RawClient };

/** The states a connection can be in when the server is told to stop, each opened against `port`. */
const STATES: Record<string, (port: number, ca: string) => Promise<Opened>> = {
  "connected, silent": async (port) => ({
    conn: await Deno.connect({ hostname: "127.0.0.1", port }),
  }),
  "TLS handshake begun, client silent": async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, TLS_START);
    return { conn };
  },
  "TLS done, no request yet": async (port, ca) => {
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca] });
    await conn.handshake();
    return { conn };
  },
  "half a request head": async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
    return { conn };
  },
  "keep-alive, after a static file": async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buffer = new Uint8Array(4096);
    await conn.read(buffer);
    return { conn };
  },
  "in a WebSocket session": async (port) => {
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "hi");
    await client.readData(2);
    return { conn: client.conn, expectClose1001: client };
  },
};

Deno.test({
  name: "SIGTERM in every state of a connection: exit 0 within about 3 s, nothing left hanging",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTestCerts(async (certs) => {
      const ca = await Deno.readTextFile(certs.ca);
      const web = await Deno.makeTempDir();
      await Deno.writeTextFile(`${web}/index.html`, "hello");
      const target = echoTarget();
      try {
        for (const [state, open] of Object.entries(STATES)) {
          const proxy = new ProxyProcess([
            "127.0.0.1:0",
            `127.0.0.1:${target.port}`,
            ...serverCertArgs(certs),
            `--web=${web}`,
          ]);
          try {
            const port = await proxy.port();
            const opened = await Promise.all([1, 2, 3].map(() => open(port, ca)));
            await sleep(200);
            const started = performance.now();
            proxy.child.kill("SIGTERM");
            for (const { conn, expectClose1001 } of opened) {
              if (expectClose1001) {
                assert.equal((await expectClose1001.nextClose(4000))?.code, 1001, state);
              } else {
                // Not yet a session: closed at once, not after a deadline.
                const ms = await msUntilClosed(conn, 4000, `${state}: closed on shutdown`);
                assert.ok(ms < 1000, `${state}: closed ${ms} ms after SIGTERM`);
              }
            }
            const status = await proxy.status(10_000);
            const ms = performance.now() - started;
            for (const { conn } of opened) {
              try {
                conn.close();
              } catch { /* closed */ }
            }
            assert.equal(status.code, 0, `${state}: exit code`);
            assert.ok(ms < 3600, `${state}: exited ${ms.toFixed(0)} ms after SIGTERM`);
            assert.doesNotMatch(proxy.stderr, /still open after the shutdown limit/, state);
          } finally {
            await proxy.stop();
          }
        }
      } finally {
        await target.close();
        await Deno.remove(web, { recursive: true });
      }
    }),
});

Deno.test({
  name:
    "SIGTERM with slow readers still uploading: each gets every byte the proxy sent it, then close 1001",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // The target sends without pause and reads (and drops) everything.
    const target = new TcpTarget(async (conn) => {
      const out = new Uint8Array(64 * 1024).fill(0x61);
      const sink = new Uint8Array(64 * 1024);
      const reading = (async () => {
        while ((await conn.read(sink)) !== null);
      })().catch(() => {});
      try {
        while (true) await writeAll(conn, out);
      } catch { /* the proxy closed */ }
      await reading;
    });
    const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`]);
    try {
      const port = await proxy.port();
      const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.open(port)));
      let stopUploading = false;
      const uploads = clients.map(async (client) => {
        const chunk = new Uint8Array(16 * 1024).fill(0x62);
        while (!stopUploading) {
          await client.sendFrame(Opcode.Binary, chunk);
          await sleep(1);
        }
      }).map((upload) => upload.catch(() => {}));
      // A slow reader, about 1.6 MB/s: enough to read what the kernel buffers hold for it (about 4 MB on
      // loopback) within the 3 s closing wait. A slower one would lose the rest: the bound wins.
      const readers = clients.map(async (client) => {
        let bytes = 0;
        while (true) {
          const event = await client.next(15_000);
          if (!event) return { bytes, code: undefined };
          if (event.kind === "data") {
            bytes += event.payload.length;
            await sleep(event.payload.length / 1600);
          }
          if (event.kind === "close") return { bytes, code: event.code };
        }
      });
      await sleep(1000);
      proxy.child.kill("SIGTERM");
      const results = await Promise.all(readers);
      stopUploading = true;
      await Promise.all(uploads);
      const status = await proxy.status(10_000);
      assert.equal(status.code, 0);
      // The summary lines name the host, not the port: compare the counts as sets.
      const counted = [
        ...proxy.stderr.matchAll(/session ended by server .*, (\d+) bytes to client/g),
      ].map((match) => Number(match[1])).sort((a, b) => a - b);
      const received = results.map((result) => result.bytes).sort((a, b) => a - b);
      assert.deepEqual(
        results.map((result) => result.code),
        clients.map(() => 1001),
        `close codes; bytes received ${received}, counted ${counted}`,
      );
      assert.deepEqual(received, counted, "bytes each client received = bytes the proxy counted");
      for (const client of clients) client.close();
    } finally {
      await proxy.stop();
      await target.close();
    }
  },
});

Deno.test("the target closes while a slow reader is still sending: it still gets every byte, then close 1000", async () => {
  const total = 12 << 20;
  const target = new TcpTarget(async (conn) => {
    const sink = new Uint8Array(65536);
    const reading = (async () => {
      while ((await conn.read(sink).catch(() => null)) !== null);
    })();
    const chunk = new Uint8Array(65536).fill(0x61);
    for (let sent = 0; sent < total; sent += chunk.length) await writeAll(conn, chunk);
    await conn.closeWrite();
    await reading;
  });
  // A short closing wait (1 s): the client needs longer than that to read what the kernel holds for it.
  const proxy = await startProxy([`127.0.0.1:${target.port}`], { close: 1000 });
  try {
    const client = await RawClient.open(proxy.port);
    let done = false;
    const uploading = (async () => {
      while (!done) {
        await client.sendFrame(Opcode.Binary, new Uint8Array(1000));
        await sleep(10);
      }
    })().catch(() => {});
    let bytes = 0;
    let close: number | undefined;
    while (true) {
      const event = await client.next(20_000);
      if (!event) break;
      if (event.kind === "data") {
        bytes += event.payload.length;
        await sleep(event.payload.length / 3000); // about 3 MB/s
      }
      if (event.kind === "close") {
        close = event.code;
        break;
      }
    }
    done = true;
    await uploading;
    assert.equal(bytes, total, "every byte the target sent");
    assert.equal(close, 1000);
    client.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--heartbeat: a client that answers, behind a target slower than it sends, is not taken for dead", async () => {
  let received = 0;
  const target = new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(20_000);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return;
      received += n;
      await sleep(100); // about 200 KB/s: the client's pongs wait behind seconds of its data
    }
  });
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--heartbeat=1"]);
  try {
    const client = await RawClient.open(await proxy.port());
    // One write queue: pongs go between frames, never inside one.
    let writes = Promise.resolve();
    const send = (opcode: number, payload: Uint8Array) =>
      writes = writes.then(() => client.sendFrame(opcode, payload));
    let pongs = 0;
    const answering = (async () => {
      while (true) {
        const event = await client.next(30_000).catch(() => undefined);
        if (!event || event.kind === "close") return event;
        if (event.kind === "ping") {
          pongs++;
          send(Opcode.Pong, event.payload);
        }
      }
    })();
    const frame = new Uint8Array(50_000);
    for (let i = 0; i < 160; i++) send(Opcode.Binary, frame); // 8 MB, queued at once
    await sleep(7000);
    assert.doesNotMatch(proxy.stderr, /session ended by heartbeat/, proxy.stderr.slice(-2000));
    assert.ok(pongs >= 3, `pings answered: ${pongs}`);
    assert.ok(received > 500_000, `the target is still being fed (${received} bytes)`);
    client.close();
    await answering;
  } finally {
    await proxy.stop();
    await target.close();
  }
});
