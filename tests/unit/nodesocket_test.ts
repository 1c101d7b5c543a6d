// A node:net socket as a ByteStream: reads across deliveries in order, bounded buffering, and the hand-over of
// unread bytes (to node:tls) — with real loopback sockets.
import assert from "node:assert/strict";
import net from "node:net";
import { writeAll } from "../../lib/io.ts";
import { DirectSocketStream, NodeSocketStream } from "../../lib/nodesocket.ts";
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

Deno.test("release gives the unread bytes back to the socket, in order, ahead of the rest", async () => {
  const pair = await socketPair();
  try {
    const stream = new NodeSocketStream(pair.server);
    const sent = pseudoRandomBytes(200_000, 3);
    await writeAll(pair.client, sent);
    const first = new Uint8Array(1000);
    const n = await stream.read(first);
    assert.ok(n !== null && n > 0);
    await waitFor(() => stream.buffered > 0, 2000, "more bytes delivered than read");
    assert.equal(stream.canHandOver, true);
    stream.release();
    // Another reader takes over the socket and gets the rest, from where the stream stopped.
    const rest: Uint8Array[] = [];
    let restLength = 0;
    pair.server.on("data", (chunk: Uint8Array) => {
      rest.push(chunk);
      restLength += chunk.length;
    });
    pair.server.resume();
    await waitFor(() => n + restLength >= sent.length, 5000, "the rest of the bytes");
    assert.deepEqual(concat([first.subarray(0, n), ...rest]), sent);
  } finally {
    pair.close();
  }
});

Deno.test("a socket whose peer already left cannot be handed over", async () => {
  const pair = await socketPair();
  try {
    const stream = new NodeSocketStream(pair.server);
    await writeAll(pair.client, new Uint8Array([0x16, 3, 1]));
    assert.equal(await stream.read(new Uint8Array(1)), 1);
    pair.client.close();
    await waitFor(
      () => pair.server.destroyed || pair.server.readableEnded || stream.buffered === 0,
      2000,
      "the peer's EOF",
    );
    await sleep(100);
    assert.equal(stream.canHandOver, false);
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

/** A DirectSocketStream over a fresh pair, after `first` was read through the NodeSocketStream (the sniff). */
async function directPair(first: Uint8Array) {
  const pair = await socketPair();
  const sniffing = new NodeSocketStream(pair.server);
  await writeAll(pair.client, first);
  const sniffed = new Uint8Array(first.length);
  let got = 0;
  while (got < first.length) got += (await sniffing.read(sniffed.subarray(got)))!;
  const direct = DirectSocketStream.takeOver(sniffing);
  assert.ok(direct, "a plain node:net socket can be read directly");
  return { ...pair, direct };
}

Deno.test("direct reads: every byte in order, straight into the reader's buffer, then EOF", async () => {
  const { client, direct, close } = await directPair(new Uint8Array([1, 2, 3]));
  try {
    const sent = pseudoRandomBytes(2 * 1024 * 1024 + 5, 11);
    const writing = (async () => {
      for (let offset = 0; offset < sent.length; offset += 50_000) {
        await writeAll(client, sent.subarray(offset, offset + 50_000));
      }
      await client.closeWrite();
    })();
    const parts: Uint8Array[] = [];
    const sizes = [512, 3, 256 * 1024, 65536];
    for (let i = 0;; i++) {
      const buffer = new Uint8Array(sizes[i % sizes.length]);
      const n = await deadline(direct.read(buffer), 5000, "a direct read");
      if (n === null) break;
      parts.push(buffer.slice(0, n));
    }
    await writing;
    assert.deepEqual(concat(parts), sent);
    // The stream can still answer after the peer's EOF (half-open).
    await writeAll(direct, new Uint8Array([42]));
    await direct.closeWrite();
    const answer = new Uint8Array(2);
    assert.equal(await client.read(answer), 1);
    assert.equal(answer[0], 42);
  } finally {
    close();
  }
});

Deno.test("direct reads: bytes that arrive after a read never touch that read's buffer; nothing is read unasked", async () => {
  const { client, server, direct, close } = await directPair(new Uint8Array([9]));
  try {
    await writeAll(client, new Uint8Array(100).fill(1));
    const mine = new Uint8Array(4096);
    const n = await deadline(direct.read(mine), 2000, "the first read");
    assert.ok(n !== null && n > 0);
    const snapshot = mine.slice();
    // The buffer is "given back" (it could now serve another session); the client keeps sending 8 MiB.
    let sent = 0;
    const flood = (async () => {
      const chunk = new Uint8Array(65536).fill(2);
      while (sent < 8 * 1024 * 1024) {
        await writeAll(client, chunk);
        sent += chunk.length;
      }
    })();
    await sleep(800);
    assert.deepEqual(mine, snapshot, "no byte landed in a buffer after its read returned");
    assert.ok(
      sent < 8 * 1024 * 1024,
      "nothing reads the socket while no read is asked for: TCP holds the client",
    );
    assert.equal(server.readableLength, 0);
    // Reading again takes everything, in order.
    let received = n;
    const buffer = new Uint8Array(256 * 1024);
    while (received < 100 + 8 * 1024 * 1024) {
      const got = await deadline(direct.read(buffer), 5000, "reads after the flood");
      assert.ok(got !== null);
      received += got;
    }
    await flood;
    assert.equal(received, 100 + sent);
  } finally {
    close();
  }
});

Deno.test("direct reads: a peer that ended before the take-over still reads to EOF", async () => {
  const pair = await socketPair();
  try {
    const sniffing = new NodeSocketStream(pair.server);
    await writeAll(pair.client, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
    await pair.client.closeWrite();
    assert.ok((await sniffing.read(new Uint8Array(4))) === 4);
    await waitFor(() => !sniffing.canHandOver, 2000, "the peer's EOF to be seen");
    // Nothing to take over: the stream that saw the EOF keeps serving, every byte then EOF.
    assert.equal(DirectSocketStream.takeOver(sniffing), undefined);
    const rest = new Uint8Array(64);
    const n = await sniffing.read(rest);
    assert.equal(new TextDecoder().decode(rest.subarray(0, n!)), "/ HTTP/1.1\r\n\r\n");
    assert.equal(await sniffing.read(rest), null);
  } finally {
    pair.close();
  }
});
