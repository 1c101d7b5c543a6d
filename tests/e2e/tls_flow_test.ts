// wss under pressure: a client flooding a target that does not read (node:tls decrypts whatever it is given, so
// the proxy must stop giving it ciphertext). A real proxy process, a real TLS client (Deno's), a real target.
import assert from "node:assert/strict";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { serverCertArgs, withTestCerts } from "../helpers/certs.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { MASK, RawClient } from "../helpers/raw_client.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep } from "../helpers/waits.ts";

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
      ...serverCertArgs(certs),
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
