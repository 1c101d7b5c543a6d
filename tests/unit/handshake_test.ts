// Handshake validation, subprotocol choice and the 101 answer (lib/websocket/handshake.ts), without sockets.
import assert from "node:assert/strict";
import {
  acceptKey,
  chooseSubprotocol,
  isUpgradeRequest,
  negotiate,
  switchingProtocols,
} from "../../lib/websocket/handshake.ts";
import type { HttpRequest } from "../../lib/http.ts";

function request(headers: Record<string, string>, method = "GET"): HttpRequest {
  return { method, target: "/", version: "HTTP/1.1", headers: new Map(Object.entries(headers)) };
}

const GOOD = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};

Deno.test("Sec-WebSocket-Accept vectors (RFC 6455 §1.3 and websockify's suite)", () => {
  assert.equal(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert.equal(acceptKey("DKURYVK9cRFul1vOZVA56Q=="), "pczpYSQsvE1vBpTQYjFQPcuoj6M=");
});

Deno.test("upgrade detection: GET with Upgrade naming websocket, any case, in a list", () => {
  assert.ok(isUpgradeRequest(request({ upgrade: "websocket" })));
  assert.ok(isUpgradeRequest(request({ upgrade: "WebSocket" })));
  assert.ok(isUpgradeRequest(request({ upgrade: "h2c, websocket" })));
  assert.ok(!isUpgradeRequest(request({ upgrade: "websocket2" })));
  assert.ok(!isUpgradeRequest(request({})));
  assert.ok(!isUpgradeRequest(request({ upgrade: "websocket" }, "POST")));
});

Deno.test("handshake matrix: version, key, subprotocol", () => {
  const cases: [Record<string, string>, number | string, string?][] = [
    [{}, "ok"],
    [{ "sec-websocket-version": "" }, 426],
    [{ "sec-websocket-version": "8" }, 426, "Unsupported protocol version 8"],
    [{ "sec-websocket-version": "7" }, 426],
    [{ "sec-websocket-key": "short" }, 400, "Invalid Sec-WebSocket-Key header"],
    [{ "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ" }, 400], // no padding
    [{ "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZSE=" }, 400], // 17 bytes
    [{ "sec-websocket-protocol": "chat" }, 400, "Invalid protocol selected"],
    [{ "sec-websocket-protocol": "sip, chat" }, 400],
  ];
  for (const [overrides, expected, message] of cases) {
    const verdict = negotiate(request({ ...GOOD, ...overrides }));
    if (expected === "ok") {
      assert.ok("accept" in verdict, JSON.stringify(overrides));
    } else {
      assert.ok(
        "status" in verdict && verdict.status === expected,
        JSON.stringify([overrides, verdict]),
      );
      if (message) assert.equal(verdict.message, message);
    }
  }
  const missingVersion = request({
    upgrade: "websocket",
    connection: "upgrade",
    "sec-websocket-key": GOOD["sec-websocket-key"],
  });
  assert.deepEqual(negotiate(missingVersion), {
    status: 400,
    message: "Missing Sec-WebSocket-Version header",
    headers: [],
  });
  const missingKey = request({
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-version": "13",
  });
  assert.ok(
    "status" in negotiate(missingKey) &&
      (negotiate(missingKey) as { status: number }).status === 400,
  );
  const v8 = negotiate(request({ ...GOOD, "sec-websocket-version": "8" }));
  assert.ok(
    "headers" in v8 && v8.headers.some(([n, v]) => n === "Sec-WebSocket-Version" && v === "13"),
  );
});

Deno.test("Connection must list Upgrade (RFC 6455 §4.2.1): missing or without the token is 400", () => {
  for (const connection of ["Upgrade", "upgrade", "keep-alive, Upgrade", "keep-alive,UPGRADE "]) {
    assert.ok("accept" in negotiate(request({ ...GOOD, connection })), connection);
  }
  const { connection: _, ...withoutConnection } = GOOD;
  for (
    const headers of [withoutConnection, { ...GOOD, connection: "keep-alive" }, {
      ...GOOD,
      connection: "upgrade-please",
    }]
  ) {
    assert.deepEqual(negotiate(request(headers)), {
      status: 400,
      message: "Missing Connection: Upgrade header",
      headers: [],
    });
  }
});

Deno.test("subprotocol table: binary whenever offered, base64 alone, none, unknown", () => {
  assert.deepEqual(chooseSubprotocol(undefined), { protocol: undefined, framing: "binary" });
  assert.deepEqual(chooseSubprotocol("binary"), { protocol: "binary", framing: "binary" });
  assert.deepEqual(chooseSubprotocol("binary, base64"), { protocol: "binary", framing: "binary" });
  // Python refuses this one (it splits on "," without trimming); we choose binary.
  assert.deepEqual(chooseSubprotocol("base64, binary"), { protocol: "binary", framing: "binary" });
  assert.deepEqual(chooseSubprotocol("base64,binary"), { protocol: "binary", framing: "binary" });
  assert.deepEqual(chooseSubprotocol("chat,  binary"), { protocol: "binary", framing: "binary" });
  assert.deepEqual(chooseSubprotocol("base64"), { protocol: "base64", framing: "base64" });
  assert.equal(chooseSubprotocol("chat"), undefined);
  assert.equal(chooseSubprotocol("Binary"), undefined, "subprotocol names are case-sensitive");
});

Deno.test("101 response carries accept and the chosen protocol", () => {
  const head = new TextDecoder().decode(
    switchingProtocols({ accept: "abc=", protocol: "binary", framing: "binary" }),
  );
  assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(head, /\r\nUpgrade: websocket\r\n/);
  assert.match(head, /\r\nConnection: Upgrade\r\n/);
  assert.match(head, /\r\nSec-WebSocket-Accept: abc=\r\n/);
  assert.match(head, /\r\nSec-WebSocket-Protocol: binary\r\n\r\n$/);
  const none = new TextDecoder().decode(
    switchingProtocols({ accept: "abc=", protocol: undefined, framing: "binary" }),
  );
  assert.doesNotMatch(none, /Sec-WebSocket-Protocol/);
});

Deno.test("--subprotocol: the client's first offered name in the list; binary, then base64, still win", () => {
  const accepted = ["sip", "mqtt"];
  const choose = (offered: string | undefined) => chooseSubprotocol(offered, accepted);
  // The client's order decides among the extra names, not the list's.
  assert.deepEqual(choose("mqtt, sip"), { protocol: "mqtt", framing: "binary" });
  assert.deepEqual(choose("sip,mqtt"), { protocol: "sip", framing: "binary" });
  assert.deepEqual(choose("chat, mqtt"), { protocol: "mqtt", framing: "binary" });
  assert.deepEqual(choose("  mqtt  "), { protocol: "mqtt", framing: "binary" });
  // binary and base64 behave as without the option.
  assert.deepEqual(choose("mqtt, binary"), { protocol: "binary", framing: "binary" });
  assert.deepEqual(choose("mqtt, base64"), { protocol: "base64", framing: "base64" });
  assert.deepEqual(choose("base64"), { protocol: "base64", framing: "base64" });
  assert.deepEqual(choose(undefined), { protocol: undefined, framing: "binary" });
  assert.deepEqual(choose(" "), { protocol: undefined, framing: "binary" });
  // Names are compared exactly; unknown-only offers are still refused.
  assert.equal(choose("MQTT"), undefined);
  assert.equal(choose("chat"), undefined);
  assert.equal(choose("mqt"), undefined);
  assert.equal(choose(",,"), undefined);
  assert.equal(chooseSubprotocol("mqtt"), undefined, "no extra names without the option");
  // An empty name in the list matches no empty entry of an offer.
  assert.equal(chooseSubprotocol("mqtt, ", [""]), undefined);
});

Deno.test("--subprotocol through negotiate: the 101 names the selection; others still 400", () => {
  const offer = (protocols: string, accepted: string[]) =>
    negotiate(request({ ...GOOD, "sec-websocket-protocol": protocols }), accepted);
  const mqtt = offer("mqtt", ["mqtt"]);
  assert.ok("accept" in mqtt);
  assert.equal(mqtt.protocol, "mqtt");
  assert.equal(mqtt.framing, "binary");
  assert.match(
    new TextDecoder().decode(switchingProtocols(mqtt)),
    /Sec-WebSocket-Protocol: mqtt\r\n/,
  );
  assert.deepEqual(offer("sip", ["mqtt"]), {
    status: 400,
    message: "Invalid protocol selected",
    headers: [],
  });
  assert.ok("status" in negotiate(request({ ...GOOD, "sec-websocket-protocol": "mqtt" })));
});
