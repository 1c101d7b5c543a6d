// --compress (permessage-deflate, RFC 7692) at its edges, with a raw client on a real socket: fragmented
// compressed messages, RSV1 where it is not allowed, bad data after inflation, a ping between fragments, empty
// messages, base64 both ways, --max-message-size at and past the bound, many sessions at once, odd offers.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { findHeadEnd } from "../../lib/http.ts";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { Receiver } from "../../lib/websocket/receiver.ts";
import { concat } from "../helpers/bytes.ts";
import { liveMemoryKiB } from "../helpers/system.ts";
import { startProxy } from "../helpers/proxy.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const MASK = new Uint8Array([9, 8, 7, 6]);
const RSV1 = 4;
const encoder = new TextEncoder();

/** A message compressed as RFC 7692 wants it: raw deflate, a sync flush, its 00 00 ff ff tail removed. */
function deflate(bytes: Uint8Array): Uint8Array {
  const out = zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return new Uint8Array(out.subarray(0, out.length - 4));
}

/** One message from the proxy, inflated if it came compressed. */
interface Message {
  text: boolean;
  compressed: boolean;
  payload: Uint8Array;
}

/** A raw client that offers permessage-deflate (or what a test writes) and decodes what comes back. */
class Client {
  readonly conn: Deno.Conn;
  head = "";
  readonly messages: Message[] = [];
  readonly pongs: Uint8Array[] = [];
  closeCode: number | undefined;
  eof = false;
  #receiver = new Receiver({ requireMask: false, perMessageDeflate: true });
  #pieces: Uint8Array[] = [];
  #reading: Promise<void> | undefined;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  static async open(
    port: number,
    extensions: string[] = ["permessage-deflate; client_max_window_bits"],
    protocol = "binary",
  ): Promise<Client> {
    const client = new Client(await Deno.connect({ hostname: "127.0.0.1", port }));
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
      `Sec-WebSocket-Protocol: ${protocol}\r\n`;
    for (const offer of extensions) request += `Sec-WebSocket-Extensions: ${offer}\r\n`;
    await writeAll(client.conn, encoder.encode(request + "\r\n"));
    const buffer = new Uint8Array(65536);
    let bytes: Uint8Array = new Uint8Array(0);
    while (findHeadEnd(bytes) < 0) {
      const n = await deadline(client.conn.read(buffer), 5000, "the response head");
      if (n === null) throw new Error("closed before the response head");
      bytes = concat([bytes, buffer.subarray(0, n)]);
    }
    const end = findHeadEnd(bytes);
    client.head = new TextDecoder("latin1").decode(bytes.subarray(0, end));
    if (client.head.startsWith("HTTP/1.1 101")) client.#reading = client.#read(bytes.slice(end));
    return client;
  }

  get agreed(): boolean {
    return /^Sec-WebSocket-Extensions: permessage-deflate/im.test(this.head);
  }

  /** Sends one frame, masked; `rsv1` sets the compressed bit. */
  frame(opcode: number, payload: Uint8Array, options: { fin?: boolean; rsv1?: boolean } = {}) {
    return writeAll(
      this.conn,
      encodeFrame(opcode, payload, {
        fin: options.fin ?? true,
        mask: MASK,
        rsv: options.rsv1 ? RSV1 : 0,
      }),
    );
  }

  async #read(initial: Uint8Array): Promise<void> {
    const buffer = new Uint8Array(65536);
    let chunk: Uint8Array | undefined = initial;
    while (this.closeCode === undefined) {
      if (!chunk || chunk.length === 0) {
        let n: number | null;
        try {
          n = await this.conn.read(buffer);
        } catch {
          n = null;
        }
        if (n === null) break;
        chunk = buffer.subarray(0, n);
      }
      for (const event of this.#receiver.receive(chunk)) {
        if (event.kind === "data") {
          this.#pieces.push(event.payload.slice());
          if (!event.messageEnd) continue;
          let payload = concat(this.#pieces);
          this.#pieces = [];
          if (event.compressed) {
            payload = new Uint8Array(
              zlib.inflateRawSync(concat([payload, new Uint8Array([0, 0, 0xff, 0xff])]), {
                finishFlush: zlib.constants.Z_SYNC_FLUSH,
              }),
            );
          }
          this.messages.push({ text: event.text, compressed: event.compressed ?? false, payload });
        } else if (event.kind === "pong") {
          this.pongs.push(event.payload.slice());
        } else if (event.kind === "close") {
          this.closeCode = event.code;
        } else if (event.kind === "error") {
          throw new Error(`bad frame from the proxy: ${event.reason}`);
        }
      }
      chunk = undefined;
    }
    this.eof = true;
  }

  /** Waits for the proxy's close frame (or its EOF): the code, undefined for none. */
  async closed(ms = 5000): Promise<number | undefined> {
    await waitFor(() => this.closeCode !== undefined || this.eof, ms, "the close");
    return this.closeCode;
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* closed */ }
    await this.#reading?.catch(() => {});
  }
}

/** A target that keeps what each connection sent (`received[i]`, as it arrives). */
function recordingTarget() {
  const received: Uint8Array[][] = [];
  const target = new TcpTarget(async (conn) => {
    const mine: Uint8Array[] = [];
    received.push(mine);
    const buffer = new Uint8Array(65536);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      mine.push(buffer.slice(0, n));
    }
  });
  return Object.assign(target, {
    received,
    bytes: (i: number) => concat(received[i] ?? []),
  });
}

const sample = (count: number) =>
  encoder.encode(
    Array.from({ length: count }, (_, i) => `line ${i}: the quick brown fox ${i * 7}\n`).join(""),
  );

Deno.test("--compress: a compressed message in fragments (RSV1 on the first only), with a ping between them, and empty ones arrive whole", async () => {
  const target = recordingTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const client = await Client.open(proxy.port);
  try {
    assert.ok(client.agreed, client.head);
    const message = sample(300);
    const compressed = deflate(message);
    const cut = [0, 1, Math.floor(compressed.length / 2), compressed.length];
    await client.frame(Opcode.Binary, compressed.subarray(cut[0], cut[1]), {
      fin: false,
      rsv1: true,
    });
    await client.frame(Opcode.Continuation, compressed.subarray(cut[1], cut[2]), { fin: false });
    await client.frame(Opcode.Ping, encoder.encode("between"));
    await client.frame(Opcode.Continuation, new Uint8Array(0), { fin: false });
    await client.frame(Opcode.Continuation, compressed.subarray(cut[2], cut[3]));
    // Empty compressed messages: as RFC 7692 writes one (a single 00), and with no payload at all.
    await client.frame(Opcode.Binary, new Uint8Array([0x00]), { rsv1: true });
    await client.frame(Opcode.Text, new Uint8Array(0), { rsv1: true });
    // And a last one, to show the session goes on.
    await client.frame(Opcode.Text, deflate(encoder.encode("after")), { rsv1: true });
    const expected = concat([message, encoder.encode("after")]);
    await waitFor(() => target.bytes(0).length >= expected.length, 5000, "the messages");
    assert.deepEqual(target.bytes(0), expected);
    await waitFor(() => client.pongs.length > 0, 5000, "the pong");
    assert.equal(new TextDecoder().decode(client.pongs[0]), "between");
    assert.equal(client.closeCode, undefined);
  } finally {
    await client.close();
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: RSV1 on a continuation or a control frame is 1002; invalid UTF-8 after inflation is 1007; none of it reaches the target", async () => {
  const target = recordingTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const cases: [string, (client: Client) => Promise<void>, number][] = [
    ["RSV1 on a continuation", async (client) => {
      const compressed = deflate(sample(10));
      await client.frame(Opcode.Binary, compressed.subarray(0, 4), { fin: false, rsv1: true });
      await client.frame(Opcode.Continuation, compressed.subarray(4), { rsv1: true });
    }, 1002],
    ["RSV1 on an uncompressed message's continuation", async (client) => {
      await client.frame(Opcode.Binary, encoder.encode("plain"), { fin: false });
      await client.frame(Opcode.Continuation, deflate(encoder.encode("x")), { rsv1: true });
    }, 1002],
    [
      "RSV1 on a ping",
      (client) => client.frame(Opcode.Ping, deflate(encoder.encode("x")), { rsv1: true }),
      1002,
    ],
    [
      "RSV1 on a close",
      (client) => client.frame(Opcode.Close, new Uint8Array([0x03, 0xe8]), { rsv1: true }),
      1002,
    ],
    [
      "invalid UTF-8 in a compressed text message",
      (client) =>
        client.frame(Opcode.Text, deflate(new Uint8Array([0x61, 0xc3, 0x28, 0x62])), {
          rsv1: true,
        }),
      1007,
    ],
    [
      "a character cut at the end of a compressed text message",
      (client) =>
        client.frame(Opcode.Text, deflate(new Uint8Array([0x61, 0xe2, 0x82])), { rsv1: true }),
      1007,
    ],
  ];
  try {
    for (const [what, send, code] of cases) {
      const client = await Client.open(proxy.port);
      try {
        await send(client);
        assert.equal(await client.closed(), code, what);
      } finally {
        await client.close();
      }
    }
    // RSV2 and RSV3 are never permessage-deflate's.
    for (const bits of [0x20, 0x10, 0x60]) {
      const client = await Client.open(proxy.port);
      try {
        const frame = encodeFrame(Opcode.Binary, encoder.encode("x"), { mask: MASK });
        frame[0] |= bits;
        await writeAll(client.conn, frame);
        assert.equal(await client.closed(), 1002, `RSV bits 0x${bits.toString(16)}`);
      } finally {
        await client.close();
      }
    }
    await waitFor(() => target.received.length >= cases.length + 3, 5000, "the targets");
    for (let i = 0; i < target.received.length; i++) {
      // Only the uncompressed "plain" (whose message was never finished) may have reached its target.
      const got = new TextDecoder().decode(target.bytes(i));
      assert.ok(got === "" || got === "plain", `target ${i} got ${JSON.stringify(got)}`);
    }
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: deflate data cut short or garbage is closed with 1007 and nothing of it reaches the target, never a crash", async () => {
  const target = recordingTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const whole = deflate(sample(200));
  const bad: [string, Uint8Array][] = [
    ["cut at a quarter", whole.subarray(0, whole.length >> 2)],
    ["cut at half", whole.subarray(0, whole.length >> 1)],
    ["one byte short", whole.subarray(0, whole.length - 1)],
    ["an invalid block type", new Uint8Array([0xff, 0xff, 0xff])],
    ["stored block lengths that disagree", new Uint8Array([0x00, 0x05, 0x00, 0x05, 0x00, 1, 2])],
    ["random bytes", Uint8Array.from({ length: 300 }, (_, i) => (i * 73 + 11) & 0xff)],
  ];
  try {
    for (const [what, payload] of bad) {
      const client = await Client.open(proxy.port);
      try {
        await client.frame(Opcode.Binary, payload, { rsv1: true });
        assert.equal(await client.closed(), 1007, what);
      } finally {
        await client.close();
      }
    }
    await waitFor(() => target.received.length >= bad.length, 5000, "the targets");
    for (let i = 0; i < bad.length; i++) {
      assert.equal(target.bytes(i).length, 0, `${bad[i][0]}: the target got bytes`);
    }
    // The proxy is still serving: a whole message still goes through.
    const client = await Client.open(proxy.port);
    try {
      await client.frame(Opcode.Binary, whole, { rsv1: true });
      await waitFor(() => target.bytes(bad.length).length >= sample(200).length, 5000, "data");
      assert.deepEqual(target.bytes(bad.length), sample(200));
    } finally {
      await client.close();
    }
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: odd offers are agreed or declined per RFC 7692, never a 500; an offer spoilt by a repeated parameter leaves the next one", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const cases: [string, string[], boolean][] = [
    ["two headers, the first declined", ["x-webkit-deflate-frame", "permessage-deflate"], true],
    [
      "a repeated parameter, then a good offer",
      ["permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate"],
      true,
    ],
    ["only a repeated parameter", [
      "permessage-deflate; client_max_window_bits; client_max_window_bits",
    ], false],
    ["a quoted value with an escaped quote first", ['foo; a="x\\"y", permessage-deflate'], true],
    ["a quoted window size", ['permessage-deflate; server_max_window_bits="10"'], true],
    ["the same offer twice", ["permessage-deflate", "permessage-deflate"], true],
    ["garbage", ['permessage-deflate;;;==="', "(((("], false],
    ["an unknown parameter", ["permessage-deflate; mystery=1"], false],
    ["a window out of range", ["permessage-deflate; server_max_window_bits=16"], false],
    ["a huge list of offers", [
      Array(2000).fill("x-unknown; a=1").join(", ") + ", permessage-deflate",
    ], true],
  ];
  try {
    for (const [what, offers, agreed] of cases) {
      const client = await Client.open(proxy.port, offers);
      try {
        assert.match(client.head, /^HTTP\/1\.1 101 /, what);
        assert.equal(client.agreed, agreed, `${what}: ${client.head}`);
        // The session works either way (compressed or not).
        const payload = sample(50);
        if (agreed) await client.frame(Opcode.Binary, deflate(payload), { rsv1: true });
        else await client.frame(Opcode.Binary, payload);
        await waitFor(
          () => client.messages.reduce((sum, m) => sum + m.payload.length, 0) >= payload.length,
          5000,
          `${what}: the echo`,
        );
        assert.deepEqual(concat(client.messages.map((m) => m.payload)), payload, what);
      } finally {
        await client.close();
      }
    }
    // A header past the head cap is 431, as any other.
    const huge = await Client.open(proxy.port, ["permessage-deflate; " + "a".repeat(40000)]);
    assert.match(huge.head, /^HTTP\/1\.1 431 /);
    await huge.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: --max-message-size bounds the inflated message (exactly at it passes, one byte over is 1009); base64 framing compressed both ways", async () => {
  const target = echoTarget();
  const limit = 5000;
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--compress",
    `--max-message-size=${limit}`,
  ]);
  try {
    const at = await Client.open(proxy.port);
    try {
      const payload = new Uint8Array(limit).fill(0x61);
      await at.frame(Opcode.Binary, deflate(payload), { rsv1: true });
      await waitFor(
        () => at.messages.reduce((sum, m) => sum + m.payload.length, 0) >= limit,
        5000,
        "the echo",
      );
      assert.deepEqual(concat(at.messages.map((m) => m.payload)), payload);
      assert.equal(at.closeCode, undefined);
    } finally {
      await at.close();
    }
    const over = await Client.open(proxy.port);
    try {
      await over.frame(Opcode.Binary, deflate(new Uint8Array(limit + 1).fill(0x61)), {
        rsv1: true,
      });
      assert.equal(await over.closed(), 1009);
      assert.equal(over.messages.length, 0);
    } finally {
      await over.close();
    }
    // base64: the client's compressed text is base64 of the bytes; what comes back is compressed base64 text.
    const b64 = await Client.open(proxy.port, ["permessage-deflate"], "base64");
    try {
      assert.match(b64.head, /Sec-WebSocket-Protocol: base64/);
      assert.ok(b64.agreed);
      const payload = sample(40);
      const encoded = encoder.encode(btoa(String.fromCharCode(...payload)));
      // In two fragments: RSV1 on the first, the deflate stream cut anywhere.
      const compressed = deflate(encoded);
      await b64.frame(Opcode.Text, compressed.subarray(0, 7), { fin: false, rsv1: true });
      await b64.frame(Opcode.Continuation, compressed.subarray(7));
      // Each target read is its own message, base64 on its own.
      const decoded = () =>
        concat(
          b64.messages.map((m) =>
            Uint8Array.from(atob(new TextDecoder().decode(m.payload)), (c) => c.charCodeAt(0))
          ),
        );
      await waitFor(() => decoded().length >= payload.length, 5000, "the echo");
      assert.ok(b64.messages.every((m) => m.text), "text messages");
      assert.ok(b64.messages.some((m) => m.compressed), "compressed ones");
      assert.deepEqual(decoded(), payload);
    } finally {
      await b64.close();
    }
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: 20 sessions at once, each target flooding 1 MB of text: every byte intact, memory bounded", async () => {
  const flood = sample(22_000).subarray(0, 1 << 20);
  const target = new TcpTarget(async (conn) => {
    // In uneven writes, as a busy target's output comes.
    for (let at = 0, step = 1; at < flood.length; at += step, step = (step * 7 + 13) % 40_000 + 1) {
      await writeAll(conn, flood.subarray(at, Math.min(at + step, flood.length)));
    }
    const buffer = new Uint8Array(1024);
    while ((await conn.read(buffer)) !== null) { /* until the client leaves */ }
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const before = liveMemoryKiB();
  const clients = await Promise.all(Array.from({ length: 20 }, () => Client.open(proxy.port)));
  try {
    const total = (client: Client) => client.messages.reduce((sum, m) => sum + m.payload.length, 0);
    await waitFor(() => clients.every((c) => total(c) >= flood.length), 30_000, "the floods");
    for (const client of clients) {
      assert.ok(client.agreed);
      assert.deepEqual(concat(client.messages.map((m) => m.payload)), flood);
      assert.ok(client.messages.some((m) => m.compressed));
      client.messages.length = 0; // (the client's copy: not the proxy's memory)
    }
    const after = liveMemoryKiB();
    console.log(
      `20 sessions open after 1 MB each compressed: live memory ${after - before} KiB more`,
    );
    assert.ok(after - before < 16 * 1024, `${after - before} KiB`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await proxy.stop();
    await target.close();
  }
});
