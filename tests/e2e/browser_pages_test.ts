// The built-in pages in a real browser, loaded from the proxy itself (no --web): headless Chromium runs the
// Websock scenario with the module the proxy serves (binary and base64), types into the wsecho page, and uses the
// wstelnet page (xterm.js) on a real telnetd that the proxy wraps in respawn mode: a command and its output,
// twice, across a disconnect. A failure saves a screenshot and prints where.
import assert from "node:assert/strict";
import { chromiumAvailable, launchChromium, screenshotOnFailure } from "../helpers/browser.ts";
import { PEERS } from "../helpers/paths.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";
import { EXPECTED, VECTOR, websockScenario } from "../helpers/websock_scenario.ts";

if (!chromiumAvailable) {
  console.warn("SKIP browser_pages_test: install Debian's chromium (.ci/run does)");
}

/** GNU inetutils' telnetd (Debian package inetutils-telnetd). */
const TELNETD = "/usr/sbin/telnetd";
const telnetdAvailable = (() => {
  try {
    return Deno.statSync(TELNETD).isFile;
  } catch {
    return false;
  }
})();
if (!telnetdAvailable) {
  console.warn(
    "SKIP browser_pages_test wstelnet: install Debian's inetutils-telnetd (.ci/run does)",
  );
}

Deno.test({
  name: "Chromium: Websock from /websockify/websock.js (binary, base64) and the wsecho page",
  ignore: !chromiumAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const target = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${target.port}`]);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const origin = `http://127.0.0.1:${proxy.port}`;
      await page.goto(`${origin}/websockify/wsecho.html`);
      await screenshotOnFailure(page, "websock", async () => {
        for (const protocol of ["binary", "base64"]) {
          const result = await page.evaluate(
            `(${websockScenario.toString()})(${
              JSON.stringify([`${origin}/websockify/websock.js`, `ws://127.0.0.1:${proxy.port}/`])
                .slice(1, -1)
            }, ${JSON.stringify([protocol])}, ${JSON.stringify(VECTOR)})`,
          ) as Record<string, unknown>;
          const { protocol: chosen, mode, maxBuffered, ...rest } = result;
          assert.equal(chosen, protocol);
          assert.equal(mode, protocol);
          assert.deepEqual(rest, EXPECTED, protocol);
          // drain(256 KiB) before each 64 KiB message: the browser never held much more.
          assert.ok(
            (maxBuffered as number) <= 256 * 1024 + 65536 * 4,
            `maxBuffered ${maxBuffered}`,
          );
        }
      });

      // The page itself: typed text goes out as UTF-8 and comes back; base64 from the query string.
      for (const protocol of ["binary", "base64"]) {
        const echoPage = await browser.newPage();
        await echoPage.goto(`${origin}/websockify/wsecho.html?autoconnect=1&protocol=${protocol}`);
        await screenshotOnFailure(echoPage, "wsecho", async () => {
          await echoPage.waitForFunction(
            "document.getElementById('status').textContent.startsWith('Connected')",
            undefined,
            { timeout: 10000 },
          );
          assert.match(
            await echoPage.textContent("#status") ?? "",
            new RegExp(`\\(${protocol}\\)$`),
          );
          await echoPage.fill("#message", `héllo ${protocol} ✓`);
          await echoPage.click("#sendButton");
          await echoPage.fill("#message", "de ad 00 ff");
          await echoPage.click("#sendBytesButton");
          await echoPage.waitForFunction(
            "window.wsecho.counts.received === window.wsecho.counts.sent",
            undefined,
            { timeout: 10000 },
          );
          const log = await echoPage.textContent("#log") ?? "";
          assert.match(log, new RegExp(`< héllo ${protocol} ✓\n`));
          assert.match(log, /> \[4 bytes\]\n< \[4 bytes: de ad 00 ff\]\n/);
          await echoPage.click("#disconnectButton");
          await echoPage.waitForFunction(
            "document.getElementById('status').textContent.startsWith('Disconnected')",
            undefined,
            { timeout: 10000 },
          );
        });
      }
      assert.ok(proxy.log.has(/"GET \/websockify\/websock\.js HTTP\/1\.1" 200 -/));

      // wstelnet on a line service that never negotiates (this echo target): the page echoes and edits the
      // line itself and sends it on Enter, CR LF ended; the service's echo follows it.
      const telnetPage = await browser.newPage();
      await telnetPage.goto(`${origin}/websockify/wstelnet.html?autoconnect=1`);
      await screenshotOnFailure(telnetPage, "wstelnet-line", async () => {
        await telnetPage.waitForFunction(
          "document.getElementById('status').textContent.startsWith('Connected')",
          undefined,
          { timeout: 10000 },
        );
        await telnetPage.click("#terminal");
        await telnetPage.keyboard.type("helo wxyz");
        for (let i = 0; i < 3; i++) await telnetPage.keyboard.press("Backspace");
        await telnetPage.keyboard.type("orld ✓");
        await telnetPage.keyboard.press("Enter");
        await telnetPage.waitForFunction(
          "window.wstelnet.lines().filter((line) => line === 'helo world ✓').length === 2",
          undefined,
          { timeout: 10000 },
        );
        assert.equal(await telnetPage.evaluate("window.wstelnet.telnet.negotiated"), false);
      });
    } finally {
      await browser.close();
      await proxy.stop();
      await target.close();
    }
  },
});

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test({
  name:
    "Chromium: wstelnet on a real telnetd wrapped with --wrap-mode=respawn, twice across a disconnect",
  ignore: !chromiumAvailable || !telnetdAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const port = freePort();
    // inetutils' telnetd serves the connection on its standard input (it has no -debug PORT of its own):
    // inetd_once.py listens on PORT, hands it one connection, and exits with it; respawn starts the next.
    // -E /bin/sh skips the login (no account or password needed in CI).
    const proxy = new ProxyProcess([
      String(port),
      "--wrap-mode=respawn",
      "--",
      "python3",
      `${PEERS}inetd_once.py`,
      String(port),
      TELNETD,
      "-h",
      "-E",
      "/bin/sh",
    ]);
    const browser = await launchChromium();
    try {
      await proxy.port();
      const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
      await page.goto(`http://127.0.0.1:${port}/websockify/wstelnet.html?autoconnect=1`);
      const lines = () => page.evaluate("window.wstelnet.lines()") as Promise<string[]>;
      const size = () =>
        page.evaluate("[window.wstelnet.terminal.rows, window.wstelnet.terminal.cols]") as Promise<
          number[]
        >;
      /** Waits for a line that is exactly `text` (the shell's output, not the echoed command). */
      const waitForLine = async (text: string, from: number) => {
        const started = Date.now();
        while (Date.now() - started < 15000) {
          if ((await lines()).slice(from).some((line) => line.trim() === text)) return;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        throw new Error(`no line '${text}' on the terminal:\n${(await lines()).join("\n")}`);
      };
      const waitForStatus = (prefix: string) =>
        page.waitForFunction(
          `document.getElementById('status').textContent.startsWith(${JSON.stringify(prefix)})`,
          undefined,
          { timeout: 15000 },
        );
      /** Types a command in the terminal and waits for the output line it must print. */
      const run = async (command: string, output: string) => {
        const from = (await lines()).findLastIndex((line) => line.trim() !== "");
        await page.click("#terminal");
        await page.keyboard.type(command);
        await page.keyboard.press("Enter");
        await waitForLine(output, Math.max(from, 0));
      };
      const prompt = async (from: number) => {
        const started = Date.now();
        while (Date.now() - started < 15000) {
          if ((await lines()).slice(from).some((line) => /[#$] ?$/.test(line))) return;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        throw new Error(`no shell prompt:\n${(await lines()).join("\n")}`);
      };

      await screenshotOnFailure(page, "wstelnet", async () => {
        await waitForStatus("Connected");
        await prompt(0);
        const token = crypto.randomUUID().slice(0, 8);
        const [rows, cols] = await size();
        // $((6*7)) shows the shell ran it; stty size shows NAWS; $TERM shows TERMINAL-TYPE.
        await run(
          `echo "hello-$((6*7))-${token} $(stty size) $TERM"`,
          `hello-42-${token} ${rows} ${cols} xterm`,
        );
        // A smaller window: xterm.js refits, the page sends the new size (NAWS) at once.
        await page.setViewportSize({ width: 700, height: 450 });
        await page.waitForFunction(`window.wstelnet.terminal.cols < ${cols}`, undefined, {
          timeout: 10000,
        });
        const [rows2, cols2] = await size();
        await run(`echo "size-$(stty size)"`, `size-${rows2} ${cols2}`);

        await page.click("#disconnectButton");
        await waitForStatus("Disconnected");
        // telnetd exits with its connection; respawn starts the next one.
        await waitFor(
          () => (proxy.stderr.match(/Starting '/g)?.length ?? 0) >= 2,
          10000,
          "the respawn",
        );
        // The new session's prompt comes after the "[disconnected]" line.
        const mark = (await lines()).findLastIndex((line) => line.includes("[disconnected]")) + 1;
        await page.click("#connectButton");
        await waitForStatus("Connected");
        await prompt(mark);
        const token2 = crypto.randomUUID().slice(0, 8);
        await run(`echo "again-$((6*7))-${token2}"`, `again-42-${token2}`);
        await page.click("#disconnectButton");
        await waitForStatus("Disconnected");
      });
    } finally {
      await browser.close();
      await proxy.stop();
    }
  },
});

Deno.test({
  name:
    "Chromium: the wstest page runs the integrity test through the proxy (binary, base64) with zero errors",
  ignore: !chromiumAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const target = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${target.port}`]);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const origin = `http://127.0.0.1:${proxy.port}`;
      await page.goto(`${origin}/websockify/wstest.html`);
      await screenshotOnFailure(page, "wstest", async () => {
        for (const protocol of ["binary", "base64"]) {
          const report = await page.evaluate(
            (options) =>
              (globalThis as unknown as { wstest: { run(o: unknown): unknown } }).wstest.run(
                options,
              ),
            {
              url: `ws://127.0.0.1:${proxy.port}/websockify`,
              count: 2000,
              delayMs: 0,
              size: { min: 10, max: 3000 },
              protocol,
              timeoutMs: 30000,
            },
          ) as {
            sent: number;
            good: number;
            errors: number;
            ended: string;
            errorSamples: string[];
          };
          assert.deepEqual(
            [report.ended, report.sent, report.good, report.errors],
            ["done", 2000, 2000, 0],
            `${protocol}: ${JSON.stringify(report.errorSamples)}`,
          );
        }
        // What the page shows is what it counted.
        assert.equal(await page.textContent("#good"), "2000");
        assert.equal(await page.textContent("#errorCount"), "0");
      });
    } finally {
      await browser.close();
      await proxy.stop();
      await target.close();
    }
  },
});
