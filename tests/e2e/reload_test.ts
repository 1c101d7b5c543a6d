// SIGHUP: the log file reopened after logrotate moved it, ReadOnlyTokenFile and a plugin module read again, and
// TokenRedis's rotated password file; with the proxy as users start it and real peers.
import assert from "node:assert/strict";
import { ROOT } from "../helpers/paths.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RedisServer, redisTest } from "../helpers/redis.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

/** A target that answers every connection with its name. */
function namedTarget(name: string): TcpTarget {
  return new TcpTarget(async (conn) => void await writeAll(conn, new TextEncoder().encode(name)));
}

/** The first message a session with `token` gets, or "refused". */
async function firstMessage(port: number, token: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?token=${token}`, ["binary"]);
  ws.binaryType = "arraybuffer";
  try {
    return await deadline(
      new Promise<string>((resolve) => {
        ws.onmessage = (event) => resolve(new TextDecoder().decode(event.data as ArrayBuffer));
        ws.onerror = () => resolve("refused");
        ws.onclose = () => resolve("refused");
      }),
      8000,
      "the first message",
    );
  } finally {
    ws.close();
  }
}

async function hangUp(proxy: ProxyProcess, count: number): Promise<void> {
  proxy.child.kill("SIGHUP");
  await waitFor(
    () => (proxy.stderr.match(/SIGHUP received/g) ?? []).length >= count,
    5000,
    "the reload line",
  );
}

Deno.test("SIGHUP: the log file is opened again by its name (logrotate), token files and plugin modules are read again", async () => {
  const one = namedTarget("one");
  const two = namedTarget("two");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tokens`, `a: 127.0.0.1:${one.port}\n`);
  await Deno.writeTextFile(`${dir}/map.json`, JSON.stringify({ m: `127.0.0.1:${one.port}` }));
  const readOnly = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=ReadOnlyTokenFile",
    `--token-source=${dir}/tokens`,
    `--log-file=${dir}/ws.log`,
  ]);
  const module = new ProxyProcess([
    "127.0.0.1:0",
    `--token-plugin=${ROOT}examples/plugins/token_from_map.ts`,
    `--token-source=${dir}/map.json`,
  ]);
  try {
    const port = await readOnly.port();
    const modulePort = await module.port();
    assert.equal(await firstMessage(port, "a"), "one");
    assert.equal(await firstMessage(modulePort, "m"), "one");
    await Deno.writeTextFile(
      `${dir}/tokens`,
      `a: 127.0.0.1:${two.port}\nb: 127.0.0.1:${two.port}\n`,
    );
    await Deno.writeTextFile(`${dir}/map.json`, JSON.stringify({ m: `127.0.0.1:${two.port}` }));
    // Read once: the edits wait for SIGHUP.
    assert.equal(await firstMessage(port, "a"), "one");
    assert.equal(await firstMessage(port, "b"), "refused");
    assert.equal(await firstMessage(modulePort, "m"), "one");
    // logrotate: the file is moved away, then SIGHUP.
    await Deno.rename(`${dir}/ws.log`, `${dir}/ws.log.1`);
    await hangUp(readOnly, 1);
    await hangUp(module, 1);
    assert.equal(await firstMessage(port, "a"), "two");
    assert.equal(await firstMessage(port, "b"), "two");
    assert.equal(await firstMessage(modulePort, "m"), "two");
    const rotated = await Deno.readTextFile(`${dir}/ws.log.1`);
    const fresh = await Deno.readTextFile(`${dir}/ws.log`);
    assert.match(rotated, /Listen on/);
    assert.doesNotMatch(rotated, /SIGHUP received/);
    assert.match(fresh, /SIGHUP received/);
    assert.match(fresh, /connecting to: 127\.0\.0\.1:\d+/);
    // A source that cannot be read on SIGHUP leaves the plugin as it was.
    await Deno.writeTextFile(`${dir}/map.json`, "{ not json");
    await hangUp(module, 2);
    await waitFor(
      () => /reload of .*token_from_map\.ts failed/.test(module.stderr),
      5000,
      "the warning",
    );
    assert.equal(await firstMessage(modulePort, "m"), "two");
  } finally {
    await readOnly.stop();
    await module.stop();
    await one.close();
    await two.close();
    await Deno.remove(dir, { recursive: true });
  }
});

redisTest("SIGHUP: TokenRedis reads its rotated password file and reconnects with it", async () => {
  const redis = await RedisServer.start({ password: "first-password" });
  const one = namedTarget("one");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/redis.pw`, "first-password\n");
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=TokenRedis",
    `--token-source=127.0.0.1:${redis.port}::@${dir}/redis.pw`,
  ]);
  try {
    const port = await proxy.port();
    await redis.cli(["SET", "desk", `127.0.0.1:${one.port}`]);
    assert.equal(await firstMessage(port, "desk"), "one");
    // The secret rotates: Redis and the file get the new one, then Redis drops its clients.
    await redis.cli(["CONFIG", "SET", "requirepass", "second-password"]);
    await Deno.writeTextFile(`${dir}/redis.pw`, "second-password\n");
    await hangUp(proxy, 1);
    await redis.cli(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"], 0, "second-password");
    let answer = "";
    for (let i = 0; i < 20 && answer !== "one"; i++) {
      answer = await firstMessage(port, "desk");
      if (answer !== "one") await new Promise((resolve) => setTimeout(resolve, 150));
    }
    assert.equal(answer, "one");
    assert.doesNotMatch(proxy.stderr, /second-password|first-password/);
  } finally {
    await proxy.stop();
    await redis.remove();
    await one.close();
    await Deno.remove(dir, { recursive: true });
  }
});
