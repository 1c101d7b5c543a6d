// A real browser as the client: headless Debian Chromium (driven by playwright-core) loads a page from --web over
// https:// with a self-signed certificate, opens wss:// on the same port and moves binary data through to an echo
// target; a plain http:// page does the same over ws:// at the same time.
import assert from "node:assert/strict";
import { chromiumAvailable, launchChromium } from "../helpers/browser.ts";
import { makeCerts, serverCertArgs } from "../helpers/certs.ts";
import { startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";

if (!chromiumAvailable) console.warn("SKIP browser_test: install Debian's chromium (.ci/run does)");

/** The test page: echo 300 KB of binary data over ws:// or wss:// (the page's own scheme), report in the title. */
const PAGE = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>waiting</title></head>
<body><pre id="log"></pre>
<script>
const scheme = location.protocol === "https:" ? "wss" : "ws";
const ws = new WebSocket(scheme + "://" + location.host + "/websockify", ["binary"]);
ws.binaryType = "arraybuffer";
// Each page has its own pattern, so bytes of the other page's session would show as a difference.
const seed = scheme === "wss" ? 101 : 7;
const data = new Uint8Array(300000);
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + seed + (i >> 8)) & 255;
const received = new Uint8Array(data.length);
let have = 0;
ws.onopen = () => {
  for (let i = 0; i < data.length; i += 25000) ws.send(data.subarray(i, i + 25000));
};
const report = (verdict, detail) => {
  document.getElementById("log").textContent = scheme + " " + detail;
  document.title = verdict + " " + scheme + " " + ws.protocol;
  ws.close(1000, "done");
};
ws.onmessage = (event) => {
  const chunk = new Uint8Array(event.data);
  if (have + chunk.length > data.length) {
    return report("FAIL", "got " + (have + chunk.length) + " bytes, sent " + data.length);
  }
  received.set(chunk, have);
  have += chunk.length;
  if (have === data.length) {
    const at = received.findIndex((b, i) => b !== data[i]);
    if (at < 0) return report("PASS", have + " bytes match");
    report("FAIL", "byte " + at + " differs: expected " + data[at] + ", got " + received[at]);
  }
};
ws.onerror = () => { document.title = "ERROR " + scheme; };
</script></body></html>`;

Deno.test({
  name:
    "Chromium: https page + wss:// and http page + ws:// on one port, binary echo through the proxy",
  ignore: !chromiumAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const certs = await makeCerts();
    const root = await Deno.makeTempDir();
    await Deno.writeTextFile(`${root}/index.html`, PAGE);
    const target = echoTarget();
    const proxy = await startProxy([
      `127.0.0.1:${target.port}`,
      `--web=${root}`,
      ...serverCertArgs(certs),
    ]);
    const browser = await launchChromium(["--ignore-certificate-errors"]);
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const secure = await context.newPage();
      const plain = await context.newPage();
      await Promise.all([
        secure.goto(`https://127.0.0.1:${proxy.port}/`),
        plain.goto(`http://127.0.0.1:${proxy.port}/`),
      ]);
      const outcome = (page: typeof secure) =>
        page.waitForFunction("document.title !== 'waiting'", undefined, { timeout: 20000 })
          .then(() => page.title());
      const [secureTitle, plainTitle] = await Promise.all([outcome(secure), outcome(plain)]);
      // On a failure, the page's log line says where the bytes differed and how.
      const details = `wss: ${await secure.textContent("#log")}; ws: ${await plain.textContent(
        "#log",
      )}`;
      assert.equal(secureTitle, "PASS wss binary", details);
      assert.equal(plainTitle, "PASS ws binary", details);
      assert.equal(await secure.textContent("#log"), "wss 300000 bytes match");
      assert.equal(await plain.textContent("#log"), "ws 300000 bytes match");
      await secure.screenshot({ path: `${root}/secure.png` });
      assert.ok((await Deno.stat(`${root}/secure.png`)).size > 0);
      assert.ok(proxy.log.has(/"GET \/ HTTP\/1\.1" 200 -/));
      assert.ok(proxy.log.has(/SSL\/TLS \(wss:\/\/\) WebSocket connection/));
      assert.ok(proxy.log.has(/Plain non-SSL \(ws:\/\/\) WebSocket connection/));
      await context.close();
    } finally {
      await browser.close();
      await proxy.stop();
      await target.close();
      await certs.remove();
      await Deno.remove(root, { recursive: true });
    }
  },
});
