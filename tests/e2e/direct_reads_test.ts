// Plain ws:// and HTTP on a port that also serves wss (a certificate is configured, so connections are accepted
// through node:net and a plain one is read directly into the relay's buffers after the sniff): it must behave
// exactly as the same port without a certificate (Deno.listen). Each scenario runs both ways.
import assert from "node:assert/strict";
import { withTestCerts } from "../helpers/certs.ts";
import { startProxy } from "../helpers/proxy.ts";
import { readToEnd } from "../helpers/bytes.ts";
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
