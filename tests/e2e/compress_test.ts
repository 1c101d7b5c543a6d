// --compress (permessage-deflate, RFC 7692) with real clients: Python's websockets (it offers deflate by
// default), headless Chromium, and a raw client that counts the bytes on the wire and sends a deflate bomb.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { writeAll } from "../../lib/io.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { Receiver } from "../../lib/websocket/receiver.ts";
import { chromiumAvailable, launchChromium } from "../helpers/browser.ts";
import { PEERS } from "../helpers/paths.ts";
import { startProxy } from "../helpers/proxy.ts";
import { liveMemoryKiB } from "../helpers/system.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { deadline } from "../helpers/waits.ts";

const PYTHON = "/usr/bin/python3";
const pythonWebsockets = (() => {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import websockets"], stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

const MASK = new Uint8Array([1, 2, 3, 4]);

function join(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((sum, piece) => sum + piece.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}
const text = (value: string) => new TextEncoder().encode(value);

/** Log-like text: what compresses well. */
function logLines(count: number): Uint8Array {
  return text(
    Array.from(
      { length: count },
      (_, i) =>
        `2026-12-01T02:${i % 60}:00Z INFO session ${i} ended by client (1000): ${i * 37} bytes\n`,
    ).join(""),
  );
}

/**
 * A raw client with permessage-deflate offered: its 101 head, then every server frame decoded (compressed
 * messages inflated) until `until` says stop; counts the bytes on the wire.
 */
class DeflateClient {
  readonly conn: Deno.Conn;
  head = "";
  wireBytes = 0;
  /** The payload received so far (inflated), in pieces. */
  pieces: Uint8Array[] = [];
  received = 0;
  closeCode: number | undefined;
  compressedMessages = 0;
  #pending = new Uint8Array(0);
  #receiver = new Receiver({ requireMask: false, perMessageDeflate: true });
  #message: Uint8Array[] = [];

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  static async open(port: number, offer = "permessage-deflate; client_max_window_bits") {
    const client = new DeflateClient(await Deno.connect({ hostname: "127.0.0.1", port }));
    await writeAll(
      client.conn,
      text(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          `Sec-WebSocket-Protocol: binary\r\nSec-WebSocket-Extensions: ${offer}\r\n\r\n`,
      ),
    );
    const buffer = new Uint8Array(65536);
    let bytes = new Uint8Array(0);
    while (!new TextDecoder().decode(bytes).includes("\r\n\r\n")) {
      const n = await deadline(client.conn.read(buffer), 5000, "the 101");
      if (n === null) throw new Error("closed before the 101");
      bytes = Uint8Array.from([...bytes, ...buffer.subarray(0, n)]);
    }
    const all = new TextDecoder("latin1").decode(bytes);
    const end = all.indexOf("\r\n\r\n") + 4;
    client.head = all.slice(0, end);
    client.#pending = bytes.subarray(end);
    return client;
  }

  /** Sends one client message (masked), compressed with RSV1 when `compressed` is given. */
  async send(payload: Uint8Array, compressed?: Uint8Array): Promise<void> {
    const frame = encodeFrame(Opcode.Binary, compressed ?? payload, {
      mask: MASK,
      rsv: compressed ? 4 : 0,
    });
    await writeAll(this.conn, frame);
  }

  /** Reads and decodes until `done()` or the close frame (bounded). */
  async readUntil(done: () => boolean, ms = 10000): Promise<void> {
    const buffer = new Uint8Array(65536);
    const end = performance.now() + ms;
    let chunk: Uint8Array | null = this.#pending;
    this.#pending = new Uint8Array(0);
    while (!done() && this.closeCode === undefined) {
      if (chunk === null || chunk.length === 0) {
        const n = await deadline(
          this.conn.read(buffer),
          Math.max(end - performance.now(), 1),
          "data",
        );
        if (n === null) return;
        chunk = buffer.subarray(0, n);
      }
      this.wireBytes += chunk.length;
      for (const event of this.#receiver.receive(chunk)) {
        if (event.kind === "data") {
          this.#message.push(event.payload.slice());
          if (!event.messageEnd) continue;
          const whole = join(this.#message);
          this.#message = [];
          if (event.compressed) {
            this.compressedMessages++;
            const inflated = zlib.inflateRawSync(
              join([whole, new Uint8Array([0, 0, 0xff, 0xff])]),
              {
                finishFlush: zlib.constants.Z_SYNC_FLUSH,
              },
            );
            this.pieces.push(new Uint8Array(inflated));
            this.received += inflated.length;
          } else {
            this.pieces.push(whole);
            this.received += whole.length;
          }
        } else if (event.kind === "close") {
          this.closeCode = event.code;
        } else if (event.kind === "error") {
          throw new Error(`bad frame from the proxy: ${event.reason}`);
        }
      }
      chunk = null;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

Deno.test({
  name:
    "Python websockets: --compress agrees permessage-deflate, data intact both ways; without it the offer is declined",
  ignore: !pythonWebsockets,
  async fn() {
    const target = echoTarget();
    const compressed = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
    const plain = await startProxy([`127.0.0.1:${target.port}`]);
    try {
      const run = async (url: string) => {
        const output = await new Deno.Command(PYTHON, {
          args: [`${PEERS}python_deflate_client.py`, url],
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(40000),
        }).output();
        assert.ok(output.success, new TextDecoder().decode(output.stderr));
        return JSON.parse(new TextDecoder().decode(output.stdout));
      };
      const on = await run(compressed.url);
      assert.deepEqual(on.extensions, ["PerMessageDeflate"]);
      assert.equal(
        on.response,
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=15",
      );
      assert.deepEqual(on.echo_ok, [true, true]);
      assert.equal(on.text_echo, "text goes through as bytes ".repeat(10));
      assert.equal(on.close_code, 1000);
      const off = await run(plain.url);
      assert.deepEqual(off.extensions, []);
      assert.equal(off.response, null);
      assert.deepEqual(off.echo_ok, [true, true]);
    } finally {
      await compressed.stop();
      await plain.stop();
      await target.close();
    }
  },
});

Deno.test("--compress: text-like target output crosses the wire several times smaller; a client's compressed message arrives inflated", async () => {
  const lines = logLines(2000);
  let received = 0;
  const target = new TcpTarget(async (conn) => {
    await writeAll(conn, lines);
    // Then counts what the client's compressed message became.
    const buffer = new Uint8Array(65536);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) received += n;
  });
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
  const client = await DeflateClient.open(proxy.port);
  try {
    assert.match(client.head, /^HTTP\/1\.1 101 /);
    assert.match(
      client.head,
      /Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover/,
    );
    await client.readUntil(() => client.received >= lines.length);
    assert.deepEqual(join(client.pieces), lines);
    assert.ok(client.compressedMessages > 0);
    assert.ok(
      client.wireBytes * 4 < lines.length,
      `${client.wireBytes} bytes on the wire for ${lines.length} of text`,
    );
    console.log(
      `${lines.length} bytes of log lines: ${client.wireBytes} on the wire (${
        (lines.length / client.wireBytes).toFixed(1)
      }x smaller)`,
    );
    const message = logLines(500);
    const deflated = zlib.deflateRawSync(message, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    await client.send(message, deflated.subarray(0, deflated.length - 4));
    const started = performance.now();
    while (received < message.length && performance.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(received, message.length);
  } finally {
    client.close();
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--compress: a deflate bomb is closed with 1009 before it is inflated whole, memory flat; RSV1 without --compress is 1002", async () => {
  const target = echoTarget();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--compress",
    "--max-message-size=1048576",
  ]);
  const plain = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    // 256 MiB of zeros deflates to about 256 KB.
    const bombSource = zlib.deflateRawSync(new Uint8Array(256 << 20), {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    const bomb = bombSource.subarray(0, bombSource.length - 4);
    const before = liveMemoryKiB();
    for (let i = 0; i < 5; i++) {
      const client = await DeflateClient.open(proxy.port);
      const started = performance.now();
      await client.send(new Uint8Array(0), bomb);
      await client.readUntil(() => false, 5000);
      assert.equal(client.closeCode, 1009);
      assert.ok(performance.now() - started < 2000);
      client.close();
    }
    const after = liveMemoryKiB();
    assert.ok(after - before < 16 * 1024, `live memory grew ${after - before} KiB`);
    // Not agreed: RSV1 is a protocol error, as before.
    const client = await DeflateClient.open(plain.port);
    assert.doesNotMatch(client.head, /Sec-WebSocket-Extensions/);
    await client.send(new Uint8Array(0), new Uint8Array([0x02, 0x00]));
    await client.readUntil(() => false, 5000);
    assert.equal(client.closeCode, 1002);
    client.close();
  } finally {
    await proxy.stop();
    await plain.stop();
    await target.close();
  }
});

Deno.test({
  name: "Chromium with --compress: the browser's offer is agreed and 1 MB echoes intact",
  ignore: !chromiumAvailable,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const target = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${target.port}`, "--compress"]);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${proxy.port}/websockify/`);
      const result = await page.evaluate(async (url) => {
        const ws = new WebSocket(url, ["binary"]);
        ws.binaryType = "arraybuffer";
        await new Promise((resolve, reject) => {
          ws.onopen = resolve;
          ws.onerror = reject;
        });
        const line = "2026-12-01T02:00:00Z INFO websockify session ended by client (1000)\n";
        const sent = new TextEncoder().encode(line.repeat(15000));
        const received = new Uint8Array(sent.length);
        let fill = 0;
        const done = new Promise<void>((resolve) => {
          ws.onmessage = (event) => {
            const piece = new Uint8Array(event.data as ArrayBuffer);
            received.set(piece.subarray(0, received.length - fill), fill);
            fill += piece.length;
            if (fill >= sent.length) resolve();
          };
        });
        for (let i = 0; i < sent.length; i += 65536) ws.send(sent.subarray(i, i + 65536));
        await done;
        ws.close();
        return {
          extensions: ws.extensions,
          intact: fill === sent.length && received.every((b, i) => b === sent[i]),
        };
      }, `ws://127.0.0.1:${proxy.port}/`);
      assert.match(result.extensions, /^permessage-deflate/);
      assert.equal(result.intact, true);
    } finally {
      await browser.close();
      await proxy.stop();
      await target.close();
    }
  },
});
