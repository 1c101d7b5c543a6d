// TokenRedis end to end: the proxy as a user starts it, a real redis-server (password, db, namespace, TLS), data
// written with redis-cli, sessions from Deno's own WebSocket to real TCP targets.
import assert from "node:assert/strict";
import { makeCerts } from "../helpers/certs.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RedisServer, redisTest } from "../helpers/redis.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

/** What a WebSocket session through the proxy with this token gets: the target's first bytes, or the refusal. */
async function session(port: number, token: string, send = "ping"): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/websockify?token=${encodeURIComponent(token)}`, [
    "binary",
  ]);
  ws.binaryType = "arraybuffer";
  try {
    return await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), 8000);
      ws.onopen = () => ws.send(new TextEncoder().encode(send));
      ws.onmessage = (event) => {
        clearTimeout(timer);
        resolve(new TextDecoder().decode(event.data as ArrayBuffer));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        resolve("refused");
      };
    });
  } finally {
    ws.close();
  }
}

/** A target that answers every connection with its name. */
function namedTarget(name: string): TcpTarget {
  return new TcpTarget(async (conn) => void await writeAll(conn, new TextEncoder().encode(name)));
}

redisTest(
  "TokenRedis end to end: JSON and plain values, db, namespace with a colon, password from @file",
  async () => {
    const redis = await RedisServer.start({ password: "pa:ss word" });
    const one = namedTarget("one");
    const two = namedTarget("two");
    const echo = echoTarget();
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/redis.pw`, `${redis.password}\n`);
    const proxy = new ProxyProcess([
      "-v",
      "127.0.0.1:0",
      "--token-plugin=websockify.token_plugins.TokenRedis", // as Python launch scripts spell it
      `--token-source=127.0.0.1:${redis.port}:2:@redis.pw:"vdi:desks"`,
    ], { shell: `cd ${dir} &&` });
    try {
      const port = await proxy.port();
      await redis.cli(
        ["SET", "vdi:desks:alice", JSON.stringify({ host: `127.0.0.1:${one.port}` })],
        2,
      );
      await redis.cli(["SET", "vdi:desks:bob", `  127.0.0.1:${two.port}\n`], 2);
      await redis.cli(["SET", "vdi:desks:echo", `127.0.0.1:${echo.port}`], 2);
      await redis.cli(["SET", "alice", `127.0.0.1:${two.port}`], 2); // outside the namespace
      await redis.cli(["SET", "vdi:desks:alice", `127.0.0.1:${two.port}`], 0); // another db
      await redis.cli(["RPUSH", "vdi:desks:listkey", "x"], 2);
      await redis.cli(["SET", "vdi:desks:junk", "not a target"], 2);
      assert.equal(await session(port, "alice"), "one");
      assert.equal(await session(port, "bob"), "two");
      assert.equal(await session(port, "echo", "hello through redis"), "hello through redis");
      // Many sessions at once share one Redis connection.
      const many = await Promise.all(Array.from({ length: 30 }, () => session(port, "bob")));
      assert.deepEqual(many, Array(30).fill("two"));
      assert.equal(await redis.namedClients("websockify"), 1);
      // Unknown token, a key of the wrong type, a value that is no target: refused, each with its reason.
      assert.equal(await session(port, "carol-secret-token"), "refused");
      assert.equal(await session(port, "listkey"), "refused");
      assert.equal(await session(port, "junk"), "refused");
      await waitFor(() => /WRONGTYPE/.test(proxy.stderr), 3000, "the wrong-type line");
      await waitFor(() => /is not a target/.test(proxy.stderr), 3000, "the not-a-target line");
      assert.match(proxy.stderr, /Token .*not found/);
      assert.doesNotMatch(
        proxy.stderr,
        /carol-secret-token/,
        "an unknown token is not logged in full",
      );
      assert.doesNotMatch(proxy.stderr, /pa:ss word/, "the password never appears");
    } finally {
      await proxy.stop();
      await redis.remove();
      await one.close();
      await two.close();
      await echo.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

redisTest(
  "TokenRedis: Redis stopped mid-run refuses sessions with a clear line, at once; they resume when it is back",
  async () => {
    const redis = await RedisServer.start();
    const one = namedTarget("one");
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=127.0.0.1:${redis.port}::"${redis.password}"`,
    ]);
    try {
      const port = await proxy.port();
      await redis.cli(["SET", "desk", `127.0.0.1:${one.port}`]);
      assert.equal(await session(port, "desk"), "one");
      await redis.stop();
      const started = performance.now();
      for (let i = 0; i < 5; i++) assert.equal(await session(port, "desk"), "refused");
      assert.ok(performance.now() - started < 5000, "refusals come quickly, without hanging");
      await waitFor(
        () =>
          /token lookup failed: Redis 127\.0\.0\.1:\d+: (connection closed by Redis|cannot connect)/
            .test(proxy.stderr),
        3000,
        "the Redis-down line",
      );
      await redis.restart();
      await redis.cli(["SET", "desk", `127.0.0.1:${one.port}`]);
      let answer = "";
      for (let i = 0; i < 40 && answer !== "one"; i++) {
        answer = await session(port, "desk");
        if (answer !== "one") await new Promise((resolve) => setTimeout(resolve, 150));
      }
      assert.equal(answer, "one", "sessions resume once Redis is back");
      assert.equal(proxy.exited, false);
    } finally {
      await proxy.stop();
      await redis.remove();
      await one.close();
    }
  },
);

redisTest(
  "TokenRedis over TLS (sixth field), with the CA from DENO_CERT; a wrong password is a warning at start",
  async () => {
    const certs = await makeCerts();
    const redis = await RedisServer.start({
      tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca },
    });
    const one = namedTarget("one");
    const tlsProxy = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=localhost:${redis.port}::"${redis.password}"::ssl`,
    ], { env: { DENO_CERT: certs.ca } });
    const wrongPassword = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=localhost:${redis.port}::wrong-password::yes`,
    ], { env: { DENO_CERT: certs.ca } });
    try {
      await redis.cli(["SET", "desk", `127.0.0.1:${one.port}`]);
      assert.equal(await session(await tlsProxy.port(), "desk"), "one");
      const port = await wrongPassword.port();
      assert.match(
        wrongPassword.stderr,
        /TokenRedis: Redis localhost:\d+ does not answer now .*WRONGPASS/,
      );
      assert.equal(await session(port, "desk"), "refused");
      assert.doesNotMatch(wrongPassword.stderr, /wrong-password/);
    } finally {
      await tlsProxy.stop();
      await wrongPassword.stop();
      await redis.remove();
      await one.close();
      await certs.remove();
    }
  },
);

Deno.test("TokenRedis: a malformed source, or an unreadable password file, stops the start with the format", async () => {
  const cases: [string, RegExp][] = [
    [
      "127.0.0.1:notaport",
      /bad port 'notaport' \(expected host\[:port\[:db\[:password\[:namespace\[:ssl\]\]\]\]\]\)/,
    ],
    ["127.0.0.1:6379:0:pw:ns:maybe", /bad ssl field 'maybe'/],
    ["127.0.0.1:::@/nonexistent/redis.pw", /Redis password file '\/nonexistent\/redis\.pw'/],
  ];
  for (const [source, reason] of cases) {
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=${source}`,
    ]);
    const status = await proxy.status();
    assert.notEqual(status.code, 0, source);
    assert.match(proxy.stderr, reason);
  }
});
