// Python's `websockets` (Debian python3-websockets) as a strict third-party client.
import assert from "node:assert/strict";
import { PEERS } from "../helpers/paths.ts";
import { startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";

const PYTHON = "/usr/bin/python3";

function hasPythonWebsockets(): boolean {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import websockets"], stderr: "null" })
      .outputSync()
      .success;
  } catch {
    return false;
  }
}

const available = hasPythonWebsockets();
if (!available) {
  console.warn("SKIP python_client_test: install Debian's python3-websockets (.ci/run does)");
}

Deno.test({
  name: "Python websockets: handshake, 300 KB echo, ping, text, close code echoed",
  ignore: !available,
  async fn() {
    const target = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${target.port}`]);
    try {
      const output = await new Deno.Command(PYTHON, {
        args: [`${PEERS}python_websockets_client.py`, proxy.url + "websockify"],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(40000),
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.ok(output.success, stderr);
      const result = JSON.parse(new TextDecoder().decode(output.stdout));
      assert.deepEqual(result, {
        subprotocol: "binary",
        echo_ok: true,
        pong: true,
        text_echo: "text goes through as bytes",
        close_code: 4001,
        close_reason: "strict client done",
      });
    } finally {
      await proxy.stop();
      await target.close();
    }
  },
});
