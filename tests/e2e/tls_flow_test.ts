// wss under pressure: a client flooding a target that does not read (node:tls decrypts whatever it is given, so
// the proxy must stop giving it ciphertext), and running out of file descriptors with TLS in the mix. Real proxy
// processes, real TLS clients (Deno's), real targets.
import assert from "node:assert/strict";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { withTestCerts } from "../helpers/certs.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { MASK, RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

Deno.test("wss: a client flooding a target that does not read is throttled (memory flat); every byte arrives once it reads", () =>
  withTestCerts(async (certs, ca) => {
    const release = Promise.withResolvers<void>();
    const received: Promise<number>[] = [];
    // Reads nothing until released, then everything until EOF.
    const target = new TcpTarget(async (conn) => {
      let done!: (n: number) => void;
      received.push(new Promise((resolve) => done = resolve));
      await release.promise;
      done((await readToEnd(conn)).length);
    });
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      `127.0.0.1:${target.port}`,
      `--cert=${certs.serverCert}`,
      `--key=${certs.serverKey}`,
    ]);
    try {
      const port = await proxy.port();
      const client = await RawClient.openTls(port, ca);
      const payload = new Uint8Array(64 * 1024).fill(0x5a);
      const frame = encodeFrame(Opcode.Binary, payload, { mask: MASK });
      await sleep(300);
      const before = proxy.rssKiB();
      let sent = 0;
      let stop = false;
      const flooding = (async () => {
        while (!stop) {
          await writeAll(client.conn, frame);
          sent += payload.length;
        }
      })();
      await sleep(2500);
      stop = true;
      const after = proxy.rssKiB();
      const growthMiB = (after - before) / 1024;
      // Without the gate on the ciphertext, node:tls took it all: 1.5-2.3 GB in 4 s, all of it in memory.
      assert.ok(sent < 64 * 1024 * 1024, `the client managed to send ${sent} bytes`);
      assert.ok(growthMiB < 48, `proxy RSS grew ${growthMiB.toFixed(1)} MiB (sent ${sent} bytes)`);
      // The target reads now: the pending write completes, then every byte before the close reaches it.
      release.resolve();
      await deadline(flooding, 10000, "the flood's last write");
      await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
      assert.equal((await client.nextClose(10000))?.code, 1000);
      client.close();
      assert.equal(await deadline(received[0], 10000, "target EOF"), sent);
    } finally {
      release.resolve();
      await proxy.stop();
      await target.close();
    }
  }));

/** Opens a session (over TLS or not) and checks it echoes; undefined if not served within 2 s. */
async function trySession(
  port: number,
  ca: string | undefined,
): Promise<RawClient | undefined> {
  let conn: Deno.Conn;
  try {
    conn = ca
      ? await deadline(
        Deno.connectTls({ hostname: "localhost", port, caCerts: [ca] }),
        2000,
        "TLS connect",
      )
      : await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return undefined;
  }
  const client = RawClient.wrap(conn);
  try {
    await deadline(client.send(new TextEncoder().encode(upgradeRequest())), 2000, "request");
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

Deno.test("out of file descriptors with a certificate: back-off, open sessions served, ws and wss accepted again", () =>
  withTestCerts(async (certs, ca) => {
    const target = echoTarget();
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      `127.0.0.1:${target.port}`,
      `--cert=${certs.serverCert}`,
      `--key=${certs.serverKey}`,
    ], { shell: "ulimit -n 80;" });
    const clients: RawClient[] = [];
    const idle: Deno.Conn[] = [];
    try {
      const port = await proxy.port();
      for (let i = 0; i < 60; i++) {
        const client = await trySession(port, i % 2 ? ca : undefined);
        if (!client) break;
        clients.push(client);
      }
      assert.ok(
        clients.length >= 5 && clients.length < 60,
        `${clients.length} sessions before the limit`,
      );
      for (let i = 0; i < 3; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await waitFor(
        () => /accept failed: .*backing off/.test(proxy.stderr),
        5000,
        "back-off log line",
      );
      for (const client of clients.slice(0, 3)) {
        await client.sendFrame(Opcode.Binary, "still here");
        assert.equal(new TextDecoder().decode(await client.readData(10)), "still here");
      }
      // Descriptors freed: ws and wss sessions are accepted again.
      for (const client of clients.splice(0, 6)) client.close();
      for (const conn of idle.splice(0)) conn.close();
      for (const tls of [false, true]) {
        let late: RawClient | undefined;
        for (let i = 0; i < 10 && !late; i++) late = await trySession(port, tls ? ca : undefined);
        assert.ok(late, `no ${tls ? "wss" : "ws"} session after descriptors were freed`);
        clients.push(late);
      }
      await waitFor(
        () => /accepting connections again/.test(proxy.stderr),
        5000,
        "recovery log line",
      );
      assert.doesNotMatch(proxy.stderr, /internal error|Uncaught|\/dev\/null/);
    } finally {
      for (const client of clients) client.close();
      for (const conn of idle) conn.close();
      await proxy.stop();
      await target.close();
    }
  }));
