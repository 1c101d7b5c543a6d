// Plain ws:// and HTTP on a port that also serves wss (a certificate is configured, so connections are accepted
// through node:net and a plain one is read directly into the relay's buffers after the sniff): it must behave
// exactly as the same port without a certificate (Deno.listen). Each scenario runs both ways.
import assert from "node:assert/strict";
import net from "node:net";
import { withTestCerts } from "../helpers/certs.ts";
import { startProxy } from "../helpers/proxy.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { upgradeRequest } from "../helpers/raw_client.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { writeAll } from "../../lib/io.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const MODES = ["with a certificate", "without a certificate"] as const;
type Mode = typeof MODES[number];

function tlsArgs(mode: Mode, certs: { serverCert: string; serverKey: string }): string[] {
  return mode === "with a certificate"
    ? [`--cert=${certs.serverCert}`, `--key=${certs.serverKey}`]
    : [];
}

for (const mode of MODES) {
  Deno.test({
    name:
      `--web, ${mode}: a client that stops reading a download is cut after the write timeout and logged as a request, not a handler exception`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () =>
      withTestCerts(async (certs) => {
        const root = await Deno.makeTempDir({ prefix: "websockify-direct-web-" });
        // Far more than the kernel's socket buffers hold.
        await Deno.writeFile(`${root}/big.bin`, new Uint8Array(24 * 1024 * 1024));
        const proxy = await startProxy(
          ["127.0.0.1:1", `--web=${root}`, ...tlsArgs(mode, certs)],
          { webWrite: 500 },
        );
        try {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
          try {
            await writeAll(conn, new TextEncoder().encode("GET /big.bin HTTP/1.1\r\n\r\n"));
            await waitFor(
              () => proxy.log.has(/big\.bin|handler exception/),
              8000,
              "the stalled download to be cut",
            );
            await sleep(100);
            const got = await deadline(readToEnd(conn), 5000, "the connection to close");
            assert.ok(got.length < 24 * 1024 * 1024, "the download was cut");
          } finally {
            conn.close();
          }
          const lines = proxy.log.lines.join("\n");
          assert.doesNotMatch(lines, /handler exception/);
          assert.match(lines, /"GET \/big\.bin HTTP\/1\.1" 200 -/);
        } finally {
          await proxy.stop();
          await Deno.remove(root, { recursive: true });
        }
      }),
  });
}

for (const mode of MODES) {
  Deno.test({
    name:
      `ws, ${mode}: a client that resets while the target floods it ends the session as the client's drop (1006), not a target error`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () =>
      withTestCerts(async (certs) => {
        const target = new TcpTarget(async (conn) => {
          const chunk = new Uint8Array(1024 * 1024);
          try {
            for (let i = 0; i < 200; i++) await writeAll(conn, chunk);
          } catch { /* the proxy closed it */ }
        });
        const proxy = await startProxy(
          [`127.0.0.1:${target.port}`, ...tlsArgs(mode, certs)],
          { close: 500 },
        );
        try {
          for (let round = 0; round < 3; round++) {
            const socket = net.connect(proxy.port, "127.0.0.1");
            await new Promise((resolve) => socket.once("connect", resolve));
            socket.write(upgradeRequest());
            socket.pause(); // the client reads nothing: the proxy's writes to it block
            await sleep(300);
            socket.resetAndDestroy();
            await waitFor(
              () => proxy.log.lines.filter((line) => /session ended/.test(line)).length > round,
              5000,
              "the session to end",
            );
          }
          const ends = proxy.log.lines.filter((line) => /session ended/.test(line));
          for (const line of ends) {
            assert.match(line, /session ended by client-dropped \(1006 /, line);
          }
        } finally {
          await proxy.stop();
          await target.close();
        }
      }),
  });
}
