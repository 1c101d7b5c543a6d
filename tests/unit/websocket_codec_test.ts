// The frame codec, the streaming receiver and the UTF-8 validator, with byte vectors and no sockets.
import assert from "node:assert/strict";
import {
  applyMask,
  encodeClosePayload,
  encodeFrame,
  headerLength,
  Opcode,
  writeHeaderBefore,
} from "../../lib/websocket/frames.ts";
import { Receiver, type ReceiverEvent } from "../../lib/websocket/receiver.ts";
import { Utf8Validator } from "../../lib/websocket/utf8.ts";
import { Base64MessageDecoder, encodeBase64 } from "../../lib/websocket/base64.ts";
import { concat, pseudoRandomBytes } from "../helpers/bytes.ts";

const hex = (text: string) =>
  new Uint8Array(text.split(/\s+/).filter((h) => h).map((h) => parseInt(h, 16)));
const bytes = (text: string) => new TextEncoder().encode(text);
const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** Feeds `input` whole, then byte by byte, and checks both give the same events. */
function decodeBothWays(input: Uint8Array, requireMask = true): ReceiverEvent[] {
  const whole = new Receiver({ requireMask }).receive(input.slice()).map(copyEvent);
  const receiver = new Receiver({ requireMask });
  const pieces: ReceiverEvent[] = [];
  for (const byte of input) pieces.push(...receiver.receive(new Uint8Array([byte])).map(copyEvent));
  assert.deepEqual(merge(pieces), merge(whole), "byte-by-byte decoding must match");
  return whole;
}

function copyEvent(event: ReceiverEvent): ReceiverEvent {
  return "payload" in event ? { ...event, payload: event.payload.slice() } : event;
}

/** Joins consecutive data pieces of one message, so split and whole decodings compare equal. */
function merge(events: ReceiverEvent[]): unknown[] {
  const out: unknown[] = [];
  let pending: Uint8Array[] = [];
  for (const event of events) {
    if (event.kind === "data") {
      pending.push(event.payload);
      if (event.messageEnd) {
        const total = new Uint8Array(pending.reduce((s, p) => s + p.length, 0));
        let o = 0;
        for (const p of pending) total.set(p, (o += p.length) - p.length);
        out.push({ kind: "message", text: event.text, payload: Array.from(total) });
        pending = [];
      }
    } else {
      out.push(
        event.kind === "ping" || event.kind === "pong"
          ? { ...event, payload: Array.from(event.payload) }
          : event,
      );
    }
  }
  if (pending.length) out.push({ kind: "partial", count: pending.length });
  return out;
}

Deno.test("RFC 6455 §5.7 examples decode", () => {
  // A single-frame unmasked text message, with requireMask off (a client decoding server frames).
  assert.deepEqual(merge(decodeBothWays(hex("81 05 48 65 6c 6c 6f"), false)), [
    { kind: "message", text: true, payload: Array.from(bytes("Hello")) },
  ]);
  // A single-frame masked text message.
  assert.deepEqual(merge(decodeBothWays(hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"))), [
    { kind: "message", text: true, payload: Array.from(bytes("Hello")) },
  ]);
  // A fragmented unmasked text message.
  assert.deepEqual(merge(decodeBothWays(hex("01 03 48 65 6c 80 02 6c 6f"), false)), [
    { kind: "message", text: true, payload: Array.from(bytes("Hello")) },
  ]);
  // Unmasked ping with "Hello"; masked pong with "Hello".
  assert.deepEqual(merge(decodeBothWays(hex("89 05 48 65 6c 6c 6f"), false)), [
    { kind: "ping", payload: Array.from(bytes("Hello")) },
  ]);
  assert.deepEqual(merge(decodeBothWays(hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"))), [
    { kind: "pong", payload: Array.from(bytes("Hello")) },
  ]);
});

Deno.test("server frames: minimal length encoding at 0/125/126/65535/65536, unmasked", () => {
  for (const [length, header] of [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10]]) {
    assert.equal(headerLength(length), header, `header for ${length}`);
    const payload = pseudoRandomBytes(length, length + 7);
    const frame = encodeFrame(Opcode.Binary, payload);
    assert.equal(frame.length, header + length);
    assert.equal(frame[0], 0x82);
    assert.equal(frame[1] & 0x80, 0, "server frames are not masked");
    if (header === 2) assert.equal(frame[1], length);
    if (header === 4) {
      assert.deepEqual([frame[1], frame[2], frame[3]], [126, length >> 8, length & 0xff]);
    }
    if (header === 10) {
      assert.deepEqual(Array.from(frame.subarray(1, 10)), [127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
    const events = new Receiver({ requireMask: false }).receive(frame);
    assert.equal(events.length, 1);
    assert.deepEqual(events[0].kind === "data" && events[0].payload, payload);
  }
  // websockify's own vectors: ping() -> 89 00, pong() -> 8a 00, ping("foo") -> 89 03 'foo'.
  assert.deepEqual(encodeFrame(Opcode.Ping), hex("89 00"));
  assert.deepEqual(encodeFrame(Opcode.Pong), hex("8a 00"));
  assert.deepEqual(encodeFrame(Opcode.Ping, bytes("foo")), hex("89 03 66 6f 6f"));
});

Deno.test("writeHeaderBefore places the header in headroom, ending at the payload", () => {
  const buffer = new Uint8Array(10 + 300);
  buffer.fill(7, 10);
  const start = writeHeaderBefore(buffer, 10, Opcode.Binary, 300);
  assert.equal(start, 6);
  assert.deepEqual(Array.from(buffer.subarray(6, 10)), [0x82, 126, 1, 44]);
  assert.throws(() => writeHeaderBefore(new Uint8Array(4), 1, Opcode.Binary, 5), RangeError);
});

Deno.test("masked frames of every length round-trip through the receiver, whatever the split", () => {
  for (const length of [0, 1, 3, 4, 5, 125, 126, 127, 1000, 65535, 65536, 70000]) {
    const payload = pseudoRandomBytes(length, length + 1);
    const frame = encodeFrame(Opcode.Binary, payload, { mask: MASK });
    for (const split of [1, 2, 7, 14, 4096]) {
      const receiver = new Receiver();
      const got: number[] = [];
      let ended = false;
      for (let i = 0; i < frame.length; i += split) {
        for (const event of receiver.receive(frame.slice(i, i + split))) {
          assert.equal(event.kind, "data");
          if (event.kind === "data") {
            got.push(...event.payload);
            ended ||= event.messageEnd;
          }
        }
      }
      assert.ok(ended, `message end for ${length}/${split}`);
      assert.deepEqual(new Uint8Array(got), payload, `payload ${length} split ${split}`);
    }
  }
});

Deno.test("applyMask matches a byte-wise XOR at every alignment and phase", () => {
  const data = pseudoRandomBytes(67, 3);
  for (let offset = 0; offset < 4; offset++) {
    for (let phase = 0; phase < 4; phase++) {
      const buffer = new Uint8Array(80);
      buffer.set(data, offset);
      const view = buffer.subarray(offset, offset + data.length);
      const next = applyMask(view, MASK, phase);
      for (let i = 0; i < data.length; i++) assert.equal(view[i], data[i] ^ MASK[(phase + i) & 3]);
      assert.equal(next, (phase + data.length) & 3);
    }
  }
});

Deno.test("an announced huge length allocates nothing and streams what arrives", () => {
  const receiver = new Receiver();
  const header = hex("82 ff 00 00 00 ff ff ff ff ff 00 00 00 00"); // 2^40-ish length, zero mask
  const events = receiver.receive(header);
  assert.deepEqual(events, []);
  const piece = receiver.receive(new Uint8Array(1000).fill(9));
  assert.equal(piece.length, 1);
  assert.ok(piece[0].kind === "data" && piece[0].payload.length === 1000 && !piece[0].messageEnd);
});

Deno.test("protocol violations close with 1002 (or 1007/1009) and stop decoding", () => {
  const cases: [string, Uint8Array, number, RegExp][] = [
    ["unmasked frame", hex("82 03 01 02 03"), 1002, /not masked/],
    ["RSV1 set", encodeFrame(Opcode.Binary, bytes("a"), { mask: MASK, rsv: 4 }), 1002, /Reserved/],
    ["RSV3 set", encodeFrame(Opcode.Binary, bytes("a"), { mask: MASK, rsv: 1 }), 1002, /Reserved/],
    ["opcode 3", encodeFrame(0x3, bytes("a"), { mask: MASK }), 1002, /Unknown opcode 0x03/],
    ["opcode 0xB", encodeFrame(0xb, bytes("a"), { mask: MASK }), 1002, /Unknown opcode 0x0b/],
    [
      "control over 125",
      encodeFrame(Opcode.Ping, new Uint8Array(126), { mask: MASK }),
      1002,
      /125/,
    ],
    [
      "fragmented ping",
      encodeFrame(Opcode.Ping, bytes("x"), { mask: MASK, fin: false }),
      1002,
      /Fragmented/,
    ],
    [
      "continuation first",
      encodeFrame(Opcode.Continuation, bytes("x"), { mask: MASK }),
      1002,
      /continuation/,
    ],
    [
      "new frame inside a message",
      concatFrames(
        encodeFrame(Opcode.Binary, bytes("a"), { mask: MASK, fin: false }),
        encodeFrame(Opcode.Binary, bytes("b"), { mask: MASK }),
      ),
      1002,
      /new frame/,
    ],
    [
      "64-bit length top bit",
      hex("82 ff 80 00 00 00 00 00 00 00 00 00 00 00"),
      1002,
      /significant bit/,
    ],
    ["length past 2^53", hex("82 ff 00 20 00 00 00 00 00 00 00 00 00 00"), 1009, /too large/],
    [
      "invalid UTF-8 text",
      encodeFrame(Opcode.Text, hex("ce ba e1 bd"), { mask: MASK }),
      1007,
      /UTF-8/,
    ],
    ["close with 1 byte", encodeFrame(Opcode.Close, hex("03"), { mask: MASK }), 1002, /1-byte/],
    ["close code 1005", encodeFrame(Opcode.Close, hex("03 ed"), { mask: MASK }), 1002, /1005/],
    ["close code 999", encodeFrame(Opcode.Close, hex("03 e7"), { mask: MASK }), 1002, /999/],
    [
      "close reason not UTF-8",
      encodeFrame(Opcode.Close, hex("03 e8 ff"), { mask: MASK }),
      1007,
      /UTF-8/,
    ],
  ];
  for (const [name, input, code, reason] of cases) {
    const receiver = new Receiver();
    const events = receiver.receive(input.slice());
    const last = events.at(-1)!;
    assert.equal(last.kind, "error", name);
    assert.ok(
      last.kind === "error" && last.code === code && reason.test(last.reason),
      `${name}: ${JSON.stringify(last)}`,
    );
    assert.ok(receiver.failed, name);
    assert.deepEqual(
      receiver.receive(encodeFrame(Opcode.Binary, bytes("z"), { mask: MASK })),
      [],
      name,
    );
  }
});

const concatFrames = (...frames: Uint8Array[]) => concat(frames);

Deno.test("ping between fragments, empty frames and close frames decode in order", () => {
  const input = concatFrames(
    encodeFrame(Opcode.Binary, bytes("ab"), { mask: MASK, fin: false }),
    encodeFrame(Opcode.Ping, bytes("p"), { mask: MASK }),
    encodeFrame(Opcode.Continuation, new Uint8Array(0), { mask: MASK, fin: false }),
    encodeFrame(Opcode.Continuation, bytes("cd"), { mask: MASK }),
    encodeFrame(Opcode.Binary, new Uint8Array(0), { mask: MASK }),
    encodeFrame(Opcode.Close, encodeClosePayload(4000, "bye"), { mask: MASK }),
    encodeFrame(Opcode.Close, new Uint8Array(0), { mask: MASK }),
  );
  assert.deepEqual(merge(decodeBothWays(input)), [
    { kind: "ping", payload: [0x70] },
    { kind: "message", text: false, payload: Array.from(bytes("abcd")) },
    { kind: "message", text: false, payload: [] },
    { kind: "close", code: 4000, reason: "bye" },
    { kind: "close", code: undefined, reason: "" },
  ]);
});

Deno.test("text split inside a multi-byte character is valid; truncated text is not", () => {
  const euro = bytes("x€y"); // € is e2 82 ac
  const input = concatFrames(
    encodeFrame(Opcode.Text, euro.subarray(0, 2), { mask: MASK, fin: false }),
    encodeFrame(Opcode.Continuation, euro.subarray(2), { mask: MASK }),
  );
  assert.deepEqual(merge(decodeBothWays(input)), [
    { kind: "message", text: true, payload: Array.from(euro) },
  ]);
  const truncated = new Receiver().receive(
    encodeFrame(Opcode.Text, euro.subarray(0, 3), { mask: MASK }),
  );
  assert.equal(truncated.at(-1)!.kind, "error");
});

Deno.test("Utf8Validator accepts valid text and rejects overlongs, surrogates, out-of-range", () => {
  const valid = ["", "plain", "héllo", "€", "𝄞 music", "日本語", "\u{10FFFF}"];
  for (const text of valid) {
    const v = new Utf8Validator();
    assert.ok(v.push(bytes(text)) && v.end(), text);
  }
  const invalid = ["c0 80", "e0 80 80", "ed a0 80", "f4 90 80 80", "f8", "80", "c3 28", "ff"];
  for (const sequence of invalid) {
    const v = new Utf8Validator();
    assert.ok(!(v.push(hex(sequence)) && v.end()), sequence);
  }
});

Deno.test("base64 messages decode across arbitrary piece boundaries", () => {
  const data = pseudoRandomBytes(1000, 5);
  const text = bytes(encodeBase64(data));
  for (const split of [1, 3, 4, 5, 333]) {
    const decoder = new Base64MessageDecoder();
    const parts: number[] = [];
    for (let i = 0; i < text.length; i += split) {
      const end = Math.min(text.length, i + split);
      parts.push(...decoder.push(text.subarray(i, end), end === text.length));
    }
    assert.deepEqual(new Uint8Array(parts), data, `split ${split}`);
  }
  assert.throws(() => new Base64MessageDecoder().push(bytes("ab!d"), true));
});

Deno.test("close payloads are cut at 125 bytes on a character boundary", () => {
  const payload = encodeClosePayload(1011, "é".repeat(100));
  assert.ok(payload.length <= 125);
  assert.equal((payload[0] << 8) | payload[1], 1011);
  assert.doesNotThrow(() => new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2)));
});

Deno.test("maxMessageSize: judged on frame headers; the message over it is skipped, decoding goes on", () => {
  const frame = (opcode: number, payload: Uint8Array | string, fin = true) =>
    encodeFrame(opcode, typeof payload === "string" ? bytes(payload) : payload, {
      fin,
      mask: MASK,
    });
  const limit = 10;
  // At the limit: delivered. One byte over in one frame: reported at its header, none of it delivered.
  const atLimit = new Receiver({ maxMessageSize: limit }).receive(
    frame(Opcode.Binary, "0123456789"),
  );
  assert.deepEqual(atLimit.map((e) => e.kind), ["data"]);
  const over = new Receiver({ maxMessageSize: limit });
  // The header alone is enough to tell: the payload has not arrived yet.
  const header = frame(Opcode.Binary, new Uint8Array(11)).subarray(0, 6);
  assert.deepEqual(over.receive(header.slice()), [{ kind: "too-big", limit }]);
  assert.deepEqual(over.receive(new Uint8Array(11)), [], "its payload is skipped");
  // Fragments count together: the fragment that passes the limit is refused, those before it were given.
  const input = concat([
    frame(Opcode.Text, "012345", false),
    frame(Opcode.Ping, "p"),
    frame(Opcode.Continuation, "6789x", false),
    frame(Opcode.Continuation, "more"),
    frame(Opcode.Binary, "next"),
    frame(Opcode.Close, encodeClosePayload(1000, "")),
  ]);
  const events: ReceiverEvent[] = [];
  const receiver = new Receiver({ maxMessageSize: limit });
  for (const byte of input) events.push(...receiver.receive(new Uint8Array([byte])).map(copyEvent));
  // Consecutive data pieces joined, as text; other events by kind.
  const seen: string[] = [];
  for (const event of events) {
    const piece = event.kind === "data" ? `data:${new TextDecoder().decode(event.payload)}` : "";
    if (piece && seen.at(-1)?.startsWith("data:")) seen[seen.length - 1] += piece.slice(5);
    else seen.push(piece || event.kind);
  }
  assert.deepEqual(seen, ["data:012345", "ping", "too-big", "data:next", "close"]);
  // Huge announced lengths are refused at once, without waiting for any payload.
  const huge = new Receiver({ maxMessageSize: 1 << 20 });
  assert.deepEqual(huge.receive(hex("82 ff 00 00 00 ff ff ff ff ff 00 00 00 00")), [
    { kind: "too-big", limit: 1 << 20 },
  ]);
  // No limit (the default): the same frames are data.
  assert.deepEqual(
    new Receiver().receive(frame(Opcode.Binary, new Uint8Array(11))).map((e) => e.kind),
    ["data"],
  );
});
