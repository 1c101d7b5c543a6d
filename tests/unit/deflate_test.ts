// permessage-deflate: the offers as browsers and libraries write them, what the proxy answers, and the codecs
// (checked against zlib's own inflate, and a deflate bomb stopped at the bound).
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  DEFLATE_WINDOW_BITS,
  deflateMessage,
  inflateMessage,
  MessageTooBig,
  MIN_COMPRESSED_SIZE,
  negotiateDeflate,
  parseExtensions,
} from "../../lib/websocket/deflate.ts";

const params = (entries: [string, string | true][]) => new Map(entries);

Deno.test("Sec-WebSocket-Extensions parsing: lists, parameters, quoted values; garbage is undefined", () => {
  assert.deepEqual(parseExtensions("permessage-deflate; client_max_window_bits"), [
    { name: "permessage-deflate", params: params([["client_max_window_bits", true]]) },
  ]);
  assert.deepEqual(
    parseExtensions(
      'permessage-deflate; server_max_window_bits="10" , x-webkit-deflate-frame,foo;a=1',
    ),
    [
      { name: "permessage-deflate", params: params([["server_max_window_bits", "10"]]) },
      { name: "x-webkit-deflate-frame", params: params([]) },
      { name: "foo", params: params([["a", "1"]]) },
    ],
  );
  assert.deepEqual(parseExtensions(""), []);
  for (
    const bad of ["permessage-deflate; ", "a;b=", 'a; b="unterminated', "a b", "(x)", 'a; b="x\\"']
  ) {
    assert.equal(parseExtensions(bad), undefined, bad);
  }
});

const RESPONSE = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

Deno.test("negotiation: what Chrome, Firefox and Python websockets offer is accepted; what cannot be honoured is declined", () => {
  const offer = (text: string) => negotiateDeflate(parseExtensions(text)!);
  // Chrome and Firefox.
  assert.equal(
    offer("permessage-deflate; client_max_window_bits")?.response,
    `${RESPONSE}; server_max_window_bits=${DEFLATE_WINDOW_BITS}`,
  );
  // Python websockets 10.
  assert.equal(
    offer("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")?.response,
    `${RESPONSE}; server_max_window_bits=12`,
  );
  const small = offer("permessage-deflate; server_no_context_takeover; server_max_window_bits=8")!;
  assert.equal(small.response, `${RESPONSE}; server_max_window_bits=8`);
  assert.equal(
    small.serverWindowBits,
    9,
    "zlib's raw deflate has no 8-bit window: 9, within the 8 asked",
  );
  // Declined: not offered, bad values, unknown parameters; a later acceptable offer is taken.
  for (
    const declined of [
      "",
      "x-webkit-deflate-frame",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; mystery",
    ]
  ) {
    assert.equal(offer(declined), undefined, declined);
  }
  assert.equal(
    offer("permessage-deflate; mystery, permessage-deflate")?.response,
    `${RESPONSE}; server_max_window_bits=${DEFLATE_WINDOW_BITS}`,
  );
});

Deno.test("deflateMessage: a message inflates back with zlib's own inflate; short or incompressible ones stay plain", () => {
  const line = "2026-12-01T02:00:00Z INFO websockify session ended by client (1000): 1234 bytes\n";
  const data = new TextEncoder().encode(line.repeat(20));
  const compressed = deflateMessage(data, 15)!;
  assert.ok(compressed.length < data.length / 10, `${compressed.length} of ${data.length}`);
  const back = zlib.inflateRawSync(Uint8Array.from([...compressed, 0, 0, 0xff, 0xff]), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  assert.equal(new TextDecoder().decode(back), line.repeat(20));
  assert.equal(deflateMessage(new Uint8Array(MIN_COMPRESSED_SIZE - 1).fill(65), 15), undefined);
  assert.equal(deflateMessage(crypto.getRandomValues(new Uint8Array(4096)), 15), undefined);
  assert.ok(
    deflateMessage(new Uint8Array(MIN_COMPRESSED_SIZE).fill(65), 9)!.length < MIN_COMPRESSED_SIZE,
  );
});

Deno.test("inflateMessage: a client's message comes back whole; a deflate bomb stops at the bound; garbage is an error", () => {
  const text = new TextEncoder().encode("hello ".repeat(1000));
  const compressed = zlib.deflateRawSync(text, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  const payload = compressed.subarray(0, compressed.length - 4); // without the sync tail, as on the wire
  assert.deepEqual(inflateMessage(payload, 1 << 20), text);
  // 1 GiB of zeros deflates to about 1 MB; the bound stops the inflation at 1 MiB.
  const bombSource = zlib.deflateRawSync(new Uint8Array(64 << 20), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  const started = performance.now();
  assert.throws(
    () => inflateMessage(bombSource.subarray(0, bombSource.length - 4), 1 << 20),
    MessageTooBig,
  );
  assert.ok(performance.now() - started < 1000);
  assert.throws(
    () => inflateMessage(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x12]), 1 << 20),
    /not deflate data/,
  );
});

Deno.test("inflateMessage: a message cut short is an error (not a shorter message, nor garbage); empty ones, a final block, the exact bound", () => {
  const text = new TextEncoder().encode(
    Array.from({ length: 100 }, (_, i) => `line ${i} of a log\n`).join(""),
  );
  const compressed = zlib.deflateRawSync(text, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  const payload = compressed.subarray(0, compressed.length - 4);
  for (let cut = 1; cut < payload.length; cut++) {
    assert.throws(
      () => inflateMessage(payload.subarray(0, cut), 1 << 20),
      /not deflate data/,
      `${cut}`,
    );
  }
  // The bound is the most a message may be: exactly that passes, one byte more does not.
  assert.equal(inflateMessage(payload, text.length).length, text.length);
  assert.throws(() => inflateMessage(payload, text.length - 1), MessageTooBig);
  // An empty message, as RFC 7692 §7.2.3.6 writes it (00), and as no bytes at all.
  assert.equal(inflateMessage(new Uint8Array([0x00]), 10).length, 0);
  assert.equal(inflateMessage(new Uint8Array(0), 10).length, 0);
  // A sender may end a message with a final block (BFINAL, §7.2.3.3 allows it).
  const final = zlib.deflateRawSync(text);
  assert.deepEqual(inflateMessage(final, 1 << 20), text);
});

Deno.test("offers: one with a repeated parameter or an escaped quote is declined alone; a later acceptable offer is taken", () => {
  const offer = (text: string) => negotiateDeflate(parseExtensions(text) ?? []);
  // RFC 7692 §5: an offer with a parameter twice is declined, and the next one considered (RFC 7692 §5.1).
  assert.deepEqual(parseExtensions("a; b; b=1"), [
    { name: "a", params: params([["b", true]]), repeated: true },
  ]);
  assert.equal(
    offer("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
    undefined,
  );
  assert.equal(
    offer(
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=12, permessage-deflate",
    )?.response,
    `${RESPONSE}; server_max_window_bits=${DEFLATE_WINDOW_BITS}`,
  );
  // A quoted string's escapes (RFC 9110 §5.6.4): a quote or a comma inside is part of the value.
  assert.deepEqual(
    parseExtensions('x; a="q\\"t, y", permessage-deflate; server_max_window_bits="1\\2"'),
    [
      { name: "x", params: params([["a", 'q"t, y']]) },
      { name: "permessage-deflate", params: params([["server_max_window_bits", "12"]]) },
    ],
  );
  assert.equal(
    offer('x; a="q\\"t", permessage-deflate; server_max_window_bits="1\\2"')?.response,
    `${RESPONSE}; server_max_window_bits=12`,
  );
});
