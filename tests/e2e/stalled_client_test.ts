// A client that stops reading while the proxy writes to it, then is cut or resets: the ending is the client's,
// logged as such, over plain TCP and over TLS alike. (Found on a node:net path since removed, where a failed
// write was always seen before the read noticed the reset: the relay and the web server no longer depend on
// which comes first.)
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { serverCertArgs, withTestCerts } from "../helpers/certs.ts";
import { startProxy } from "../helpers/proxy.ts";
import { readToEnd } from "../helpers/bytes.ts";
import { upgradeRequest } from "../helpers/raw_client.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { writeAll } from "../../lib/io.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const MODES = ["plain", "TLS"] as const;
type Mode = typeof MODES[number];

for (const mode of MODES) {
  Deno.test({
    name: `--web over ${
      mode === "TLS" ? "https" : "http"
    }: a client that stops reading a download is cut after the write timeout and logged as a request, not a handler exception`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () =>
      withTestCerts(async (certs, ca) => {
        const root = await Deno.makeTempDir({ prefix: "websockify-stalled-web-" });
        // Far more than the kernel's socket buffers hold.
        await Deno.writeFile(`${root}/big.bin`, new Uint8Array(24 * 1024 * 1024));
        const proxy = await startProxy(
          ["127.0.0.1:1", `--web=${root}`, ...serverCertArgs(certs)],
          { webWrite: 500 },
        );
        try {
          const conn = mode === "TLS"
            ? await Deno.connectTls({ hostname: "localhost", port: proxy.port, caCerts: [ca] })
            : await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
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
    name: `${
      mode === "TLS" ? "wss" : "ws"
    }: a client that resets while the target floods it ends the session as the client's drop (1006), not a target error`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () =>
      withTestCerts(async (certs, ca) => {
        const target = new TcpTarget(async (conn) => {
          const chunk = new Uint8Array(1024 * 1024);
          try {
            for (let i = 0; i < 200; i++) await writeAll(conn, chunk);
          } catch { /* the proxy closed it */ }
        });
        const proxy = await startProxy(
          [`127.0.0.1:${target.port}`, ...serverCertArgs(certs)],
          { close: 500 },
        );
        try {
          for (let round = 0; round < 3; round++) {
            const socket = net.connect(proxy.port, "127.0.0.1");
            await new Promise((resolve) => socket.once("connect", resolve));
            let client: Duplex = socket;
            if (mode === "TLS") {
              const secure = tls.connect({ socket, servername: "localhost", ca });
              await new Promise((resolve) => secure.once("secureConnect", resolve));
              secure.on("error", () => {}); // the reset below
              client = secure;
            }
            client.write(upgradeRequest());
            client.pause(); // the client reads nothing: the proxy's writes to it block
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
