// The Websock browser module (web/websock.js, as served) driven by Deno's WebSocket through the proxy to an echo
// target: both subprotocols, every reading helper on a known byte vector, drain-paced bulk echo, close. The same
// scenario runs in Chromium in browser_pages_test.ts.
import assert from "node:assert/strict";
import { startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline } from "../helpers/waits.ts";
import { EXPECTED, VECTOR, websockScenario } from "../helpers/websock_scenario.ts";

const MODULE = new URL("../../web/websock.js", import.meta.url).href;

for (const [protocols, protocol] of [[["binary"], "binary"], [["base64"], "base64"]] as const) {
  Deno.test(`Websock (${protocol}): reading helpers, sendString, drain-paced 2 MiB echo, close`, async () => {
    const target = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${target.port}`]);
    try {
      const result = await websockScenario(MODULE, proxy.url, [...protocols], VECTOR);
      const { protocol: chosen, mode, maxBuffered, ...rest } = result;
      assert.equal(chosen, protocol);
      assert.equal(mode, protocol);
      assert.deepEqual(rest, EXPECTED);
      assert.ok(typeof maxBuffered === "number");
    } finally {
      await proxy.stop();
      await target.close();
    }
  });
}

/** A WebSocket server that selects `protocol` and sends `messages` on open (then echoes). */
function scriptedServer(protocol: string | undefined, messages: (string | Uint8Array)[]) {
  const closes: number[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, protocol ? { protocol } : {});
    socket.onopen = () => messages.forEach((message) => socket.send(message));
    socket.onmessage = (event) => socket.send(event.data);
    socket.onclose = (event) => closes.push(event.code);
    return response;
  });
  return { server, closes, url: `ws://127.0.0.1:${server.addr.port}/` };
}

/** Opens a Websock and collects its events until it closes (bounded). */
async function collect(
  url: string,
  protocols: string[],
  setup: (sock: import("../../web/websock.js").Websock) => void = () => {},
  options: { maxQueue?: number } = {},
) {
  const { Websock } = await import("../../web/websock.js");
  const sock = new Websock(options);
  const errors: string[] = [];
  sock.on("error", (error) => errors.push(error instanceof Error ? error.message : error.type));
  setup(sock);
  const closed = new Promise<number>((resolve) => sock.on("close", (event) => resolve(event.code)));
  sock.open(url, protocols);
  const code = await deadline(closed, 5000, "close");
  return { sock, errors, code };
}

Deno.test("Websock refuses what it cannot take: bad base64 (4007), a full receive queue (4009), misuse", async () => {
  const bad = scriptedServer("base64", ["AAEC", "not base64!"]);
  const big = scriptedServer("binary", [new Uint8Array(40), new Uint8Array(40)]);
  try {
    let firstBytes: number[] = [];
    const base64 = await collect(bad.url, ["base64"], (sock) => {
      sock.on("message", () => {
        firstBytes = [...sock.rQshiftBytes()];
      });
    });
    assert.deepEqual(firstBytes, [0, 1, 2]);
    assert.equal(base64.errors.length, 1);
    assert.match(base64.errors[0], /a base64 message that is not base64 \(11 characters\)/);
    assert.equal(base64.code, 4007);

    // Nothing read: the second 40 bytes do not fit in a queue of 64.
    const full = await collect(big.url, ["binary"], () => {}, { maxQueue: 64 });
    assert.deepEqual(full.errors, [
      "Websock: receive queue full (40 bytes unread, 40 arriving, limit 64)",
    ]);
    assert.equal(full.code, 4009);
    assert.equal(full.sock.readyState, "closed");
    assert.throws(() => full.sock.send([1]), /Websock\.send: the connection is closed, not open/);
    assert.throws(() => full.sock.on("nope" as "open", () => {}), TypeError);
    const { Websock } = await import("../../web/websock.js");
    assert.throws(() => new Websock({ maxQueue: 0 }), RangeError);
    assert.equal(new Websock().readyState, "unused");
    assert.throws(() => new Websock().rQshiftBytes(-1), RangeError);
  } finally {
    await bad.server.shutdown();
    await big.server.shutdown();
  }
});

Deno.test("Websock: a message handler that throws is reported as an error event; the queue goes on", async () => {
  const script = scriptedServer("binary", [Uint8Array.of(1, 2), Uint8Array.of(3)]);
  try {
    const seen: number[][] = [];
    const result = await collect(script.url, ["binary"], (sock) => {
      sock.on("message", () => {
        seen.push([...sock.rQpeekBytes()]);
        if (seen.length === 1) throw new Error("handler bug");
        if (seen.length === 2) sock.close(1000);
      });
    });
    // The unread bytes of the first message are still there for the second.
    assert.deepEqual(seen, [[1, 2], [1, 2, 3]]);
    assert.deepEqual(result.errors, ["handler bug"]);
    assert.equal(result.code, 1000);
  } finally {
    await script.server.shutdown();
  }
});
