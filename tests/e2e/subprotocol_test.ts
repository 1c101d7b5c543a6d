// --subprotocol with real clients: npm ws offering MQTT, SIP and others gets the right selection in the 101 and
// its messages relayed to a real echo target (binary); without the option, unknown-only offers are refused as
// before (400).

import assert from "node:assert/strict";
import WebSocketClient from "ws";
import { startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline } from "../helpers/waits.ts";

/** Opens npm ws offering `protocols`: the selected one and the echo of two messages, or the refusal's status. */
function offer(
  url: string,
  protocols: string[],
): Promise<{ protocol: string; echoed: string[] } | { status: number }> {
  return deadline(
    new Promise((resolve, reject) => {
      const ws = new WebSocketClient(url, protocols);
      const echoed: string[] = [];
      ws.on("unexpected-response", (_request: unknown, response: { statusCode: number }) => {
        resolve({ status: response.statusCode });
        ws.terminate();
      });
      ws.on("open", () => {
        ws.send(new TextEncoder().encode("CONNECT"));
        ws.send("PING text");
      });
      ws.on("message", (data: Uint8Array, isBinary: boolean) => {
        assert.ok(isBinary, "relayed as binary");
        echoed.push(new TextDecoder().decode(data));
        if (echoed.join("") === "CONNECTPING text") ws.close(1000);
      });
      ws.on("close", () => resolve({ protocol: ws.protocol, echoed: [echoed.join("")] }));
      ws.on("error", (error: Error) => {
        if (!/Unexpected server response/.test(error.message)) reject(error);
      });
    }),
    10_000,
    `a session offering ${protocols}`,
  );
}

Deno.test("--subprotocol: the client's first offered name in the list is selected, relayed as binary", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([
    "--subprotocol=mqtt",
    "--subprotocol",
    "sip,v12.stomp",
    `127.0.0.1:${echo.port}`,
  ]);
  try {
    const relayed = ["CONNECTPING text"];
    assert.deepEqual(await offer(proxy.url, ["mqtt", "sip"]), {
      protocol: "mqtt",
      echoed: relayed,
    });
    assert.deepEqual(await offer(proxy.url, ["sip", "mqtt"]), { protocol: "sip", echoed: relayed });
    assert.deepEqual(await offer(proxy.url, ["chat", "v12.stomp"]), {
      protocol: "v12.stomp",
      echoed: relayed,
    });
    // binary stays preferred; base64 keeps its framing (not exercised here: a text client).
    assert.deepEqual(await offer(proxy.url, ["mqtt", "binary"]), {
      protocol: "binary",
      echoed: relayed,
    });
    // Unknown only, or a different case: refused as before.
    assert.deepEqual(await offer(proxy.url, ["xmpp"]), { status: 400 });
    assert.deepEqual(await offer(proxy.url, ["MQTT"]), { status: 400 });
    assert.ok(proxy.log.has(/code 400, message Invalid protocol selected/));
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

Deno.test("without --subprotocol, an MQTT-only client is refused with 400 as before", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${echo.port}`]);
  try {
    assert.deepEqual(await offer(proxy.url, ["mqtt"]), { status: 400 });
    assert.deepEqual(await offer(proxy.url, ["mqtt", "binary"]), {
      protocol: "binary",
      echoed: ["CONNECTPING text"],
    });
  } finally {
    await proxy.stop();
    await echo.close();
  }
});
