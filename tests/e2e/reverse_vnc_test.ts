// Reverse connections with real parts: a TigerVNC X display (Xtigervnc), a real x11vnc on it dialing in to the
// proxy with `-connect repeater=ID:<id>+host:port`, and noVNC (npm @novnc/novnc, served by --web) in headless
// Chromium reaching that desktop by ?token=<id>. A wrong ID is refused, a second x11vnc with the same ID is
// refused while the first waits, and the desktop's pixels (a root window painted by xsetroot) reach the canvas.
import assert from "node:assert/strict";
import { tokenHash } from "../../lib/secrets.ts";
import { chromiumAvailable, launchChromium, screenshotOnFailure } from "../helpers/browser.ts";
import { ROOT } from "../helpers/paths.ts";
import { type InProcessProxy, startProxy } from "../helpers/proxy.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";
import type { ReverseConnections } from "../../lib/reverse.ts";

const XTIGERVNC = "/usr/bin/Xtigervnc";
const X11VNC = "/usr/bin/x11vnc";
const XSETROOT = "/usr/bin/xsetroot";
const NOVNC = `${ROOT}tests/node_modules/@novnc/novnc`;

const missing = [XTIGERVNC, X11VNC, XSETROOT, `${NOVNC}/core/rfb.js`].filter((path) => {
  try {
    return !Deno.statSync(path).isFile;
  } catch {
    return true;
  }
});
const ready = chromiumAvailable && missing.length === 0;
if (!ready) {
  console.warn(
    `SKIP reverse_vnc_test: needs chromium, tigervnc-standalone-server, x11vnc, x11-xserver-utils and ` +
      `tests/node_modules (deno install --config tests/deno.json); missing: ${
        missing.join(", ") || "chromium"
      }`,
  );
}

/** The page: noVNC's RFB on a div, connected to this proxy's /websockify with the page's ?token=. */
const PAGE = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>waiting</title></head>
<body style="margin:0"><div id="screen" style="width:640px;height:480px"></div>
<script type="module">
import RFB from "./novnc/core/rfb.js";
const token = new URLSearchParams(location.search).get("token");
const url = "ws://" + location.host + "/websockify?token=" + encodeURIComponent(token);
const rfb = new RFB(document.getElementById("screen"), url);
rfb.addEventListener("connect", () => { document.title = "CONNECTED"; });
rfb.addEventListener("disconnect", (e) => {
  document.title = "DISCONNECTED " + (e.detail.clean ? "clean" : "unclean");
});
rfb.addEventListener("desktopname", (e) => { window.desktopName = e.detail.name; });
rfb.addEventListener("securityfailure", (e) => { document.title = "SECURITYFAILURE " + e.detail.reason; });
window.rfb = rfb;
</script></body></html>`;

/** The root window's colour (xsetroot -solid), as the canvas must show it. */
const ROOT_COLOUR = "#ff8000";
const ROOT_RGB = [255, 128, 0];

function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
}

/** Stops a child (SIGTERM, then SIGKILL) and waits for it, bounded. */
async function stop(child: Deno.ChildProcess | undefined): Promise<void> {
  if (!child) return;
  try {
    child.kill("SIGTERM");
  } catch { /* already exited */ }
  try {
    await deadline(child.status, 3000, "exit");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await deadline(child.status, 3000, "exit after SIGKILL").catch(() => {});
  }
  await child.stderr.cancel().catch(() => {});
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A TigerVNC X server on a free display (no VNC port of its own: x11vnc serves it), 640x480x24. */
async function startDisplay(): Promise<{ child: Deno.ChildProcess; display: string }> {
  for (let n = 40 + (Deno.pid % 40), tries = 0; tries < 8; n++, tries++) {
    if (exists(`/tmp/.X${n}-lock`) || exists(`/tmp/.X11-unix/X${n}`)) continue;
    const child = spawn(XTIGERVNC, [
      `:${n}`,
      "-SecurityTypes",
      "None",
      "-localhost",
      "-rfbport",
      "-1",
      "-nolisten",
      "tcp",
      "-geometry",
      "640x480",
      "-depth",
      "24",
    ]);
    let exited = false;
    child.status.then(() => exited = true);
    try {
      await waitFor(() => exited || exists(`/tmp/.X11-unix/X${n}`), 8000, `display :${n}`);
    } catch (error) {
      await stop(child);
      throw error;
    }
    if (!exited) return { child, display: `:${n}` };
    await stop(child); // taken meanwhile: the next one
  }
  throw new Error("no free X display");
}

/** x11vnc on `display`, dialing in with `id`; one client, then it exits; no port of its own. */
function startX11vnc(display: string, id: string, dialPort: number): Deno.ChildProcess {
  return spawn(X11VNC, [
    "-display",
    display,
    "-connect_or_exit",
    `repeater=ID:${id}+127.0.0.1:${dialPort}`,
    "-nopw",
    "-once",
    "-rfbport",
    "0",
    "-desktop",
    "reverse-test-desktop",
    "-q",
  ]);
}

Deno.test({
  name:
    "ReverseConnection with a real x11vnc: noVNC in Chromium reaches the desktop by ?token=<ID>; wrong and duplicate IDs refused",
  ignore: !ready,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = "support-4711";
    const web = await Deno.makeTempDir({ prefix: "websockify-reverse-web-" });
    let display: Awaited<ReturnType<typeof startDisplay>> | undefined;
    let x11vnc: Deno.ChildProcess | undefined;
    let duplicate: Deno.ChildProcess | undefined;
    let proxy: InProcessProxy | undefined;
    let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
    try {
      await Deno.writeTextFile(`${web}/index.html`, PAGE);
      const copy = await new Deno.Command("cp", { args: ["-rL", NOVNC, `${web}/novnc`] }).output();
      assert.ok(copy.success, new TextDecoder().decode(copy.stderr));

      const launching = launchChromium();
      display = await startDisplay();
      const paint = await new Deno.Command(XSETROOT, {
        args: ["-display", display.display, "-solid", ROOT_COLOUR],
      }).output();
      assert.ok(paint.success, "xsetroot");
      proxy = await startProxy([
        `--web=${web}`,
        "--token-plugin=ReverseConnection",
        "--token-source=127.0.0.1:0",
      ]);
      const plugin = proxy.server.plugins.token as ReverseConnections;
      const log = proxy.log;
      x11vnc = startX11vnc(display.display, id, plugin.addr.port);
      await waitFor(
        () => log.has(new RegExp(`parked as ${tokenHash(id)}`)),
        10000,
        "x11vnc parked",
      );

      // A second x11vnc with the same ID while the first waits: refused, the first stays.
      duplicate = startX11vnc(display.display, id, plugin.addr.port);
      await waitFor(() => log.has(/refused: ID #[0-9a-f]{8} is already waiting/), 10000, "refusal");
      assert.equal(plugin.parked, 1);

      browser = await launching;
      const page = await browser.newPage();
      const base = `http://127.0.0.1:${proxy.port}/index.html`;
      await screenshotOnFailure(page, "reverse-vnc", async () => {
        // A wrong ID: no such server, the WebSocket is refused, noVNC reports the disconnect.
        await page.goto(`${base}?token=not-${id}`);
        await page.waitForFunction("document.title.startsWith('DISCONNECTED')", undefined, {
          timeout: 10000,
        });
        await waitFor(() => log.has(/Token #[0-9a-f]{8} not found/), 2000, "not found");
        assert.equal(plugin.parked, 1, "the parked server is untouched");

        // The right ID: the RFB handshake through the proxy, then the desktop itself.
        await page.goto(`${base}?token=${id}`);
        await page.waitForFunction("document.title === 'CONNECTED'", undefined, { timeout: 10000 });
        const shown = await page.waitForFunction(
          ([r, g, b]) => {
            const canvas = document.querySelector("#screen canvas") as HTMLCanvasElement | null;
            if (!canvas || canvas.width !== 640 || canvas.height !== 480) return false;
            const pixel = canvas.getContext("2d")!.getImageData(320, 240, 1, 1).data;
            return pixel[0] === r && pixel[1] === g && pixel[2] === b &&
              [canvas.width, canvas.height, (globalThis as { desktopName?: string }).desktopName];
          },
          ROOT_RGB,
          { timeout: 10000 },
        );
        assert.deepEqual(await shown.jsonValue(), [640, 480, "reverse-test-desktop"]);
        assert.equal(plugin.parked, 0, "paired: no longer parked");
        assert.ok(log.has(/paired with 127\.0\.0\.1/));
      });
      await page.close();
      // noVNC gone: x11vnc (-once) sees its client leave and exits.
      await deadline(x11vnc.status, 10000, "x11vnc exit");
    } finally {
      await browser?.close().catch(() => {});
      await stop(duplicate);
      await stop(x11vnc);
      await proxy?.stop();
      await stop(display?.child);
      await Deno.remove(web, { recursive: true }).catch(() => {});
      await sleep(0);
    }
    const lines = proxy!.log.lines.join("\n");
    assert.ok(!lines.includes(id), `the ID in clear:\n${lines}`);
  },
});
