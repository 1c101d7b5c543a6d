// --log-format json with the real program: every line it writes (stderr, --log-file, syslog over UDP) during a
// run with -v (startup, sessions, refusals, errors, the stop) is one JSON object with the keys that apply; and in
// either format, at any verbosity, no token ever appears in clear.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import WebSocketClient from "ws";
import { ProxyProcess } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const TOKEN = "s3cr3t-Desk-42";
const UNKNOWN_TOKEN = "n0such-Token-77";
const DEAD_TOKEN = "d34d-Target-9";

/** Sends `text` on a fresh connection and returns what comes back until the proxy closes (bounded). */
function exchange(port: number, text: string): Promise<string> {
  return deadline(
    new Promise<string>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      let received = "";
      socket.on("connect", () => socket.write(text));
      socket.on("data", (chunk: Uint8Array) => {
        received += new TextDecoder("latin1").decode(chunk);
        // A 101 stays open: the client closes it.
        if (received.startsWith("HTTP/1.1 101") && received.includes("\r\n\r\n")) socket.end();
      });
      socket.on("close", () => resolve(received));
      socket.on("error", () => resolve(received));
    }),
    10_000,
    `an exchange: ${text.split("\r\n")[0]}`,
  );
}

function upgradeHead(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** One WebSocket echo session with npm ws. */
function session(url: string): Promise<void> {
  return deadline(
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocketClient(url, ["binary"]);
      ws.on("open", () => ws.send(new TextEncoder().encode("hello json")));
      ws.on("message", () => ws.close(1000));
      ws.on("close", () => resolve());
      ws.on("error", reject);
    }),
    10_000,
    "a session",
  );
}

interface Run {
  stderr: string;
  logFile: string;
  syslog: string[];
}

/** One run of the program with every kind of line: startup, sessions, refusals, errors, the stop. */
async function runScenario(format: "text" | "json", verbose: boolean): Promise<Run> {
  const echo = echoTarget();
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = dead.addr.port;
  dead.close();
  const dir = await Deno.makeTempDir();
  const tokens = `${dir}/tokens`;
  await Deno.writeTextFile(
    tokens,
    `${TOKEN}: 127.0.0.1:${echo.port}\n${DEAD_TOKEN}: 127.0.0.1:${deadPort}\n`,
  );
  const udp = dgram.createSocket("udp4");
  const syslog: string[] = [];
  udp.on("message", (message: Uint8Array) => syslog.push(new TextDecoder().decode(message)));
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const proxy = new ProxyProcess([
    `--log-format=${format}`,
    ...(verbose ? ["-v"] : []),
    `--log-file=${dir}/log`,
    `--syslog=127.0.0.1:${udp.address().port}`,
    "--token-plugin=TokenFile",
    `--token-source=${tokens}`,
    "127.0.0.1:0",
  ]);
  try {
    const port = await proxy.port();
    const base = `ws://127.0.0.1:${port}`;
    await session(`${base}/websockify?token=${TOKEN}`);
    await session(`${base}/websockify?%74oken=${TOKEN}&x=1`);
    // Refusals and errors, each carrying a token somewhere.
    assert.equal(await exchange(port, upgradeHead(`/?token=${UNKNOWN_TOKEN}`)), "");
    assert.equal(await exchange(port, upgradeHead("/no-token")), "");
    assert.match(
      await exchange(port, upgradeHead(`/?token=${DEAD_TOKEN}`)),
      /^HTTP\/1\.1 101/,
    );
    assert.match(
      await exchange(port, `POST /?token=${TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n`),
      /^HTTP\/1\.1 405/,
    );
    assert.match(
      await exchange(port, `GET /?token=${TOKEN} HTTP/1.1 extra\r\nHost: x\r\n\r\n`),
      /^HTTP\/1\.1 400/,
    );
    assert.match(
      await exchange(
        port,
        upgradeHead(`/?token=${TOKEN}`).replace("Version: 13", "Version: 8"),
      ),
      /^HTTP\/1\.1 426/,
    );
    assert.match(
      await exchange(
        port,
        `GET /websockify/websock.js?token=${TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      ),
      /^HTTP\/1\.1 200/,
    );
    await waitFor(
      () => (proxy.stderr.match(/session ended by/g) ?? []).length >= 2,
      5000,
      "2 session summaries",
    );
    await waitFor(() => /Failed to connect/.test(proxy.stderr), 5000, "the failed connect");
    const status = await proxy.stop();
    assert.equal(status.code, 0, proxy.stderr);
    await waitFor(() => syslog.some((m) => /shutting down/.test(m)), 5000, "the last syslog line");
    return { stderr: proxy.stderr, logFile: await Deno.readTextFile(`${dir}/log`), syslog };
  } finally {
    if (!proxy.exited) await proxy.stop();
    udp.close();
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The lines of a text (stderr, a file), without the last empty one. */
function linesOf(text: string): string[] {
  return text.split("\n").filter((line, i, all) => line !== "" || i < all.length - 1);
}

/** A syslog message without its RFC 5424 header. */
function syslogMessage(message: string): string {
  const match = message.match(/^<\d+>1 \S+ \S+ websockify \d+ - - (.*)$/s);
  assert.ok(match, message);
  return match[1];
}

function assertNoToken(run: Run, what: string): void {
  for (
    const [where, text] of [
      ["stderr", run.stderr],
      ["--log-file", run.logFile],
      ["syslog", run.syslog.join("\n")],
    ]
  ) {
    for (const token of [TOKEN, UNKNOWN_TOKEN, DEAD_TOKEN]) {
      assert.ok(!text.includes(token), `${what}: ${token} in ${where}:\n${text}`);
      // Nor a recognizable piece of it.
      assert.ok(!text.includes(token.slice(0, 8)), `${what}: part of ${token} in ${where}`);
    }
  }
}

Deno.test("--log-format json: every line of a -v run parses, with the keys that apply; no token anywhere", async () => {
  const run = await runScenario("json", true);
  assertNoToken(run, "json -v");
  const stderrLines = linesOf(run.stderr);
  const fileLines = linesOf(run.logFile);
  const syslogLines = run.syslog.map(syslogMessage);
  assert.ok(stderrLines.length > 20, run.stderr);
  // The same lines everywhere (the log file and syslog are opened after the first startup line or two).
  assert.deepEqual(fileLines, stderrLines.slice(stderrLines.length - fileLines.length));
  assert.deepEqual(syslogLines, fileLines);
  const objects = stderrLines.map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`not JSON: ${line}`);
    }
  });
  for (const object of objects) {
    assert.match(object.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, JSON.stringify(object));
    assert.ok(["debug", "info", "warning", "error"].includes(object.level), object.level);
    assert.equal(typeof object.msg, "string");
    for (const [key, value] of Object.entries(object)) {
      const type = [
          "client_port",
          "status",
          "bytes_up",
          "bytes_down",
          "duration_ms",
          "close_code",
        ].includes(key)
        ? "number"
        : "string";
      assert.equal(typeof value, type, `${key} in ${JSON.stringify(object)}`);
    }
    // A request's path is always redacted.
    if (object.path?.includes("oken=")) assert.match(object.path, /oken=#[0-9a-f]{8}/);
  }
  const find = (pattern: RegExp) => {
    const found = objects.filter((object) => pattern.test(object.msg));
    assert.ok(found.length > 0, `no line matches ${pattern}`);
    return found;
  };
  const keys = (object: Record<string, unknown>, ...names: string[]) => {
    for (const name of names) {
      assert.ok(object[name] !== undefined, `${name} missing in ${JSON.stringify(object)}`);
    }
  };
  find(/^WebSocket server settings:$/);
  find(/Listen on 127\.0\.0\.1:\d+/);
  const summaries = find(/session ended by/);
  assert.equal(summaries.length, 2);
  for (const summary of summaries) {
    keys(
      summary,
      "client",
      "client_port",
      "target",
      "token_hash",
      "path",
      "bytes_up",
      "bytes_down",
      "duration_ms",
      "close_code",
      "closed_by",
    );
    assert.equal(summary.client, "127.0.0.1");
    assert.equal(summary.bytes_up, "hello json".length);
    assert.equal(summary.bytes_down, "hello json".length);
    assert.match(summary.token_hash, /^#[0-9a-f]{8}$/);
    assert.equal(summary.level, "info");
    assert.equal(summary.close_code, 1000);
  }
  for (const line of find(/WebSocket connection$/)) {
    keys(line, "client", "client_port", "path", "target");
  }
  for (const line of find(/^connecting to: /)) keys(line, "target", "token_hash");
  keys(find(/" 101 -$/)[0], "status", "path", "client");
  assert.equal(find(/" 101 -$/)[0].level, "debug");
  keys(find(/ not found$/)[0], "token_hash", "client", "path");
  keys(find(/Token not present/)[0], "client", "path");
  keys(find(/^Failed to connect to /)[0], "target", "token_hash", "client");
  for (const status of [405, 400, 426]) {
    const [line] = find(new RegExp(`^code ${status}, message`));
    assert.equal(line.status, status);
    keys(line, "client", "client_port");
    if (status !== 400) keys(line, "path");
  }
  keys(
    find(/^"GET \/websockify\/websock\.js\?token=#[0-9a-f]{8} HTTP\/1\.1" 200 -$/)[0],
    "status",
    "path",
  );
  find(/SIGTERM received, shutting down/);
});

Deno.test("--log-format text (and json without -v): no token in any log either; text lines keep their shape", async () => {
  for (const [format, verbose] of [["text", true], ["text", false], ["json", false]] as const) {
    const run = await runScenario(format, verbose);
    assertNoToken(run, `${format}${verbose ? " -v" : ""}`);
    const lines = linesOf(run.stderr);
    if (format === "json") {
      for (const line of lines) JSON.parse(line);
      assert.ok(!lines.some((line) => JSON.parse(line).level === "debug"));
    } else {
      assert.ok(lines.every((line) => !line.startsWith("{")), run.stderr);
      assert.ok(
        lines.some((line) =>
          /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4} \d\d:\d\d:\d\d\] 127\.0\.0\.1:\d+: session ended by client \(1000 \): 10 bytes from client, 10 bytes to client, \d+\.\d\d s$/
            .test(line)
        ),
        run.stderr,
      );
      assert.ok(run.syslog.some((m) => / - - WebSocket server settings:$/.test(m)));
    }
  }
});

Deno.test("--log-format json: a failed start is a JSON line too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const proxy = new ProxyProcess([
      "--log-format=json",
      `--pid-file=${dir}/missing/dir/pid`,
      "127.0.0.1:0",
      "127.0.0.1:1",
    ]);
    const status = await proxy.status();
    assert.equal(status.code, 1);
    const lines = linesOf(proxy.stderr);
    assert.ok(lines.length >= 1, proxy.stderr);
    const last = JSON.parse(lines.at(-1)!);
    assert.equal(last.level, "error");
    assert.match(last.msg, /^error: --pid-file '.*missing\/dir\/pid': /);
    for (const line of lines) JSON.parse(line);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
