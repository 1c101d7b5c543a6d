// The session protocol as pure code: byte vectors in, actions out. No sockets.
import assert from "node:assert/strict";
import { CloseCode, encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import {
  closeFrame,
  ServerSession,
  type SessionAction,
  TARGET_HEADROOM,
} from "../../lib/websocket/protocol.ts";
import { Receiver } from "../../lib/websocket/receiver.ts";
import { concat } from "../helpers/bytes.ts";

const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
const text = (s: string) => new TextEncoder().encode(s);
const client = (opcode: number, payload: Uint8Array | string = "", fin = true) =>
  encodeFrame(opcode, typeof payload === "string" ? text(payload) : payload, { fin, mask: MASK });
const join = (...parts: Uint8Array[]) => concat(parts);
/** What the client would decode from a frame the session sends. */
const decode = (frame: Uint8Array) => new Receiver({ requireMask: false }).receive(frame)[0];

/** Actions in a comparable form: forwarded text, sent frames decoded. */
function describe(actions: SessionAction[]): unknown[] {
  return actions.map((action) => {
    if (action.kind === "forward") return ["forward", new TextDecoder().decode(action.bytes)];
    if (action.kind === "end") return ["end"];
    const event = decode(action.frame);
    return ["send", event.kind, "code" in event ? event.code : undefined, action.closing];
  });
}

Deno.test("binary frames of one read become one forward, packed in place", () => {
  const session = new ServerSession("binary");
  const chunk = join(client(Opcode.Binary, "abc"), client(Opcode.Binary, "def"));
  const actions = session.receive(chunk);
  assert.deepEqual(describe(actions), [["forward", "abcdef"]]);
  assert.equal((actions[0] as { bytes: Uint8Array }).bytes.buffer, chunk.buffer, "no copy");
});

Deno.test("a ping between fragments: data before it, the pong, data after it, in order and intact", () => {
  const session = new ServerSession("binary");
  const chunk = join(
    client(Opcode.Binary, "one-", false),
    client(Opcode.Ping, "p"),
    client(Opcode.Continuation, "two-", false),
    client(Opcode.Continuation, "three"),
  );
  assert.deepEqual(describe(session.receive(chunk)), [
    ["forward", "one-"],
    ["send", "pong", undefined, false],
    ["forward", "two-three"],
  ]);
});

Deno.test("a client close: earlier data forwarded, the close echoed with its code (1000 without one), then end", () => {
  const withCode = new ServerSession("binary");
  const chunk = join(
    client(Opcode.Binary, "last"),
    client(Opcode.Close, new Uint8Array([0x0f, 0xa0])),
  );
  assert.deepEqual(describe(withCode.receive(chunk)), [
    ["forward", "last"],
    ["send", "close", 4000, true],
    ["end"],
  ]);
  assert.equal(withCode.closedBy, "client");
  assert.equal(withCode.code, 4000);
  const bare = new ServerSession("binary");
  assert.deepEqual(describe(bare.receive(client(Opcode.Close))), [
    ["send", "close", 1000, true],
    ["end"],
  ]);
});

Deno.test("a close after ours is not echoed; target data is dropped once closing", () => {
  const session = new ServerSession("binary");
  const ours = session.close(CloseCode.Normal, "Target closed", "target");
  assert.equal(decode(ours!).kind, "close");
  assert.equal(session.close(CloseCode.GoingAway, "again", "server"), undefined, "once");
  assert.equal(session.closedBy, "target");
  const buffer = new Uint8Array(TARGET_HEADROOM + 3);
  assert.equal(session.frameTargetData(buffer, TARGET_HEADROOM, 3), undefined);
  assert.deepEqual(describe(session.receive(client(Opcode.Close))), [["end"]]);
});

Deno.test("a protocol error: close 1002, nothing forwarded; the client's next bytes end the session", () => {
  const session = new ServerSession("binary");
  const unmasked = encodeFrame(Opcode.Binary, text("x"));
  assert.deepEqual(describe(session.receive(join(client(Opcode.Binary, "ok"), unmasked))), [
    ["forward", "ok"],
    ["send", "close", 1002, true],
  ]);
  assert.equal(session.closedBy, "server");
  assert.deepEqual(describe(session.receive(client(Opcode.Close))), [["end"]]);
});

Deno.test("base64 framing: text frames decoded (across pieces); invalid base64 closes 1007", () => {
  const session = new ServerSession("base64");
  assert.deepEqual(describe(session.receive(client(Opcode.Text, "aGVs", false))), [
    ["forward", "hel"],
  ]);
  assert.deepEqual(describe(session.receive(client(Opcode.Continuation, "bG8="))), [
    ["forward", "lo"],
  ]);
  const target = new Uint8Array(TARGET_HEADROOM + 2);
  target.set(text("hi"), TARGET_HEADROOM);
  const frame = decode(session.frameTargetData(target, TARGET_HEADROOM, 2)!);
  assert.equal(frame.kind, "data");
  assert.equal(new TextDecoder().decode((frame as { payload: Uint8Array }).payload), "aGk=");
  assert.deepEqual(describe(session.receive(client(Opcode.Text, "!!!!"))), [
    ["send", "close", 1007, true],
  ]);
  assert.deepEqual(
    describe(session.receive(client(Opcode.Text, "aGk="))),
    [],
    "no forwarding after it",
  );
});

Deno.test("binary target data is framed in place, in the headroom", () => {
  const session = new ServerSession("binary");
  const buffer = new Uint8Array(TARGET_HEADROOM + 300);
  buffer.fill(7, TARGET_HEADROOM);
  const frame = session.frameTargetData(buffer, TARGET_HEADROOM, 300)!;
  assert.equal(frame.buffer, buffer.buffer, "no copy");
  assert.equal(frame.length, 4 + 300);
  assert.deepEqual(frame.subarray(0, 4), new Uint8Array([0x82, 126, 1, 44]));
});

Deno.test("heartbeat: a ping per tick, a pong resets the count, two unanswered pings: dead", () => {
  const session = new ServerSession("binary");
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping");
  assert.deepEqual(describe(session.receive(client(Opcode.Pong))), []);
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping");
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping");
  assert.equal(session.heartbeat(), "dead");
  assert.equal(session.closedBy, "heartbeat");
  assert.equal(session.code, 1006);
  assert.equal(
    session.close(CloseCode.Normal, "late", "target"),
    undefined,
    "nothing to a dead client",
  );
});

Deno.test("a client gone: no close is sent to it, the reason says how it left", () => {
  const session = new ServerSession("binary");
  session.clientGone("Client went away; target not reading");
  assert.equal(session.close(CloseCode.Normal, "Target closed", "target"), undefined);
  assert.equal(session.closedBy, "client-dropped");
  assert.equal(session.reason, "Client went away; target not reading");
  assert.deepEqual(closeFrame(1000, "x"), encodeFrame(Opcode.Close, new Uint8Array([3, 232, 120])));
});

Deno.test("heartbeat without judging (the client's answer cannot be seen yet): a ping, never a verdict", () => {
  const session = new ServerSession("binary");
  for (let i = 0; i < 5; i++) {
    assert.equal(decode(session.heartbeat(false) as Uint8Array).kind, "ping");
  }
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping", "not dead: uncounted pings");
  session.clientActive(); // bytes arrived (not decoded yet)
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping");
  assert.equal(decode(session.heartbeat() as Uint8Array).kind, "ping");
  assert.equal(session.heartbeat(), "dead");
});

Deno.test("maxMessageSize: what came before is forwarded, then close 1009; nothing more forwarded; the close reply ends it", () => {
  const session = new ServerSession("binary", { maxMessageSize: 8 });
  const first = join(client(Opcode.Binary, "ok"), client(Opcode.Binary, "12345", false));
  assert.deepEqual(describe(session.receive(first)), [["forward", "ok12345"]]);
  // The fragment that passes the limit: refused at its header, with 1009.
  const over = join(client(Opcode.Continuation, "6789"), client(Opcode.Binary, "after"));
  assert.deepEqual(describe(session.receive(over)), [["send", "close", CloseCode.TooBig, true]]);
  assert.equal(session.code, CloseCode.TooBig);
  assert.equal(session.reason, "Message over 8 bytes");
  assert.equal(session.closedBy, "server");
  // The client's close reply is still decoded: the session ends cleanly (no second close).
  assert.deepEqual(describe(session.receive(client(Opcode.Close, new Uint8Array([0x03, 0xf1])))), [
    ["end"],
  ]);
  assert.equal(session.code, CloseCode.TooBig);
});
