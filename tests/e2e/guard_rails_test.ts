// Guard rails on the wire: --allowed-targets (a token's target outside the list: 403), --max-message-size (1009
// for a frame or a fragmented message, nothing past the limit reaches the target, memory flat) and
// --allowed-origin (403, together with BasicHTTPAuth or client certificates).
import assert from "node:assert/strict";
import WebSocketNode from "ws";
import { websockify } from "../../mod.ts";
import { writeAll } from "../../lib/io.ts";
import { tokenHash } from "../../lib/secrets.ts";
import { CloseCode, encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { makeCerts, serverCertArgs } from "../helpers/certs.ts";
import { startProxy } from "../helpers/proxy.ts";
import { MASK, RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { liveMemoryKiB } from "../helpers/system.ts";
import { echoTarget, sinkTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const MiB = 1024 * 1024;

/** A target that says `name` and keeps the connection until the proxy closes it. */
function greeter(name: string): TcpTarget {
  return new TcpTarget(async (conn) => {
    await writeAll(conn, new TextEncoder().encode(name));
    const sink = new Uint8Array(1024);
    while (await conn.read(sink) !== null);
  });
}

Deno.test("--allowed-targets: a token's target outside the list is refused with 403 and one log line (token hash, target)", async () => {
  const dir = await Deno.makeTempDir();
  const inside = greeter("in");
  const outside = greeter("out");
  const socketPath = `${dir}/vnc/desk.sock`;
  await Deno.mkdir(`${dir}/vnc`);
  const socket = Deno.listen({ transport: "unix", path: socketPath });
  const socketServing = (async () => {
    const conn = await socket.accept();
    await writeAll(conn, new TextEncoder().encode("ux"));
    conn.close();
  })();
  await Deno.writeTextFile(
    `${dir}/tokens`,
    [
      `inside: 127.0.0.1:${inside.port}`,
      `outside: 127.0.0.1:${outside.port}`,
      // localhost is 127.0.0.1, but names are not resolved for the check: no network rule matches a name.
      `byname: localhost:${inside.port}`,
      `sock: unix_socket:${socketPath}`,
      `escape: unix_socket:${dir}/vnc/../other.sock`,
      "",
    ].join("\n"),
  );
  const proxy = await startProxy([
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    `--allowed-targets=127.0.0.0/8:${inside.port},unix:${dir}/vnc/*`,
  ]);
  const refused = async (token: string, target: string) => {
    const client = await RawClient.connect(proxy.port);
    const head = await client.request(upgradeRequest({}, `/websockify?token=${token}`));
    assert.match(head, /^HTTP\/1\.1 403 Target not allowed\r\n/, token);
    client.close();
    const lines = proxy.log.lines.filter((line) => line.includes(tokenHash(token)));
    assert.equal(lines.length, 1, `one line for ${token}: ${lines.join(" | ")}`);
    assert.ok(
      lines[0].endsWith(
        `127.0.0.1: Token ${tokenHash(token)}: target ${target} not in --allowed-targets; refused`,
      ),
      lines[0],
    );
  };
  try {
    const allowed = await RawClient.connect(proxy.port);
    assert.match(
      await allowed.request(upgradeRequest({}, "/websockify?token=inside")),
      /^HTTP\/1\.1 101 /,
    );
    assert.equal(new TextDecoder().decode(await allowed.readData(2)), "in");
    allowed.close();
    const viaSocket = await RawClient.connect(proxy.port);
    assert.match(await viaSocket.request(upgradeRequest({}, "/?token=sock")), /^HTTP\/1\.1 101 /);
    assert.equal(new TextDecoder().decode(await viaSocket.readData(2)), "ux");
    viaSocket.close();

    await refused("outside", `127.0.0.1:${outside.port}`);
    await refused("byname", `localhost:${inside.port}`);
    await refused("escape", `${dir}/vnc/../other.sock`);
    assert.equal(outside.connections.length, 0, "the refused target is never connected");
    assert.ok(!proxy.log.has(/outside|byname|escape/), "tokens only by hash");
    assert.ok(!proxy.log.has(/code 403/), "one line per refusal, not two");
  } finally {
    await proxy.stop();
    await inside.close();
    await outside.close();
    socket.close();
    await socketServing.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--max-message-size: an oversized message (Deno WebSocket) closes with 1009; the target gets what came before", async () => {
  const target = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--max-message-size=${MiB}`]);
  try {
    const ws = new WebSocket(proxy.url, ["binary"]);
    await deadline(new Promise((resolve) => ws.onopen = resolve), 5000, "open");
    const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
    ws.send(new TextEncoder().encode("small"));
    ws.send(new Uint8Array(MiB)); // at the limit: passes
    ws.send(new Uint8Array(2 * MiB)); // over it
    const event = await deadline(closed, 10000, "close");
    assert.equal(event.code, CloseCode.TooBig);
    assert.equal(event.reason, `Message over ${MiB} bytes`);
    const received = await deadline(target.received[0], 5000, "target EOF");
    assert.equal(received.length, 5 + MiB, "none of the oversized message");
    await waitFor(
      () => proxy.log.has(/session ended by server \(1009 Message over 1048576 bytes\)/),
      5000,
      "the summary line",
    );
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--max-message-size: a fragmented message (npm ws) is counted as it streams: 1009 at the fragment that passes the limit", async () => {
  const target = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--max-message-size=${MiB}`]);
  try {
    const ws = new WebSocketNode(proxy.url, ["binary"], { perMessageDeflate: false });
    await deadline(new Promise((resolve) => ws.on("open", resolve)), 5000, "open");
    const closed = new Promise<number>((resolve) => ws.on("close", resolve));
    const fragment = new Uint8Array(400 * 1024).fill(7);
    ws.send(fragment, { fin: false });
    ws.send(fragment, { fin: false }); // 800 KiB: still under
    ws.send(fragment, { fin: false }); // 1200 KiB: over
    ws.send(fragment, { fin: true });
    assert.equal(await deadline(closed, 10000, "close"), CloseCode.TooBig);
    const received = await deadline(target.received[0], 5000, "target EOF");
    assert.equal(
      received.length,
      2 * fragment.length,
      "the fragments under the limit, nothing after",
    );
    assert.ok(received.length <= MiB);
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--max-message-size: a 1 GiB frame is refused at its header; 64 MiB of it streamed after leave memory flat and reach nobody", async () => {
  const target = sinkTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--max-message-size=${MiB}`]);
  try {
    const client = await RawClient.open(proxy.port);
    // The header of a masked binary frame announcing 1 GiB; its payload follows later, if ever.
    const header = encodeFrame(Opcode.Binary, new Uint8Array(0), { mask: MASK });
    const announced = new Uint8Array(14);
    announced[0] = header[0];
    announced[1] = 0x80 | 127;
    new DataView(announced.buffer).setBigUint64(2, BigInt(1024 * MiB));
    announced.set(MASK, 10);
    const before = liveMemoryKiB();
    await client.send(announced);
    // The close comes at once, before a byte of payload was sent.
    const close = await client.nextClose(5000);
    assert.equal(close?.code, CloseCode.TooBig);
    const chunk = new Uint8Array(64 * 1024).fill(0x55);
    let peak = 0;
    for (let sent = 0; sent < 64 * MiB; sent += chunk.length) {
      await client.send(chunk);
      if (sent % (8 * MiB) === 0) peak = Math.max(peak, liveMemoryKiB() - before);
    }
    peak = Math.max(peak, liveMemoryKiB() - before);
    console.log(`live memory growth while 64 MiB of an oversized frame streamed: ${peak} KiB`);
    assert.ok(peak < 8 * 1024, `memory grew by ${peak} KiB`);
    client.close();
    const received = await deadline(target.received[0], 10000, "target EOF");
    assert.equal(received.length, 0, "the target got nothing of it");
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--allowed-origin with BasicHTTPAuth: each check refuses on its own (403 Origin, 401 password); both pass: 101", async () => {
  const target = echoTarget();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--allowed-origin=https://novnc.example",
    "--allowed-origin=http://localhost:6080",
    "--auth-plugin=BasicHTTPAuth",
    "--auth-source=user:pw",
  ]);
  const basic = `Basic ${btoa("user:pw")}`;
  const answer = async (headers: Record<string, string>) => {
    const client = await RawClient.connect(proxy.port);
    const head = await client.request(upgradeRequest(headers, "/websockify"));
    client.close();
    return head.split("\r\n")[0];
  };
  try {
    assert.equal(
      await answer({ Origin: "https://evil.example", Authorization: basic }),
      "HTTP/1.1 403 Origin not allowed",
    );
    assert.equal(
      await answer({ Origin: "null", Authorization: basic }),
      "HTTP/1.1 403 Origin not allowed",
    );
    assert.equal(await answer({ Origin: "https://novnc.example" }), "HTTP/1.1 401 Unauthorized");
    assert.equal(
      await answer({ Origin: "https://novnc.example", Authorization: `Basic ${btoa("user:no")}` }),
      "HTTP/1.1 401 Unauthorized",
    );
    // The listed origin in any spelling a browser could send, and no Origin at all (not a browser).
    for (
      const origin of [
        "https://novnc.example",
        "https://NoVNC.example:443",
        "http://localhost:6080",
        "",
      ]
    ) {
      const client = await RawClient.open(proxy.port, { Origin: origin, Authorization: basic });
      await client.sendFrame(Opcode.Binary, "ok");
      assert.equal(new TextDecoder().decode(await client.readData(2)), "ok");
      client.close();
    }
    await waitFor(() => proxy.log.has(/Origin "null" not allowed/), 3000, "log");
    const refusals = proxy.log.lines.filter((line) => /Origin .* not allowed/.test(line));
    assert.equal(refusals.length, 2, refusals.join("\n"));
    assert.match(
      refusals[0],
      /127\.0\.0\.1: Origin "https:\/\/evil\.example" not allowed \(--allowed-origin\)$/,
    );
    assert.equal(target.connections.length, 4, "only the admitted sessions reached the target");
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--allowed-origin with client certificates (ClientCertCNAuth): a right certificate from a wrong Origin gets 403", async () => {
  const target = echoTarget();
  const certs = await makeCerts();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    ...serverCertArgs(certs),
    "--verify-client",
    `--cafile=${certs.ca}`,
    "--auth-plugin=ClientCertCNAuth",
    "--auth-source=client1",
    "--allowed-origin=https://novnc.example",
  ]);
  const [ca, cert, key] = await Promise.all(
    [certs.ca, certs.clientCert, certs.clientKey].map((path) => Deno.readTextFile(path)),
  );
  const answer = async (origin: string) => {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: proxy.port,
      caCerts: [ca],
      cert,
      key,
    });
    const client = RawClient.wrap(conn);
    const head = await client.request(upgradeRequest({ Origin: origin }, "/websockify"));
    if (head.startsWith("HTTP/1.1 101")) {
      await client.sendFrame(Opcode.Binary, "tls");
      assert.equal(new TextDecoder().decode(await client.readData(3)), "tls");
    }
    client.close();
    return head.split("\r\n")[0];
  };
  try {
    assert.equal(await answer("https://evil.example"), "HTTP/1.1 403 Origin not allowed");
    assert.equal(await answer("https://novnc.example"), "HTTP/1.1 101 Switching Protocols");
  } finally {
    await proxy.stop();
    await target.close();
    await certs.remove();
  }
});

Deno.test("library: allowedOrigin as a list, maxMessageSize and tokenFrom are the command line's options", async () => {
  const target = echoTarget();
  const lines: string[] = [];
  const proxy = await websockify({
    listen: "127.0.0.1:0",
    target: `127.0.0.1:${target.port}`,
    allowedOrigin: ["https://a.example", "https://b.example"],
    maxMessageSize: 4,
    log: (line) => lines.push(line),
  });
  try {
    const refused = await RawClient.connect(proxy.port);
    assert.match(
      await refused.request(upgradeRequest({ Origin: "https://c.example" })),
      /^HTTP\/1\.1 403 /,
    );
    refused.close();
    const client = await RawClient.open(proxy.port, { Origin: "https://b.example" });
    await client.sendFrame(Opcode.Binary, "four");
    assert.equal(new TextDecoder().decode(await client.readData(4)), "four");
    await client.sendFrame(Opcode.Binary, "five!");
    assert.equal((await client.nextClose())?.code, CloseCode.TooBig);
    client.close();
    await assert.rejects(
      websockify({ listen: 0, target: "h:1", tokenFrom: "path" }),
      /--token-from and --host-token require --token-plugin/,
    );
  } finally {
    await proxy.shutdown();
    await target.close();
  }
});
