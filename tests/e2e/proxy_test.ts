// The proxy end to end, in-process, with real clients (Deno's WebSocket, npm ws, a raw byte client) and real
// TCP targets: data integrity, the handshake over the wire, every close path, base64 mode, concurrency.
import assert from "node:assert/strict";
import WebSocketNode from "ws";
import { LARGE_READ, writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { concat, pseudoRandomBytes, readToEnd } from "../helpers/bytes.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { MASK, RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget, sinkTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** Runs `body` with an echo target and the proxy in front of it; stops both. */
async function withEchoProxy(
  body: (proxy: Awaited<ReturnType<typeof startProxy>>) => Promise<void>,
  extraArgs: string[] = [],
) {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, ...extraArgs]);
  try {
    await body(proxy);
  } finally {
    await proxy.stop();
    await target.close();
  }
}

Deno.test("Deno's WebSocket: 4 MiB of random binary data echoes byte for byte; close code echoed", async () => {
  await withEchoProxy(async (proxy) => {
    const ws = new WebSocket(proxy.url + "websockify", ["binary"]);
    ws.binaryType = "arraybuffer";
    const data = pseudoRandomBytes(4 << 20, 11);
    const received: Uint8Array[] = [];
    let total = 0;
    const done = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseEvent>();
    ws.onmessage = (event) => {
      received.push(new Uint8Array(event.data as ArrayBuffer));
      total += (event.data as ArrayBuffer).byteLength;
      if (total >= data.length) done.resolve();
    };
    ws.onclose = (event) => closed.resolve(event);
    await deadline(new Promise((resolve) => ws.onopen = resolve), 5000, "open");
    assert.equal(ws.protocol, "binary");
    for (let offset = 0; offset < data.length; offset += 50000) {
      ws.send(data.subarray(offset, offset + 50000));
    }
    await deadline(done.promise, 20000, "echo");
    assert.deepEqual(concat(received), data);
    assert.ok(
      received.every((m) => m.length <= LARGE_READ),
      "each target read becomes one message, at most one large read buffer long",
    );
    ws.close(4000, "bye");
    const event = await deadline(closed.promise, 5000, "close");
    assert.equal(event.code, 4000);
    assert.equal(event.reason, "bye");
    assert.ok(event.wasClean);
    await waitFor(
      () => proxy.log.has(/session ended by client \(4000 bye\)/),
      3000,
      "summary line",
    );
    assert.ok(proxy.log.has(/4194304 bytes from client, 4194304 bytes to client/));
  });
});

Deno.test("npm ws: no subprotocol, text frames forwarded as bytes, ping gets its pong", async () => {
  await withEchoProxy(async (proxy) => {
    const ws = new WebSocketNode(proxy.url);
    await deadline(
      new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      }),
      5000,
      "open",
    );
    assert.equal(ws.protocol, "");
    const message = new Promise<Buffer>((resolve) =>
      ws.once("message", (data: Buffer) => resolve(data))
    );
    ws.send("héllo text");
    assert.equal((await deadline(message, 5000, "echo")).toString("utf8"), "héllo text");
    const pong = new Promise<Buffer>((resolve) => ws.once("pong", (data: Buffer) => resolve(data)));
    ws.ping(Buffer.from("are you there"));
    assert.equal((await deadline(pong, 5000, "pong")).toString(), "are you there");
    const closed = new Promise<[number, string]>((resolve) =>
      ws.once("close", (code: number, reason: Buffer) => resolve([code, reason.toString()]))
    );
    ws.close();
    // A close without a status is answered with 1000.
    assert.deepEqual(await deadline(closed, 5000, "close"), [1000, ""]);
  });
});

Deno.test("npm ws: base64 subprotocol encodes both ways in text frames", async () => {
  await withEchoProxy(async (proxy) => {
    const ws = new WebSocketNode(proxy.url, ["base64"]);
    await deadline(
      new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      }),
      5000,
      "open",
    );
    assert.equal(ws.protocol, "base64");
    const data = pseudoRandomBytes(3000, 4);
    const decoded: Uint8Array[] = [];
    let length = 0;
    const echoed = new Promise<void>((resolve) =>
      ws.on("message", (payload: Buffer, isBinary: boolean) => {
        assert.equal(isBinary, false, "base64 mode answers in text frames");
        decoded.push(new Uint8Array(Buffer.from(payload.toString(), "base64")));
        if ((length += decoded.at(-1)!.length) >= data.length) resolve();
      })
    );
    ws.send(Buffer.from(data).toString("base64"));
    await deadline(echoed, 5000, "echo");
    assert.deepEqual(concat(decoded), data);
    ws.close(1000);
  });
});

Deno.test("npm ws offering only unknown subprotocols is refused with 400", async () => {
  await withEchoProxy(async (proxy) => {
    const ws = new WebSocketNode(proxy.url, ["chat"]);
    const status = await deadline(
      new Promise<number>((resolve) => {
        ws.once(
          "unexpected-response",
          (_req: unknown, res: { statusCode: number }) => resolve(res.statusCode),
        );
        ws.once("error", () => resolve(-1));
      }),
      5000,
      "refusal",
    );
    assert.equal(status, 400);
    ws.terminate();
  });
});

Deno.test("handshake over the wire: the status for each malformed request", async () => {
  await withEchoProxy(async (proxy) => {
    const cases: [string, RegExp][] = [
      [
        upgradeRequest({ "Sec-WebSocket-Version": "8" }),
        /^HTTP\/1\.1 426 Unsupported protocol version 8\r\n(.*\r\n)*Sec-WebSocket-Version: 13\r\n/,
      ],
      [
        upgradeRequest({ "Sec-WebSocket-Version": "" }),
        /^HTTP\/1\.1 400 Missing Sec-WebSocket-Version header\r\n/,
      ],
      [
        upgradeRequest({ "Sec-WebSocket-Key": "" }),
        /^HTTP\/1\.1 400 Missing Sec-WebSocket-Key header\r\n/,
      ],
      [
        upgradeRequest({ "Sec-WebSocket-Key": "AAAA" }),
        /^HTTP\/1\.1 400 Invalid Sec-WebSocket-Key header\r\n/,
      ],
      [
        upgradeRequest({ "Sec-WebSocket-Protocol": "chat" }),
        /^HTTP\/1\.1 400 Invalid protocol selected\r\n/,
      ],
      [upgradeRequest({ "X-Big": "a".repeat(40000) }), /^HTTP\/1\.1 431 /],
      ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1\.1 405 Method Not Allowed\r\n/],
      ["POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", /^HTTP\/1\.1 405 /],
      ["DELETE /x HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 405 /],
      ["TRACE / HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 501 Unsupported method \("TRACE"\)\r\n/],

      ["garbage\r\n\r\n", /^HTTP\/1\.1 400 Bad request syntax/],
    ];
    for (const [request, expected] of cases) {
      const client = await RawClient.connect(proxy.port);
      const head = await client.request(request);
      assert.match(head, expected, JSON.stringify(request.slice(0, 60)));
      assert.match(head, /\r\nConnection: close\r\n/);
      await client.readRest(5000); // the server closes after an error
      client.close();
    }
    // HEAD gets the status and headers without a body.
    const headClient = await RawClient.connect(proxy.port);
    assert.match(await headClient.request("HEAD / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
    assert.equal((await headClient.readRest()).length, 0);
    headClient.close();
    assert.ok(proxy.log.has(/code 405, message Method Not Allowed/));
  });
});

Deno.test("an upgrade without Connection: Upgrade is 400 (RFC 6455 §4.2.1), with or without --web: never a 101 nor a file", async () => {
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(`${root}/index.html`, "a page");
  try {
    for (const extra of [[], [`--web=${root}`]]) {
      await withEchoProxy(async (proxy) => {
        for (const connection of ["", "keep-alive", "close"]) {
          const client = await RawClient.connect(proxy.port);
          const head = await client.request(upgradeRequest({ Connection: connection }));
          assert.match(head, /^HTTP\/1\.1 400 Missing Connection: Upgrade header\r\n/, connection);
          assert.doesNotMatch(new TextDecoder().decode(await client.readRest()), /a page/);
          client.close();
        }
        const good = await RawClient.open(proxy.port, { Connection: "keep-alive, Upgrade" });
        good.close();
      }, extra);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("--unix-listen refuses a socket path a live server answers on; the first server keeps it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ws.sock`;
  const target = echoTarget();
  const first = new ProxyProcess([`--unix-listen=${path}`, `127.0.0.1:${target.port}`]);
  let second: ProxyProcess | undefined;
  try {
    await waitFor(() => /Listen on unix socket/.test(first.stderr), 15000, "first banner");
    second = new ProxyProcess([`--unix-listen=${path}`, `127.0.0.1:${target.port}`]);
    const status = await second.status();
    assert.equal(status.code, 1, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(
        `Opening socket failed: cannot listen on unix socket ${path}: another server is listening there`,
      ),
    );
    assert.doesNotMatch(second.stderr, /Listen on unix socket/);
    // The first server still owns the path and serves through it.
    const client = RawClient.wrap(await Deno.connect({ transport: "unix", path }));
    await client.send(text(upgradeRequest()));
    assert.match(await client.readHead(), /^HTTP\/1\.1 101 /);
    await client.sendFrame(Opcode.Binary, "still mine");
    assert.equal(new TextDecoder().decode(await client.readData(10)), "still mine");
    client.close();
    assert.equal((await first.stop()).code, 0);
  } finally {
    await second?.stop();
    await first.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("binary garbage is answered 400 and closed, never hangs", async () => {
  await withEchoProxy(async (proxy) => {
    const client = await RawClient.connect(proxy.port);
    await client.send(pseudoRandomBytes(3000, 9).map((b) => b === 10 ? 11 : b)); // no line ends at all
    await client.send(text("\n\n"));
    const head = await client.readHead();
    assert.match(head, /^HTTP\/1\.1 400 /);
    client.close();
  });
});

Deno.test("a handshake split over many small writes, with frames pipelined after it", async () => {
  await withEchoProxy(async (proxy) => {
    const client = await RawClient.connect(proxy.port);
    const request = text(upgradeRequest({}, "/websockify?x=1"));
    const pipelined = encodeFrame(Opcode.Binary, text("early bird"), { mask: MASK });
    const all = concat([request, pipelined]);
    for (let i = 0; i < request.length; i += 7) {
      await client.send(all.subarray(i, Math.min(i + 7, request.length)));
      await sleep(1);
    }
    await client.send(all.subarray(request.length)); // head end and frame: nothing lost in between
    assert.match(await client.readHead(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.equal(new TextDecoder().decode(await client.readData(10)), "early bird");
    // Bytes sent in the same write as the head reach the target too.
    const second = await RawClient.connect(proxy.port);
    await second.send(concat([text(upgradeRequest()), pipelined]));
    assert.match(await second.readHead(), /^HTTP\/1\.1 101 /);
    assert.equal(new TextDecoder().decode(await second.readData(10)), "early bird");
    client.close();
    second.close();
    assert.ok(proxy.log.has(/Path: '\/websockify\?x=1'/));
  });
});

Deno.test("client close: everything sent before it reaches the target, then the echo, then target EOF", async () => {
  const sink = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${sink.port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    const data = pseudoRandomBytes(3 << 20, 2);
    const frames: Uint8Array[] = [];
    for (let offset = 0; offset < data.length; offset += 100000) {
      frames.push(
        encodeFrame(Opcode.Binary, data.subarray(offset, offset + 100000), { mask: MASK }),
      );
    }
    frames.push(
      encodeFrame(Opcode.Close, new Uint8Array([0x0f, 0xa0, ...text("done")]), { mask: MASK }),
    );
    await client.send(concat(frames)); // data and close in one go
    assert.deepEqual(await client.nextClose(), { kind: "close", code: 4000, reason: "done" });
    assert.equal(await client.next(), undefined, "the server closes TCP after the echo");
    await waitFor(() => sink.received.length === 1, 3000, "target connection");
    const got = await deadline(sink.received[0], 5000, "target EOF");
    assert.equal(got.length, data.length);
    assert.deepEqual(got, data);
    client.close();
  } finally {
    await proxy.stop();
    await sink.close();
  }
});

Deno.test("a close with no status is answered with 1000", async () => {
  await withEchoProxy(async (proxy) => {
    const client = await RawClient.open(proxy.port);
    await client.sendFrame(Opcode.Close);
    assert.deepEqual(await client.nextClose(), { kind: "close", code: 1000, reason: "" });
    client.close();
  });
});

Deno.test("target EOF: every target byte is delivered, then close 1000 'Target closed'", async () => {
  const payload = pseudoRandomBytes(2 << 20, 3);
  const target = new TcpTarget(async (conn) => {
    await writeAll(conn, payload);
    await conn.closeWrite();
    await readToEnd(conn); // a half-closed target still takes what the client sends
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    const got = await client.readData(payload.length);
    assert.deepEqual(got, payload);
    assert.deepEqual(await client.nextClose(), {
      kind: "close",
      code: 1000,
      reason: "Target closed",
    });
    await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
    assert.equal(await client.next(), undefined);
    client.close();
    await waitFor(
      () => proxy.log.has(/session ended by target \(1000 Target closed\)/),
      3000,
      "summary",
    );
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("unreachable target: 101, then close 1011 with a reason; the failure is logged", async () => {
  const unused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (unused.addr as Deno.NetAddr).port;
  unused.close();
  const proxy = await startProxy([`127.0.0.1:${port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    assert.deepEqual(await client.nextClose(), {
      kind: "close",
      code: 1011,
      reason: "Failed to connect to downstream server",
    });
    client.close();
    assert.ok(
      proxy.log.has(new RegExp(`Failed to connect to 127\\.0\\.0\\.1:${port}: .*refused`, "i")),
    );
  } finally {
    await proxy.stop();
  }
});

Deno.test("a client that just drops: the target sees EOF at once", async () => {
  const sink = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${sink.port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    await client.sendFrame(Opcode.Binary, "last words");
    await sleep(50);
    const started = performance.now();
    client.close();
    await waitFor(() => sink.received.length === 1, 3000, "target connection");
    const got = await deadline(sink.received[0], 2000, "target EOF");
    assert.equal(new TextDecoder().decode(got), "last words");
    assert.ok(performance.now() - started < 1500);
    await waitFor(() => proxy.log.has(/session ended by client-dropped \(1006/), 3000, "summary");
  } finally {
    await proxy.stop();
    await sink.close();
  }
});

Deno.test("protocol errors: unmasked frame 1002, invalid UTF-8 text 1007; the target is closed", async () => {
  const sink = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${sink.port}`]);
  try {
    const unmasked = await RawClient.open(proxy.port);
    await unmasked.send(encodeFrame(Opcode.Binary, text("x")));
    assert.deepEqual(await unmasked.nextClose(), {
      kind: "close",
      code: 1002,
      reason: "Frame not masked",
    });
    unmasked.close();
    const badText = await RawClient.open(proxy.port);
    await badText.sendFrame(Opcode.Text, "valid ");
    await badText.sendFrame(Opcode.Text, new Uint8Array([0xc3, 0x28]));
    const close = await badText.nextClose();
    assert.equal(close?.code, 1007);
    badText.close();
    await waitFor(() => sink.received.length === 2, 3000, "target connections");
    assert.equal((await deadline(sink.received[0], 5000, "target 1 EOF")).length, 0);
    assert.equal(
      new TextDecoder().decode(await deadline(sink.received[1], 5000, "target 2 EOF")),
      "valid ",
    );
  } finally {
    await proxy.stop();
    await sink.close();
  }
});

Deno.test("fragmented message with a ping in the middle: pong echoes, bytes reach the target in order", async () => {
  await withEchoProxy(async (proxy) => {
    const client = await RawClient.open(proxy.port);
    await client.send(concat([
      encodeFrame(Opcode.Binary, text("frag-"), { mask: MASK, fin: false }),
      encodeFrame(Opcode.Ping, text("ping!"), { mask: MASK }),
      encodeFrame(Opcode.Continuation, text("mented"), { mask: MASK }),
    ]));
    const events: string[] = [];
    let data = "";
    while (data.length < 11 || !events.includes("pong:ping!")) {
      const event = await client.next();
      assert.ok(event, "no EOF expected");
      if (event.kind === "pong") events.push(`pong:${new TextDecoder().decode(event.payload)}`);
      if (event.kind === "data") data += new TextDecoder().decode(event.payload);
    }
    assert.equal(data, "frag-mented");
    client.close();
  });
});

Deno.test("hundreds of half-sent handshakes do not delay a normal client", async () => {
  await withEchoProxy(async (proxy) => {
    const stalled: Deno.Conn[] = [];
    for (let i = 0; i < 300; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      await writeAll(conn, text("GET / HTTP/1.1\r\nUpgrade: websocket\r\n")); // never finished
      stalled.push(conn);
    }
    const started = performance.now();
    const client = await RawClient.open(proxy.port);
    await client.sendFrame(Opcode.Binary, "hello");
    assert.equal(new TextDecoder().decode(await client.readData(5)), "hello");
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 2000, `normal client took ${elapsed} ms`);
    client.close();
    for (const conn of stalled) conn.close();
  }, ["--max-handshakes-per-ip=0"]); // all from one address here: the per-address bound is tested apart
});

Deno.test("silent connections are closed after the first-byte timeout, slow heads after the head timeout", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`], { firstByte: 300, head: 600 });
  try {
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const started = performance.now();
    assert.equal((await deadline(readToEnd(silent), 3000, "silent close")).length, 0);
    assert.ok(performance.now() - started >= 250);
    silent.close();
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    await writeAll(slow, text("GET / HTTP/1.1\r\n"));
    assert.equal((await deadline(readToEnd(slow), 3000, "slow head close")).length, 0);
    slow.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("200 concurrent sessions each echo their own data", async () => {
  await withEchoProxy(async (proxy) => {
    const sessions = Array.from({ length: 200 }, async (_, i) => {
      const client = await RawClient.open(proxy.port);
      const data = pseudoRandomBytes(5000 + i, i + 1);
      await client.sendFrame(Opcode.Binary, data);
      assert.deepEqual(await client.readData(data.length), data);
      await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
      assert.equal((await client.nextClose())?.code, 1000);
      client.close();
    });
    await deadline(Promise.all(sessions), 30000, "200 sessions");
  });
});

Deno.test("unix socket target and unix socket listener", async () => {
  const dir = await Deno.makeTempDir();
  const targetPath = `${dir}/target.sock`;
  const listener = Deno.listen({ transport: "unix", path: targetPath });
  const serving = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(100);
    const n = await conn.read(buffer);
    await writeAll(conn, concat([text("unix:"), buffer.subarray(0, n!)]));
    conn.close();
  })();
  const proxy = await startProxy([`--unix-target=${targetPath}`]);
  try {
    const client = await RawClient.open(proxy.port);
    await client.sendFrame(Opcode.Binary, "ping");
    assert.equal(new TextDecoder().decode(await client.readData(9)), "unix:ping");
    client.close();
    await deadline(serving, 5000, "unix target");
    assert.ok(proxy.log.has(/connecting to unix socket: .*target\.sock/));
  } finally {
    await proxy.stop();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IPv6 target", async () => {
  const target = echoTarget("::1");
  const proxy = await startProxy([`[::1]:${target.port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    await client.sendFrame(Opcode.Binary, "over v6");
    assert.equal(new TextDecoder().decode(await client.readData(7)), "over v6");
    client.close();
    assert.ok(proxy.log.has(new RegExp(`connecting to: \\[::1\\]:${target.port}`)));
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("shutdown: clients get close 1001, targets are closed", async () => {
  const sink = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${sink.port}`]);
  const client = await RawClient.open(proxy.port);
  await client.sendFrame(Opcode.Binary, "before shutdown");
  await waitFor(() => sink.received.length === 1, 3000, "target connection");
  await sleep(50);
  const stopping = proxy.stop();
  assert.deepEqual(await client.nextClose(), {
    kind: "close",
    code: 1001,
    reason: "Server shutting down",
  });
  await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe9]));
  await deadline(stopping, 5000, "shutdown");
  assert.equal(
    new TextDecoder().decode(await deadline(sink.received[0], 3000, "target")),
    "before shutdown",
  );
  client.close();
  await sink.close();
});

Deno.test("a client that never answers the close is cut after the close timeout", async () => {
  const target = new TcpTarget(async (conn) => {
    await writeAll(conn, text("bye"));
    conn.close();
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`], { close: 400 });
  try {
    const client = await RawClient.open(proxy.port);
    assert.equal((await client.nextClose())?.code, 1000);
    const started = performance.now();
    assert.equal(await client.next(3000), undefined, "the server closes TCP by itself");
    assert.ok(performance.now() - started < 2000);
    client.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("a frame announcing 1 GiB streams to the target as it arrives", async () => {
  const received: number[] = [];
  const target = new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(65536);
    let n: number | null;
    while ((n = await conn.read(buffer)) !== null) received.push(n);
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    const client = await RawClient.open(proxy.port);
    // Header of a masked binary frame of 2^30 bytes, zero mask, then 1 MiB of it.
    await client.send(new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]));
    await client.send(new Uint8Array(1 << 20));
    await waitFor(
      () => received.reduce((a, b) => a + b, 0) === 1 << 20,
      5000,
      "1 MiB at the target",
    );
    client.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("connections broken in every state never disturb the server or other sessions", async () => {
  const chatty = new TcpTarget(async (conn) => {
    // Streams to the client until it goes away; reads nothing (so a client flood fills it up).
    const block = new Uint8Array(65536);
    while (true) await writeAll(conn, block);
  });
  const echo = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${chatty.port}`], {
    firstByte: 500,
    head: 800,
    close: 500,
  });
  const bystanderProxy = await startProxy([`127.0.0.1:${echo.port}`]);
  const connect = () => Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const quietClose = (conn: Deno.Conn) => {
    try {
      conn.close();
    } catch { /* closed */ }
  };
  try {
    // A session on another server keeps working throughout.
    const bystander = await RawClient.open(bystanderProxy.port);
    const breakers: (() => Promise<void>)[] = [
      async () => quietClose(await connect()), // before the first byte
      async () => {
        const conn = await connect();
        await writeAll(conn, text("GET / HTTP/1.1\r\nUpgr"));
        quietClose(conn); // mid-head
      },
      async () => {
        const conn = await connect();
        await writeAll(conn, text(upgradeRequest()));
        quietClose(conn); // before the 101 is read
      },
      async () => {
        const client = await RawClient.open(proxy.port);
        await sleep(30); // target data is arriving; closing with it unread resets the connection
        client.close();
      },
      async () => {
        const client = await RawClient.open(proxy.port);
        await client.send(
          encodeFrame(Opcode.Binary, new Uint8Array(100000), { mask: MASK }).subarray(0, 5000),
        );
        client.close(); // half a frame
      },
      async () => {
        const client = await RawClient.open(proxy.port);
        await client.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
        client.close(); // close frame, then gone without reading the echo
      },
      async () => {
        const client = await RawClient.open(proxy.port);
        await client.send(encodeFrame(Opcode.Binary, text("x"))); // unmasked: the server closes 1002
        await sleep(10);
        client.close();
      },
      async () => {
        const client = await RawClient.open(proxy.port);
        const frame = encodeFrame(Opcode.Binary, new Uint8Array(65536), { mask: MASK });
        for (let i = 0; i < 20; i++) await writeAll(client.conn, frame); // into a target that never reads
        client.close();
      },
    ];
    for (let round = 0; round < 3; round++) {
      await deadline(
        Promise.all(breakers.map((breaker) => breaker().catch(() => {}))),
        15000,
        "breakers",
      );
      await bystander.sendFrame(Opcode.Binary, `round ${round}`);
      assert.equal(new TextDecoder().decode(await bystander.readData(7)), `round ${round}`);
    }
    // The broken server still serves a well-behaved client.
    const fresh = await RawClient.open(proxy.port);
    assert.equal((await fresh.readData(1000)).length >= 1000, true);
    fresh.close();
    bystander.close();
    await sleep(600);
    assert.ok(!proxy.log.has(/handler exception|internal error/), proxy.log.lines.join("\n"));
  } finally {
    await proxy.stop();
    await bystanderProxy.stop();
    await chatty.close();
    await echo.close();
  }
});
