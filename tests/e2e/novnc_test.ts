// noVNC (npm @novnc/novnc, its core served by the proxy's --web from tests/node_modules) in headless Chromium,
// reaching a VNC target through a token plugin with the token in a cookie set by the page and in the path
// (`websockify/TOKEN`, what noVNC's path setting makes). The page is one of the proxy's own (the --web folder's
// listing, so the browser sees a loopback page talking to loopback); the test runs noVNC's RFB in it. The target
// is a tiny RFB 3.8 server written here: the greeting, security type None, a ServerInit of a 1x1 framebuffer.
// No token shows in the proxy's log.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { writeAll } from "../../lib/io.ts";
import { tokenHash } from "../../lib/secrets.ts";
import { chromiumAvailable, launchChromium, screenshotOnFailure } from "../helpers/browser.ts";
import { startProxy } from "../helpers/proxy.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";

if (!chromiumAvailable) console.warn("SKIP novnc_test: install Debian's chromium (.ci/run does)");

/** noVNC's package folder (its core/ and vendor/ are what a page imports). */
const NOVNC = fileURLToPath(new URL("../node_modules/@novnc/novnc/", import.meta.url));

/** Reads exactly `length` bytes (the connection closing first is an error). */
async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  for (let have = 0; have < length;) {
    const n = await conn.read(bytes.subarray(have));
    if (n === null) throw new Error(`closed after ${have} of ${length} bytes`);
    have += n;
  }
  return bytes;
}

/**
 * A minimal RFB 3.8 server: version, security type None (and its result), ServerInit for a 1x1 true-colour
 * framebuffer; then it reads (and drops) what the client sends. `versions` collects each client's version line.
 */
function rfbTarget(name: string): TcpTarget & { versions: string[] } {
  const versions: string[] = [];
  const target = new TcpTarget(async (conn) => {
    await writeAll(conn, new TextEncoder().encode("RFB 003.008\n"));
    versions.push(new TextDecoder().decode(await readExactly(conn, 12)));
    await writeAll(conn, Uint8Array.of(1, 1)); // one security type: None
    const [chosen] = await readExactly(conn, 1);
    if (chosen !== 1) throw new Error(`security type ${chosen}`);
    await writeAll(conn, Uint8Array.of(0, 0, 0, 0)); // SecurityResult: OK
    await readExactly(conn, 1); // ClientInit (shared flag)
    const title = new TextEncoder().encode(name);
    const init = new Uint8Array(24 + title.length);
    const view = new DataView(init.buffer);
    view.setUint16(0, 1); // width
    view.setUint16(2, 1); // height
    // Pixel format: 32 bpp, depth 24, little-endian, true colour, max 255 each, shifts 16/8/0.
    init.set([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0], 4);
    view.setUint32(20, title.length);
    init.set(title, 24);
    await writeAll(conn, init);
    const sink = new Uint8Array(4096);
    while (await conn.read(sink) !== null);
  });
  return Object.assign(target, { versions });
}

/**
 * What the test page runs (in a page of the proxy's origin): noVNC's RFB, imported from the proxy's --web,
 * connects with the token in a cookie it sets, or in the path; the title tells how it went.
 */
const CONNECT = `async ({ how, token }) => {
  const { default: RFB } = await import(location.origin + "/core/rfb.js");
  let path = "websockify";
  if (how === "cookie") {
    document.cookie = "vnc_token=" + encodeURIComponent(token) + "; path=/; SameSite=Strict";
  } else {
    path = "websockify/" + encodeURIComponent(token);
  }
  const screen = document.createElement("div");
  screen.id = "screen";
  document.body.append(screen);
  const rfb = new RFB(screen, "ws://" + location.host + "/" + path);
  rfb.addEventListener("connect", () => { document.title = "connected"; });
  rfb.addEventListener("disconnect", (e) => { document.title = "disconnected clean=" + e.detail.clean; });
  rfb.addEventListener("securityfailure", (e) => { document.title = "securityfailure " + e.detail.reason; });
  rfb.addEventListener("desktopname", (e) => { screen.dataset.name = e.detail.name; });
}`;

Deno.test({
  name:
    "Chromium + noVNC: the token in a cookie and in the path (websockify/TOKEN) reaches the VNC target",
  ignore: !chromiumAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const byCookie = rfbTarget("cookie desk");
    const byPath = rfbTarget("path desk");
    const tokens = { cookie: "Sek-Kuki desk;1", path: "Sek-Pfad/desk 2" };
    await Deno.writeTextFile(
      `${dir}/tokens`,
      `${tokens.cookie}: 127.0.0.1:${byCookie.port}\n${tokens.path}: 127.0.0.1:${byPath.port}\n`,
    );
    const proxy = await startProxy([
      `--web=${NOVNC}`,
      "--token-plugin=TokenFile",
      `--token-source=${dir}/tokens`,
      "--token-from=cookie:vnc_token,path",
    ]);
    const origin = `http://127.0.0.1:${proxy.port}`;
    const browser = await launchChromium();
    try {
      for (const how of ["cookie", "path"] as const) {
        const context = await browser.newContext(); // its own cookie jar
        const tab = await context.newPage();
        await screenshotOnFailure(tab, `novnc-${how}`, async () => {
          // A page of the proxy's origin: noVNC's folder, listed by --web.
          await tab.goto(`${origin}/`);
          await tab.evaluate("document.title = 'waiting'");
          await tab.evaluate(`(${CONNECT})(${JSON.stringify({ how, token: tokens[how] })})`);
          await tab.waitForFunction("document.title !== 'waiting'", undefined, { timeout: 15000 });
          assert.equal(await tab.title(), "connected");
          await tab.waitForFunction("document.getElementById('screen').dataset.name", undefined, {
            timeout: 5000,
          });
          assert.equal(
            await tab.evaluate("document.getElementById('screen').dataset.name"),
            `${how} desk`,
          );
        });
        await context.close();
      }
      // Each target heard noVNC's version line: the token took each session to its own target.
      assert.deepEqual(byCookie.versions, ["RFB 003.008\n"]);
      assert.deepEqual(byPath.versions, ["RFB 003.008\n"]);
      await waitFor(() => proxy.log.has(/session ended/), 5000, "a session summary");
      // noVNC's own files were served from --web, and the path token was logged by its hash only.
      assert.ok(proxy.log.has(/"GET \/core\/rfb\.js HTTP\/1\.1" 200/));
      assert.ok(proxy.log.has(new RegExp(`Path: '/websockify/${tokenHash(tokens.path)}'`)));
      for (const line of proxy.log.lines) {
        for (const secret of ["Sek", encodeURIComponent(tokens.path), "desk;1", "desk 2"]) {
          assert.ok(!line.includes(secret), `a token in clear in: ${line}`);
        }
      }
    } finally {
      await browser.close();
      await proxy.stop();
      await byCookie.close();
      await byPath.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
