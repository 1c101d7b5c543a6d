// websockify as a library (mod.ts), and the programs built only on it (tools/wsecho.ts, tools/wstest.ts): real
// WebSocket clients (Deno's own, npm ws), real TCP targets, the proxy's command line as the middle.
import assert from "node:assert/strict";
import WebSocketClient from "ws";
import {
  type ByteStream,
  OPTION_FLAGS,
  StartFailure,
  UsageError,
  websockify,
  writeAll,
} from "../../mod.ts";
import { OPTIONS } from "../../lib/cli.ts";
import { makeCerts, serverCertArgs } from "../helpers/certs.ts";
import { ROOT } from "../helpers/paths.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline } from "../helpers/waits.ts";

/** Sends `messages` over one Deno WebSocket and collects what comes back until `expected` bytes are in. */
async function roundTrip(
  url: string,
  messages: Uint8Array[],
  expected: number,
): Promise<Uint8Array> {
  const ws = new WebSocket(url, ["binary"]);
  ws.binaryType = "arraybuffer";
  const received: number[] = [];
  try {
    await deadline(
      new Promise<void>((resolve, reject) => {
        ws.onopen = () => messages.forEach((message) => ws.send(message));
        ws.onmessage = (event) => {
          received.push(...new Uint8Array(event.data as ArrayBuffer));
          if (received.length >= expected) resolve();
        };
        ws.onerror = () => reject(new Error("WebSocket error"));
      }),
      10000,
      "the echo",
    );
  } finally {
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await deadline(closed, 5000, "the close");
  }
  return Uint8Array.from(received);
}

Deno.test("library: websockify() proxies to a TCP target, with options as typed values and lines to a function", async () => {
  const target = echoTarget();
  const lines: string[] = [];
  const proxy = await websockify({
    listen: "127.0.0.1:0",
    target: `127.0.0.1:${target.port}`,
    verbose: true,
    heartbeat: 0,
    log: (line) => lines.push(line),
  });
  try {
    assert.equal(proxy.url, `ws://127.0.0.1:${proxy.port}/`);
    const sent = new TextEncoder().encode("through the library");
    assert.deepEqual(await roundTrip(proxy.url + "websockify", [sent], sent.length), sent);
  } finally {
    assert.equal(await proxy.shutdown(), 0);
    await target.close();
  }
  assert.ok(lines.some((line) => /proxying from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+/.test(line)));
  assert.ok(lines.some((line) => /session ended by client/.test(line)), lines.join("\n"));
});

Deno.test("library: an in-process target serves each session as a byte stream; sessions stay apart", async () => {
  const sessions: string[] = [];
  /** Answers each session with its path, then echoes upper-cased. */
  async function shout(stream: ByteStream, session: { path: string; client: string }) {
    sessions.push(`${session.client} ${session.path}`);
    await writeAll(stream, new TextEncoder().encode(`[${session.path}]`));
    const buffer = new Uint8Array(1024);
    for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
      await writeAll(
        stream,
        new TextEncoder().encode(new TextDecoder().decode(buffer.subarray(0, n)).toUpperCase()),
      );
    }
  }
  await using server = await websockify({ listen: 0, target: shout, log: "none" });
  const replies = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const text = `session ${i} says hello`;
      const expected = `[/s${i}]${text.toUpperCase()}`;
      const reply = await roundTrip(
        `${server.url}s${i}`,
        [new TextEncoder().encode(text)],
        expected.length,
      );
      return [new TextDecoder().decode(reply), expected];
    }),
  );
  for (const [reply, expected] of replies) assert.equal(reply, expected);
  assert.equal(sessions.length, 20);
  assert.ok(sessions.every((line) => /^127\.0\.0\.1 \/s\d+$/.test(line)));
});

Deno.test("library: an in-process target that returns ends the session with 1000 after its bytes; one that throws is logged", async () => {
  const lines: string[] = [];
  await using server = await websockify({
    listen: 0,
    target: async (stream, session) => {
      if (session.path === "/fail") throw new Error("no desktop for you");
      await writeAll(stream, new TextEncoder().encode("bye"));
    },
    log: (line) => lines.push(line),
  });
  const client = new WebSocketClient(server.url + "ok", ["binary"]);
  const got: string[] = [];
  const closed = new Promise<[number, string]>((resolve) =>
    client.on("close", (code: number, reason: Buffer) => resolve([code, reason.toString()]))
  );
  client.on("message", (data: Buffer) => got.push(data.toString()));
  assert.deepEqual(await deadline(closed, 5000, "close"), [1000, "Target closed"]);
  assert.deepEqual(got, ["bye"]);
  const failing = new WebSocketClient(server.url + "fail", ["binary"]);
  await deadline(new Promise((resolve) => failing.on("close", resolve)), 5000, "close");
  assert.ok(lines.some((line) => /in-process target failed: no desktop for you/.test(line)));
});

Deno.test("library: mistakes are the command line's errors, before anything listens", async () => {
  await assert.rejects(websockify({ target: "h:1" }), (error) => {
    assert.ok(error instanceof UsageError);
    assert.match(error.message, /Too few arguments/);
    return true;
  });
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    websockify({ listen: 0, target: "h:1", colour: "blue" } as any),
    /unknown option 'colour'/,
  );
  await assert.rejects(
    websockify({ listen: 0, target: "h:1", wrapMode: "sometimes" as "exit" }),
    /invalid choice: 'sometimes'/,
  );
  await assert.rejects(
    websockify({ listen: 0, target: "h:1", web: "/nonexistent/web", log: "none" }),
    (error) => error instanceof StartFailure && /--web '\/nonexistent\/web'/.test(error.message),
  );
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await assert.rejects(
      websockify({ listen: `127.0.0.1:${taken.addr.port}`, target: "h:1", log: "none" }),
      (error) =>
        error instanceof StartFailure && /cannot listen on 127\.0\.0\.1:\d+/.test(error.message),
    );
  } finally {
    taken.close();
  }
});

Deno.test("library: every command-line option a program can use has its typed option", () => {
  // Process-wide options stay with the command line; --ssl-ciphers is refused there anyway.
  const commandLineOnly = [
    "help",
    "daemon",
    "inetd",
    "prefer-ipv6",
    "libserver",
    "target-config",
    "ssl-ciphers",
    "workers",
  ];
  const typed = new Set(Object.values(OPTION_FLAGS).filter((flag) => flag !== undefined));
  for (const option of OPTIONS) {
    if (commandLineOnly.includes(option.long)) continue;
    assert.ok(typed.has(option.long), `--${option.long} has no key in WebsockifyOptions`);
  }
});

Deno.test("tools import nothing of the project but mod.ts (they are the library's proof)", async () => {
  for (const name of ["wsecho.ts", "wstest.ts"]) {
    const text = await Deno.readTextFile(`${ROOT}tools/${name}`);
    const imports = [...text.matchAll(/from\s+"([^"]+)"/g)].map((match) => match[1]);
    assert.ok(imports.length > 0);
    for (const specifier of imports) {
      assert.ok(
        specifier === "../mod.ts" || specifier.startsWith("node:"),
        `${name}: ${specifier}`,
      );
    }
  }
});

/** Runs a tools/ program and returns its exit code and output. */
async function tool(name: string, args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--frozen", `${ROOT}tools/${name}`, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test("wstest through the proxy: thousands of records over ws and wss to a TCP echo, and base64, with zero errors", async () => {
  const certs = await makeCerts();
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    ...serverCertArgs(certs),
  ], { env: { DENO_CERT: certs.ca } });
  try {
    const port = await proxy.port();
    for (
      const [url, extra] of [
        [`ws://127.0.0.1:${port}/websockify`, []],
        [`wss://localhost:${port}/websockify`, []],
        [`ws://127.0.0.1:${port}/websockify`, ["--protocol", "base64", "--count", "1000"]],
      ] as const
    ) {
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "--frozen",
          `${ROOT}tools/wstest.ts`,
          "--json",
          "--count",
          "4000",
          "--size",
          "10-4000",
          ...extra,
          url,
        ],
        env: { DENO_CERT: certs.ca },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = JSON.parse(new TextDecoder().decode(run.stdout));
      assert.equal(report.errors, 0, `${url}: ${JSON.stringify(report.errorSamples)}`);
      assert.equal(report.ended, "done");
      assert.equal(report.good, report.sent);
      assert.ok(report.sent >= 1000);
      assert.equal(run.code, 0);
    }
  } finally {
    await proxy.stop();
    await target.close();
    await certs.remove();
  }
});

Deno.test("wsecho and wstest --serve: the library's own servers pass the integrity test both ways", async () => {
  const echoServer = new ProxyLikeProgram("wsecho.ts", ["127.0.0.1:0"]);
  const testServer = new ProxyLikeProgram("wstest.ts", ["--serve", "--delay", "1", "127.0.0.1:0"]);
  try {
    const echoPort = await echoServer.port();
    const testPort = await testServer.port();
    const echoed = await tool("wstest.ts", [
      "--json",
      "--count",
      "3000",
      `ws://127.0.0.1:${echoPort}/`,
    ]);
    const echoReport = JSON.parse(echoed.stdout);
    assert.deepEqual([echoReport.errors, echoReport.good, echoed.code], [0, 3000, 0]);
    const both = await tool("wstest.ts", [
      "--json",
      "--count",
      "300",
      "--delay",
      "1",
      `ws://127.0.0.1:${testPort}/`,
    ]);
    const bothReport = JSON.parse(both.stdout);
    assert.deepEqual([bothReport.errors, bothReport.ended, both.code], [0, "done", 0]);
    await echoServer.stop();
    const serverLog = await testServer.stop();
    assert.match(serverLog, /session over: \d+ records sent, 300 good records received, 0 errors/);
  } finally {
    await echoServer.stop();
    await testServer.stop();
  }
});

Deno.test("wstest finds a corrupted byte (it can fail)", async () => {
  // A deliberately broken echo: it alters one digit of record 2.
  let seen = 0;
  await using broken = await websockify({
    listen: 0,
    log: "none",
    target: async (stream) => {
      const buffer = new Uint8Array(64 * 1024);
      for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
        const chunk = buffer.slice(0, n);
        for (let i = 1; i < chunk.length; i++) {
          if (chunk[i] !== 0x24) continue;
          if (++seen === 3) chunk[i - 1] = chunk[i - 1] === 0x39 ? 0x38 : chunk[i - 1] + 1; // record 2's last digit
        }
        await writeAll(stream, chunk);
      }
    },
  });
  const run = await tool("wstest.ts", [
    "--json",
    "--count",
    "20",
    "--size",
    "50",
    "--timeout",
    "3",
    broken.url,
  ]);
  const report = JSON.parse(run.stdout);
  assert.equal(run.code, 1);
  assert.ok(report.errors >= 1);
  assert.ok(
    report.errorSamples.some((sample: string) => /record 2: checksum/.test(sample)),
    JSON.stringify(report.errorSamples),
  );
});

/** A tools/ server program with its output collected; `port()` reads the banner. */
class ProxyLikeProgram {
  readonly #child: Deno.ChildProcess;
  #output = "";
  readonly #reading: Promise<void>;
  #stopped: Promise<string> | undefined;

  constructor(name: string, args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--frozen", `${ROOT}tools/${name}`, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const decoder = new TextDecoder();
    this.#reading = Promise.all([this.#child.stdout, this.#child.stderr].map(async (stream) => {
      for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
    })).then(() => {});
  }

  async port(): Promise<number> {
    for (let i = 0; i < 150; i++) {
      const match = this.#output.match(/Listen on .*:(\d+)/);
      if (match) return Number(match[1]);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no banner:\n${this.#output}`);
  }

  /** SIGTERM, then the exit; returns everything it printed. */
  stop(): Promise<string> {
    this.#stopped ??= (async () => {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* already gone */ }
      await deadline(this.#child.status, 10000, "tool exit");
      await deadline(this.#reading, 5000, "tool output");
      return this.#output;
    })();
    return this.#stopped;
  }
}

Deno.test("the README's library example runs as written and prints its greeting", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const block = readme.split("<!-- library-example -->")[1]?.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(block, "the example block is in the README");
  // Next to mod.ts, as the README says.
  const file = `${ROOT}.readme-example-${Deno.pid}.ts`;
  await Deno.writeTextFile(file, block);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--frozen", file],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.equal(new TextDecoder().decode(output.stdout), "hello 127.0.0.1 at /greeting\n");
  } finally {
    await Deno.remove(file);
  }
});
