// Operations: session recording, heartbeat, run-once and timeouts, log file and syslog, daemon, inetd, traffic.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { concat, pseudoRandomBytes, RAW_CONTROL, readToEnd } from "../helpers/bytes.ts";
import { ROOT } from "../helpers/paths.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { MASK, RawClient } from "../helpers/raw_client.ts";
import { datagramReceiver, echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("--record: FILE.<connection number> in noVNC's format; evaluated as JavaScript it gives back every byte, both ways", async () => {
  const dir = await Deno.makeTempDir();
  // The target greets, then echoes: both directions carry every byte value.
  const greeting = concat([text("RFB 003.008\n"), new Uint8Array(256).map((_, i) => i)]);
  const target = new TcpTarget(async (conn) => {
    await writeAll(conn, greeting);
    const buffer = new Uint8Array(65536);
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) await writeAll(conn, buffer.subarray(0, n));
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--record=${dir}/session`]);
  try {
    // Connection 1: plain HTTP (counted, not recorded). Connection 2: the WebSocket session.
    const http = await RawClient.connect(proxy.port);
    await http.request("GET / HTTP/1.1\r\n\r\n");
    http.close();
    const client = await RawClient.open(proxy.port);
    assert.deepEqual(await client.readData(greeting.length), greeting);
    const sent = [
      text("it's a \\ test\r\n\t"),
      pseudoRandomBytes(5000, 3),
      new Uint8Array([0, 0x7f, 0x80, 0xff]),
    ];
    for (const message of sent) {
      await client.sendFrame(Opcode.Binary, message);
      assert.deepEqual(await client.readData(message.length), message);
    }
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
    await client.nextClose();
    client.close();
    await waitFor(() => proxy.log.has(/session ended/), 3000, "session end");
    assert.ok(proxy.log.has(new RegExp(`opening record file: ${dir}/session\\.2`)));

    const file = await Deno.readTextFile(`${dir}/session.2`);
    assert.ok(file.startsWith("var VNC_frame_data = [\n"));
    assert.ok(file.endsWith("'EOF'];\n"));
    // Load it the way noVNC's playback does: as a script defining VNC_frame_data.
    const frames = new Function(`${file}; return VNC_frame_data;`)() as string[];
    assert.equal(frames.at(-1), "EOF");
    const fromClient: number[] = [];
    const fromTarget: number[] = [];
    let lastTime = 0;
    for (const frame of frames.slice(0, -1)) {
      const direction = frame[0];
      const end = frame.indexOf(direction, 1);
      const time = Number(frame.slice(1, end));
      assert.ok(
        Number.isInteger(time) && time >= lastTime,
        `timestamps grow: ${frame.slice(0, 12)}`,
      );
      lastTime = time;
      const bytes = [...frame.slice(end + 1)].map((c) => c.charCodeAt(0));
      assert.ok(bytes.every((b) => b < 256));
      (direction === "}" ? fromClient : direction === "{" ? fromTarget : assert.fail(frame)).push(
        ...bytes,
      );
    }
    const clientBytes = concat(sent);
    assert.deepEqual(new Uint8Array(fromClient), clientBytes);
    assert.deepEqual(new Uint8Array(fromTarget), concat([greeting, clientBytes]));
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--record never follows a symbolic link nor overwrites a file: that session is not recorded, it still works", async () => {
  const dir = await Deno.makeTempDir();
  const victim = `${dir}/victim.txt`;
  await Deno.writeTextFile(victim, "precious");
  await Deno.symlink(victim, `${dir}/session.1`); // a link to an existing file
  await Deno.writeTextFile(`${dir}/session.2`, "an earlier recording");
  await Deno.symlink(`${dir}/created-by-link`, `${dir}/session.3`); // a dangling link
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--record=${dir}/session`]);
  try {
    for (let n = 1; n <= 4; n++) {
      const client = await RawClient.open(proxy.port);
      await client.sendFrame(Opcode.Binary, `session ${n}`);
      assert.equal(new TextDecoder().decode(await client.readData(9)), `session ${n}`);
      await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
      await client.nextClose();
      client.close();
    }
    await waitFor(
      () => proxy.log.lines.filter((line) => /session ended/.test(line)).length === 4,
      5000,
      "four session ends",
    );
    assert.equal(await Deno.readTextFile(victim), "precious");
    assert.ok((await Deno.lstat(`${dir}/session.1`)).isSymlink);
    assert.equal(await Deno.readTextFile(`${dir}/session.2`), "an earlier recording");
    await assert.rejects(Deno.lstat(`${dir}/created-by-link`), Deno.errors.NotFound);
    for (const n of [1, 2, 3]) {
      assert.ok(
        proxy.log.has(
          new RegExp(`cannot open the record file: '${dir}/session\\.${n}' already exists`),
        ),
        proxy.log.lines.join("\n"),
      );
    }
    // The next free number is recorded as usual.
    assert.ok(proxy.log.has(new RegExp(`opening record file: ${dir}/session\\.4`)));
    const recorded = await Deno.readTextFile(`${dir}/session.4`);
    assert.match(
      recorded,
      /^var VNC_frame_data = \[\n(.*\n)*'\}\d+\}session 4',\n(.*\n)*'EOF'\];\n$/,
    );
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--heartbeat: empty pings; a client that answers stays, one that does not is closed as dead", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--heartbeat=1"]);
  try {
    const alive = await RawClient.open(proxy.port);
    const silent = await RawClient.open(proxy.port);
    const started = performance.now();
    // The live client answers pings as browsers do.
    let pings = 0;
    const answering = (async () => {
      while (pings < 3) {
        const event = await alive.next(5000);
        if (event?.kind === "ping") {
          assert.equal(event.payload.length, 0);
          pings++;
          await alive.sendFrame(Opcode.Pong, event.payload);
        }
      }
    })();
    // The silent one reads nothing and answers nothing: after two unanswered pings, the third tick closes it.
    const events: string[] = [];
    let event;
    while ((event = await silent.next(8000)) !== undefined) events.push(event.kind);
    const elapsed = performance.now() - started;
    assert.deepEqual(events, ["ping", "ping"]);
    assert.ok(elapsed > 2500 && elapsed < 6000, `closed after ${elapsed} ms`);
    await deadline(answering, 8000, "three answered pings");
    await alive.sendFrame(Opcode.Binary, "still here");
    assert.equal(new TextDecoder().decode(await alive.readData(10)), "still here");
    alive.close();
    silent.close();
    assert.ok(proxy.log.has(/session ended by heartbeat \(1006 No answer to 2 heartbeat pings\)/));
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--heartbeat also ends a session whose client vanished while its target stopped reading", async () => {
  const release = Promise.withResolvers<void>();
  const stalled = new TcpTarget(async () => await release.promise); // accepts, never reads
  // A target that takes nothing for 2 s counts as stuck here (30 s by default).
  const proxy = await startProxy([`127.0.0.1:${stalled.port}`, "--heartbeat=1"], {
    stuckTarget: 2000,
  });
  try {
    const client = await RawClient.open(proxy.port);
    const frame = encodeFrame(Opcode.Binary, new Uint8Array(65536), { mask: MASK });
    // Fill every buffer on the way until the proxy's pump is stuck writing to the target.
    await Promise.race([
      (async () => {
        for (let i = 0; i < 400; i++) await writeAll(client.conn, frame);
      })().catch(() => {}),
      sleep(1500),
    ]);
    client.close();
    await waitFor(() => proxy.log.has(/session ended by heartbeat/), 8000, "the session's end");
  } finally {
    await proxy.stop();
    release.resolve();
    await stalled.close();
  }
});

Deno.test("--run-once: plain HTTP does not count; the first WebSocket session's end stops the proxy", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--run-once"]);
  try {
    const port = await proxy.port();
    const http = await RawClient.connect(port);
    assert.match(await http.request("GET / HTTP/1.1\r\n\r\n"), /405/);
    http.close();
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "once");
    await client.readData(4);
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
    await client.nextClose();
    client.close();
    assert.equal((await proxy.status()).code, 0);
    assert.match(proxy.stderr, /127\.0\.0\.1: exiting due to --run-once/);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--timeout: the listener closes after N s, the open session goes on, then the proxy exits", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--timeout=1"]);
  try {
    const port = await proxy.port();
    const client = await RawClient.open(port);
    await waitFor(
      () => /listener exit due to --timeout 1/.test(proxy.stderr),
      4000,
      "timeout line",
    );
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    await client.sendFrame(Opcode.Binary, "after the timeout");
    assert.equal(new TextDecoder().decode(await client.readData(17)), "after the timeout");
    assert.ok(!proxy.exited);
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
    await client.nextClose();
    client.close();
    assert.equal((await proxy.status(5000)).code, 0);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--idle-timeout: exits after N s without a connection, not while one is open", async () => {
  const target = echoTarget();
  const proxy = new ProxyProcess(["127.0.0.1:0", `127.0.0.1:${target.port}`, "--idle-timeout=1"]);
  try {
    const port = await proxy.port();
    const client = await RawClient.open(port);
    await sleep(2200);
    assert.ok(!proxy.exited && !/idle-timeout/.test(proxy.stderr), "a session is open");
    client.close();
    const closedAt = performance.now();
    const status = await proxy.status(5000);
    assert.equal(status.code, 0);
    assert.ok(performance.now() - closedAt >= 900);
    assert.match(proxy.stderr, /listener exit due to --idle-timeout 1/);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--log-file gets the same lines as stderr; --traffic prints the legend and glyphs on stdout", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    `127.0.0.1:${target.port}`,
    `--log-file=${dir}/ws.log`,
    "--traffic",
  ]);
  try {
    const port = await proxy.port();
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "logged");
    await client.readData(6);
    client.close();
    await waitFor(() => /session ended/.test(proxy.stderr), 3000, "session end");
    await proxy.stop();
    const fileText = await Deno.readTextFile(`${dir}/ws.log`);
    for (const line of proxy.stderr.trim().split("\n")) assert.ok(fileText.includes(line), line);
    assert.match(proxy.stdout, /Traffic Legend:/);
    assert.match(proxy.stdout, /\}>\{</);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log injection: client text with newlines, ESC, CR, NUL, C1, U+2028 is escaped on stderr, --log-file and syslog: one line per event", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  const tokens = `${dir}/tokens.cfg`;
  await Deno.writeTextFile(tokens, `good: 127.0.0.1:${target.port}\n`);
  const syslogPath = `${dir}/syslog.sock`;
  const syslogListener = Deno.listen({ transport: "unix", path: syslogPath });
  const syslogText = (async () => {
    const conn = await syslogListener.accept();
    return new TextDecoder().decode(await readToEnd(conn));
  })();
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "-v",
    "--token-plugin=TokenFile",
    `--token-source=${tokens}`,
    "--auth-plugin=ExpectOrigin",
    "--auth-source=https://ok.example",
    `--log-file=${dir}/ws.log`,
    `--syslog=${syslogPath}`,
  ]);
  const forged = "127.0.0.1 - - [01/Jan/2026 00:00:00] forged";
  /** Sends raw bytes as one connection and waits for the proxy to close it. */
  const exchange = async (port: number, raw: Uint8Array) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, raw);
    await deadline(readToEnd(conn), 5000, "proxy close");
    conn.close();
  };
  const upgrade = (path: string, extra = "") =>
    text(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    );
  try {
    const port = await proxy.port();
    // 1. A percent-encoded token: newline, NUL, ESC, C1 NEL, U+2028, a bidi override, CR LF.
    await exchange(
      port,
      upgrade(
        `/?token=x%0a${encodeURIComponent(forged)}%00%1b[2J%C2%85%E2%80%A8%E2%80%AEend%0d%0a2`,
      ),
    );
    // 2. A raw request line with ESC sequences, a bare CR, NUL, DEL and a C1 byte (logged with -v, then 405).
    await exchange(
      port,
      Uint8Array.from(
        "GET /\x1b]0;title\x07\x1b[31mred\rforged\x00\x7f\x81 HTTP/1.1\r\n\r\n",
        (c) => c.charCodeAt(0),
      ),
    );
    // 3. A header value with a bare CR and ESC (ExpectOrigin logs the Origin it got).
    await exchange(port, upgrade("/?token=good", "Origin: https://evil\r\x1b[1mforged\r\n"));
    // 4. An accepted session whose path carries raw ESC and DEL (the "Path:" line).
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const client = RawClient.wrap(conn);
    await client.send(upgrade("/?token=good&\x1b[8m\x7f", "Origin: https://ok.example\r\n"));
    assert.match(await client.readHead(), /^HTTP\/1\.1 101 /);
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
    await client.nextClose();
    client.close();
    await waitFor(() => /session ended/.test(proxy.stderr), 5000, "session end");
    assert.equal((await proxy.stop()).code, 0);

    const fileText = await Deno.readTextFile(`${dir}/ws.log`);
    const syslog = await deadline(syslogText, 5000, "syslog stream EOF");
    for (
      const [name, output] of [["stderr", proxy.stderr], ["log file", fileText], ["syslog", syslog]]
    ) {
      assert.doesNotMatch(output, RAW_CONTROL, `${name}: ${JSON.stringify(output)}`);
      for (const line of output.trimEnd().split("\n")) {
        assert.doesNotMatch(
          line,
          /^(<\d+>1 \S+ \S+ websockify \d+ - - )?(\ufeff)?(127\.0\.0\.1 - - \[01\/Jan|forged)/,
          `${name}: a forged line: ${line}`,
        );
      }
    }
    const stderrLines = proxy.stderr.trimEnd().split("\n");
    assert.equal(
      fileText.trimEnd().split("\n").length,
      stderrLines.length,
      "one file line per event",
    );
    assert.equal(
      syslog.trimEnd().split("\n").length,
      stderrLines.length,
      "one syslog message per event",
    );
    const lineWith = (pattern: RegExp) => stderrLines.filter((line) => pattern.test(line));
    // The token is a secret: its line names it by the first 8 hex digits of its SHA-256, never in clear.
    const sha = (token: string) => createHash("sha256").update(token).digest("hex").slice(0, 8);
    const token = `x\n${forged}\x00\x1b[2J\x85\u2028\u202eend\r\n2`;
    assert.deepEqual(lineWith(/Token /), [`127.0.0.1: Token #${sha(token)} not found`]);
    assert.doesNotMatch(proxy.stderr, /\[2J|end\\r/, "no part of the token is logged");
    assert.equal(
      lineWith(/title/).length,
      1,
      "the -v request line: " + JSON.stringify(lineWith(/title/)),
    );
    assert.match(
      lineWith(/title/)[0],
      /"GET \/\\x1b\]0;title\\x07\\x1b\[31mred\\rforged\\x00\\x7f\\x81 HTTP\/1\.1"$/,
    );
    assert.match(lineWith(/Invalid Origin/)[0], /got 'https:\/\/evil\\r\\x1b\[1mforged'$/);
    assert.equal(
      lineWith(/Path:/)[0].split(": ").slice(1).join(": "),
      `Path: '/?token=#${sha("good")}&\\x1b[8m\\x7f'`,
    );
  } finally {
    await proxy.stop();
    syslogListener.close();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--syslog to real receivers: UDP (RFC 5424, legacy), a unix stream socket, a unix datagram socket", async () => {
  const dir = await Deno.makeTempDir();
  const udp = dgram.createSocket("udp4");
  const datagrams: string[] = [];
  udp.on("message", (message: Uint8Array) => datagrams.push(new TextDecoder().decode(message)));
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const udpPort = udp.address().port;
  const streamPath = `${dir}/stream.sock`;
  const streamListener = Deno.listen({ transport: "unix", path: streamPath });
  const streamText = (async () => {
    const conn = await streamListener.accept();
    return new TextDecoder().decode(await readToEnd(conn));
  })();
  const dgramPath = `${dir}/dgram.sock`;
  const receiver = datagramReceiver(dgramPath);
  try {
    await waitFor(() => receiver.text.includes("ready"), 5000, "datagram receiver");
    const runs = [
      new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", `--syslog=127.0.0.1:${udpPort}`]),
      new ProxyProcess([
        "127.0.0.1:0",
        "127.0.0.1:1",
        `--syslog=127.0.0.1:${udpPort}`,
        "--legacy-syslog",
      ]),
      new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", `--syslog=${streamPath}`]),
      new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", `--syslog=${dgramPath}`], {
        denoFlags: ["--unstable-net"],
      }),
    ];
    for (const run of runs) await run.port();
    await waitFor(
      () => datagrams.length >= 8 && receiver.text.includes("proxying from"),
      5000,
      "syslog messages",
    );
    for (const run of runs) await run.stop();
    const pid = runs[0].child.pid;
    assert.ok(
      datagrams.some((m) =>
        new RegExp(
          `^<14>1 \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ \\S+ websockify ${pid} - - WebSocket server settings:$`,
        ).test(m)
      ),
      datagrams.join("\n"),
    );
    assert.ok(
      datagrams.some((m) =>
        m === `<14>websockify[${runs[1].child.pid}]: WebSocket server settings:`
      ),
    );
    assert.match(
      await deadline(streamText, 5000, "stream syslog"),
      /<14>1 .* websockify \d+ - - WebSocket server settings:\n/,
    );
    assert.match(receiver.text, /<14>1 .* websockify \d+ - - {3}- proxying from/);
    const unreachable = new ProxyProcess([
      "127.0.0.1:0",
      "127.0.0.1:1",
      `--syslog=${dir}/nothing.sock`,
    ]);
    assert.equal((await unreachable.status()).code, 1);
    assert.match(unreachable.stderr, /--syslog '.*\/nothing\.sock': No such file or directory/);
  } finally {
    udp.close();
    streamListener.close();
    await receiver.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-D: the launcher returns once the daemon listens; pid file; failures are reported with exit 1", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  try {
    const launcher = new ProxyProcess([
      "-D",
      `127.0.0.1:${port}`,
      `127.0.0.1:${target.port}`,
      `--pid-file=${dir}/ws.pid`,
      `--log-file=${dir}/ws.log`,
    ]);
    const status = await launcher.status(20000);
    assert.equal(status.code, 0, launcher.stderr);
    assert.match(
      launcher.stderr,
      new RegExp(`daemon started: pid (\\d+), listening on 127\\.0\\.0\\.1:${port}`),
    );
    const pid = Number((await Deno.readTextFile(`${dir}/ws.pid`)).trim());
    assert.notEqual(pid, launcher.child.pid);
    const sid = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ")[3];
    assert.equal(Number(sid), pid, "the daemon leads its own session");
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "daemon");
    assert.equal(new TextDecoder().decode(await client.readData(6)), "daemon");
    client.close();
    Deno.kill(pid, "SIGTERM");
    await waitFor(
      () => {
        try {
          Deno.statSync(`${dir}/ws.pid`);
          return false;
        } catch {
          return true;
        }
      },
      8000,
      "pid file removal at exit",
    );
    assert.match(await Deno.readTextFile(`${dir}/ws.log`), /- Backgrounding \(daemon\)/);

    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const failing = new ProxyProcess([
      "-D",
      `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`,
      "127.0.0.1:1",
    ]);
    assert.equal((await failing.status(20000)).code, 1);
    assert.match(failing.stderr, /daemon failed to start: Opening socket failed: .*in use/i);
    taken.close();
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--inetd: standard input is the listening socket (as inetd passes it)", async () => {
  const target = echoTarget();
  // Python plays inetd: it binds a socket and starts the proxy with it as standard input.
  const inetd = new Deno.Command("python3", {
    args: [
      "-u",
      "-c",
      [
        "import signal, socket, subprocess, sys",
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)",
        "print(s.getsockname()[1])",
        "p = subprocess.Popen(sys.argv[1:], stdin=s.fileno())",
        "signal.signal(signal.SIGTERM, lambda *_: p.terminate())",
        "sys.exit(p.wait())",
      ].join("\n"),
      Deno.execPath(),
      "run",
      "-A",
      "--frozen",
      `${ROOT}main.ts`,
      "--inetd",
      `127.0.0.1:${target.port}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let errors = "";
  const reading = Promise.all([
    (async () => {
      for await (const c of inetd.stdout) output += new TextDecoder().decode(c);
    })(),
    (async () => {
      for await (const c of inetd.stderr) errors += new TextDecoder().decode(c);
    })(),
  ]);
  try {
    await waitFor(
      () => /^\d+\n/.test(output) && /Listen for inetd connections/.test(errors),
      15000,
      "inetd start",
    );
    const port = Number(output.trim());
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "via inetd");
    assert.equal(new TextDecoder().decode(await client.readData(9)), "via inetd");
    client.close();
  } finally {
    inetd.kill("SIGTERM"); // passed on to the proxy
    assert.equal((await deadline(inetd.status, 10000, "inetd exit")).code, 0, errors);
    await deadline(reading, 10000, "inetd output").catch(() => {});
    await target.close();
  }
});
