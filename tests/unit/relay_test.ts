// The relay over in-memory stream pairs: the pumps, the half-close and the bounded closing wait, no sockets.
import assert from "node:assert/strict";
import { sleep } from "../../lib/deadline.ts";
import { writeAll } from "../../lib/io.ts";
import { Relay } from "../../lib/relay.ts";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { Receiver, type ReceiverEvent } from "../../lib/websocket/receiver.ts";
import { memoryStreamPair } from "../../lib/memory_stream.ts";

const MASK = new Uint8Array([1, 2, 3, 4]);
const text = (s: string) => new TextEncoder().encode(s);

/** Reads everything the relay sends to the client until EOF, decoded. */
async function clientEvents(
  stream: import("../../lib/io.ts").ByteStream,
): Promise<ReceiverEvent[]> {
  const receiver = new Receiver({ requireMask: false });
  const events: ReceiverEvent[] = [];
  const buffer = new Uint8Array(4096);
  while (true) {
    const n = await stream.read(buffer).catch(() => null);
    if (n === null) return events;
    for (const event of receiver.receive(buffer.subarray(0, n))) {
      events.push(event.kind === "data" ? { ...event, payload: event.payload.slice() } : event);
    }
  }
}

function setUp(closeTimeout = 200) {
  const [client, relayClient] = memoryStreamPair(8 * 1024);
  const [relayTarget, target] = memoryStreamPair(8 * 1024);
  const relay = new Relay(relayClient, relayTarget, { framing: "binary", closeTimeout });
  return { client, target, relay };
}

Deno.test("relay: client bytes reach the target, target bytes come back framed; a client close is echoed and the target gets EOF", async () => {
  const { client, target, relay } = setUp();
  const running = relay.run();
  const events = clientEvents(client);
  await writeAll(client, encodeFrame(Opcode.Binary, text("hello "), { mask: MASK }));
  await writeAll(client, encodeFrame(Opcode.Binary, text("world"), { mask: MASK }));
  const buffer = new Uint8Array(64);
  let got = "";
  while (got.length < 11) {
    const n = await target.read(buffer);
    got += new TextDecoder().decode(buffer.subarray(0, n!));
  }
  assert.equal(got, "hello world");
  await writeAll(target, text("back"));
  await writeAll(client, encodeFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]), { mask: MASK }));
  assert.equal(await target.read(buffer), null, "the target sees EOF after the client's close");
  target.close();
  const result = await running;
  const decoded = await events;
  assert.deepEqual(
    decoded.map((e) => e.kind === "data" ? new TextDecoder().decode(e.payload) : e.kind),
    ["back", "close"],
  );
  assert.equal(result.closedBy, "client");
  assert.equal(result.code, 1000);
  assert.equal(result.bytesFromClient, 11);
  assert.equal(result.bytesToClient, 4);
});

Deno.test("relay: target EOF delivers what it sent, then close 1000; a client that never answers is cut after the closing wait", async () => {
  const { client, target, relay } = setUp(150);
  const running = relay.run();
  const events = clientEvents(client);
  const big = new Uint8Array(50_000).fill(9); // more than the pairs buffer: backpressure both ways
  await writeAll(target, big);
  await target.closeWrite();
  const started = performance.now();
  const result = await running;
  const waited = performance.now() - started;
  const decoded = await events;
  const bytes = decoded.filter((e) => e.kind === "data")
    .reduce((n, e) => n + (e as { payload: Uint8Array }).payload.length, 0);
  assert.equal(bytes, 50_000);
  assert.equal(decoded.at(-1)?.kind, "close");
  assert.equal(result.closedBy, "target");
  assert.equal(result.reason, "Target closed");
  assert.ok(waited < 1000, `the closing wait is bounded (${waited} ms)`);
  target.close();
});

Deno.test("relay: a client that drops without a close frame: the target gets EOF at once", async () => {
  const { client, target, relay } = setUp();
  const running = relay.run();
  await writeAll(client, encodeFrame(Opcode.Binary, text("x"), { mask: MASK }));
  const buffer = new Uint8Array(16);
  assert.equal(await target.read(buffer), 1);
  client.close();
  assert.equal(await target.read(buffer), null);
  target.close();
  const result = await running;
  assert.equal(result.closedBy, "client-dropped");
  assert.equal(result.code, 1006);
});

Deno.test("relay: shutdown sends 1001 after what was owed, then a FIN", async () => {
  const { client, target, relay } = setUp();
  const running = relay.run();
  const events = clientEvents(client);
  await writeAll(target, text("owed"));
  await sleep(20);
  relay.shutdown();
  const decoded = await events; // ends at the FIN
  assert.deepEqual(decoded.map((e) => e.kind), ["data", "close"]);
  assert.equal((decoded[1] as { code?: number }).code, 1001);
  await writeAll(client, encodeFrame(Opcode.Close, new Uint8Array([0x03, 0xe9]), { mask: MASK }));
  const result = await running;
  assert.equal(result.closedBy, "server");
  client.close();
});
