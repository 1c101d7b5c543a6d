// A node:net socket as a ByteStream: reads across deliveries in order, bounded buffering, and the hand-over of
// unread bytes (to node:tls) — with real loopback sockets.
import assert from "node:assert/strict";
import net from "node:net";
import { writeAll } from "../../lib/io.ts";
import { NodeSocketStream, ReadGate } from "../../lib/nodesocket.ts";
import { concat, pseudoRandomBytes } from "../helpers/bytes.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

/** A node:net server socket (paused, as the proxy accepts them) and the Deno client connected to it. */
async function socketPair(): Promise<{ server: net.Socket; client: Deno.TcpConn; close(): void }> {
  const listener = net.createServer({ pauseOnConnect: true });
  const accepted = new Promise<net.Socket>((resolve) => listener.once("connection", resolve));
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const port = (listener.address() as net.AddressInfo).port;
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const server = await accepted;
  listener.close();
  return {
    server,
    client,
    close() {
      server.destroy();
      try {
        client.close();
      } catch { /* closed */ }
    },
  };
}

Deno.test("reads fill the reader's buffer across deliveries, every byte in order, then EOF", async () => {
  const pair = await socketPair();
  try {
    const stream = new NodeSocketStream(pair.server);
    const sent = pseudoRandomBytes(3 * 1024 * 1024 + 17, 7);
    const writing = (async () => {
      for (let offset = 0; offset < sent.length; offset += 10_000) {
        await writeAll(pair.client, sent.subarray(offset, offset + 10_000));
      }
      await pair.client.closeWrite();
    })();
    const parts: Uint8Array[] = [];
    const sizes = [1, 7, 2048, 65536, 256 * 1024];
    let largest = 0;
    for (let i = 0;; i++) {
      const buffer = new Uint8Array(sizes[i % sizes.length]);
      const n = await deadline(stream.read(buffer), 5000, "a read");
      if (n === null) break;
      largest = Math.max(largest, n);
      parts.push(buffer.slice(0, n));
    }
    await writing;
    assert.deepEqual(concat(parts), sent);
    assert.ok(largest > 64 * 1024, `a read spans deliveries (largest read ${largest} bytes)`);
    assert.equal(await stream.read(new Uint8Array(10)), null, "EOF stays EOF");
  } finally {
    pair.close();
  }
});

Deno.test("a reader that does not read stops the socket: what waits in the stream stays bounded", async () => {
  const pair = await socketPair();
  try {
    const stream = new NodeSocketStream(pair.server);
    // One read starts the flow; then nobody reads while the client sends 16 MiB.
    await writeAll(pair.client, new Uint8Array([1]));
    assert.equal(await stream.read(new Uint8Array(1)), 1);
    const chunk = new Uint8Array(64 * 1024).fill(9);
    let sent = 0;
    const writing = (async () => {
      while (sent < 16 * 1024 * 1024) {
        await writeAll(pair.client, chunk);
        sent += chunk.length;
      }
    })();
    await sleep(1000);
    const held = stream.buffered + pair.server.readableLength;
    assert.ok(held <= 2 * 1024 * 1024, `${held} bytes held in the process for a stalled reader`);
    assert.ok(sent < 16 * 1024 * 1024, "the client is held back by TCP");
    // Reading resumes the flow and everything arrives.
    let received = 0;
    const buffer = new Uint8Array(256 * 1024);
    while (received < 16 * 1024 * 1024) {
      const n = await deadline(stream.read(buffer), 5000, "a read after the stall");
      assert.ok(n !== null);
      received += n;
    }
    await writing;
    assert.equal(received, sent);
  } finally {
    pair.close();
  }
});

Deno.test("a socket paused by someone else (node:tls pauses itself) does not leave a reader waiting", async () => {
  const pair = await socketPair();
  try {
    const stream = new NodeSocketStream(pair.server);
    await writeAll(pair.client, new Uint8Array([1, 2, 3]));
    assert.equal(await stream.read(new Uint8Array(3)), 3);
    // The stream let the socket flow; now its other user pauses it behind the stream's back.
    pair.server.pause();
    await writeAll(pair.client, new Uint8Array([4, 5]));
    const buffer = new Uint8Array(2);
    assert.equal(await deadline(stream.read(buffer), 2000, "a read after an outside pause"), 2);
    assert.deepEqual([...buffer], [4, 5]);
  } finally {
    pair.close();
  }
});

Deno.test("the gate closes while the reader is behind and opens when it reads (what feeds a TLS socket stops)", async () => {
  const pair = await socketPair();
  try {
    const gate = new ReadGate();
    const stream = new NodeSocketStream(pair.server, undefined, gate);
    await writeAll(pair.client, new Uint8Array([1]));
    assert.equal(await stream.read(new Uint8Array(1)), 1);
    assert.equal(gate.open, true);
    let sent = 0;
    const chunk = new Uint8Array(64 * 1024);
    const writing = (async () => {
      while (sent < 4 * 1024 * 1024) {
        await writeAll(pair.client, chunk);
        sent += chunk.length;
      }
    })();
    await waitFor(() => !gate.open, 3000, "the gate to close while nobody reads");
    let reopened = false;
    gate.whenOpen(() => reopened = true);
    assert.equal(reopened, false);
    let received = 0;
    const buffer = new Uint8Array(256 * 1024);
    while (received < 4 * 1024 * 1024) received += (await stream.read(buffer))!;
    await writing;
    assert.ok(reopened && gate.open, "reading reopened the gate and ran what waited for it");
  } finally {
    pair.close();
  }
});
