// TokenRedis end to end: the proxy as a user starts it, a real redis-server (password, db, namespace, TLS), data
// written with redis-cli, sessions from Deno's own WebSocket to real TCP targets.
import assert from "node:assert/strict";
import { makeCerts } from "../helpers/certs.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RedisServer, redisTest } from "../helpers/redis.ts";
import { openFiles } from "../helpers/system.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
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

/** The status line the proxy answers `request` (a raw head) with, or "closed" when it closes without one. */
async function statusLine(port: number, request: string): Promise<string> {
  const client = await RawClient.connect(port);
  try {
    return (await client.request(request)).split("\r\n")[0];
  } catch {
    return "closed";
  } finally {
    client.conn.close();
  }
}

redisTest(
  "TokenRedis: a token reaches Redis as one key however it is spelled, and the log (-v) never in clear",
  async () => {
    const redis = await RedisServer.start();
    const one = namedTarget("one");
    const monitor = redis.monitor();
    const proxy = new ProxyProcess([
      "-v",
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=127.0.0.1:${redis.port}::"${redis.password}":ns`,
    ]);
    try {
      const port = await proxy.port();
      await waitFor(() => monitor.text().includes("OK"), 3000, "MONITOR started");
      const injected = "SECRETD1\r\n*1\r\n$8\r\nFLUSHALL\r\nx";
      const long = "SECRETF1" + "x".repeat(30000); // the head stays under the 32 KiB cap
      for (
        const key of [
          "SECRETA1",
          "SECRETB1?tail",
          "SECRETC1",
          injected,
          long,
          "SECRETG1",
          "SECRETH1",
        ]
      ) {
        await redis.cli(["SET", `ns:${key}`, `127.0.0.1:${one.port}`]);
      }
      const upgrade = (path: string) => upgradeRequest({}, path);
      const cases: [string, string][] = [
        [upgrade("/?%74oken=SECRETA1"), "HTTP/1.1 101"], // the name percent-encoded
        [upgrade("/?token=SECRETB1?tail"), "HTTP/1.1 101"], // a '?' in the token
        [upgrade("/?a=1&tok%65n=SECRETC1"), "HTTP/1.1 101"],
        [upgrade(`/?token=${encodeURIComponent(injected)}`), "HTTP/1.1 101"], // CRLF and RESP inside
        [upgrade(`/?token=${long}`), "HTTP/1.1 101"],
        [upgrade("/?token=&token=SECRETG1"), "HTTP/1.1 101"], // a blank token= is skipped
        [upgrade("/?token=SECRETE1%FF%00"), "closed"], // not valid UTF-8, a NUL: not found
        [upgrade("/?token=SECRET E1"), "HTTP/1.1 400"], // an unencoded space: a bad request line
        ["GET /?%74oken=SECRETH1 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405"], // no upgrade
      ];
      for (const [request, expected] of cases) {
        assert.equal(
          (await statusLine(port, request)).slice(0, expected.length),
          expected,
          request.slice(0, 60),
        );
      }
      await waitFor(() => /"GET" "ns:SECRETE1/.test(monitor.text()), 3000, "the last GET");
      // Redis got each token as one key (MONITOR writes the arguments quoted, escaped), and nothing else.
      const gets = monitor.text().split("\n").filter((line) => line.includes('"GET"'));
      assert.equal(gets.length, 7, gets.join("\n").slice(0, 2000));
      assert.ok(gets.some((line) => line.endsWith(`"GET" "ns:SECRETE1\\xef\\xbf\\xbd\\x00"`)));
      assert.ok(gets.some((line) => line.includes(`"GET" "ns:SECRETB1?tail"`)));
      assert.doesNotMatch(monitor.text(), /"FLUSHALL"/);
      assert.equal(await redis.cli(["DBSIZE"]), "7");
      // The log names tokens by their hash only: request lines, Path lines, the 400 reason, the not-found line.
      await waitFor(
        () => /Token #[0-9a-f]{8} not found/.test(proxy.stderr),
        3000,
        "not-found line",
      );
      await waitFor(() => /code 400/.test(proxy.stderr), 3000, "the 400 line");
      assert.match(proxy.stderr, /Path: '\/\?token=#[0-9a-f]{8}'/);
      assert.doesNotMatch(proxy.stderr, /SECRET/);
    } finally {
      await monitor.stop();
      await proxy.stop();
      await redis.remove();
      await one.close();
    }
  },
);

redisTest(
  "TokenRedis: a Redis error that quotes the key (GET renamed away) names the token by its hash",
  async () => {
    // Redis answers an unknown command with its first arguments: "ERR unknown command 'GET', with args beginning
    // with: 'ns:<token>'" (cut at 128 characters).
    const redis = await RedisServer.start({ args: ["--rename-command", "GET", ""] });
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=TokenRedis",
      `--token-source=127.0.0.1:${redis.port}::"${redis.password}":ns`,
    ]);
    try {
      const port = await proxy.port();
      assert.equal(await session(port, "SECRET-short-1"), "refused");
      assert.equal(await session(port, "SECRET-long-" + "y".repeat(300)), "refused");
      await waitFor(
        () => proxy.stderr.split("unknown command").length > 2,
        3000,
        "two lookup failures",
      );
      assert.match(proxy.stderr, /token lookup failed: Redis [^:]+:\d+: ERR unknown command 'GET'/);
      assert.doesNotMatch(proxy.stderr, /SECRET|yyyyyy/);
    } finally {
      await proxy.stop();
      await redis.remove();
    }
  },
);

redisTest(
  "TokenRedis: Redis restarted under 200 concurrent sessions: no crash, no hang, open files back to idle, sessions resume",
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
      await new Promise((resolve) => setTimeout(resolve, 200));
      const idle = openFiles(proxy.child.pid);
      let running = true;
      const answers = new Map<string, number>();
      const workers = Array.from({ length: 200 }, async () => {
        while (running) {
          const answer = await session(port, "desk");
          answers.set(answer, (answers.get(answer) ?? 0) + 1);
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      await redis.restart();
      await redis.cli(["SET", "desk", `127.0.0.1:${one.port}`]);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      running = false;
      await Promise.all(workers);
      assert.equal(answers.get("timeout"), undefined, "no session hangs");
      assert.ok((answers.get("one") ?? 0) > 200, JSON.stringify([...answers]));
      assert.equal(await session(port, "desk"), "one", "sessions resume");
      await waitFor(() => openFiles(proxy.child.pid) <= idle, 5000, "open files back to idle");
      assert.equal(proxy.exited, false);
      assert.doesNotMatch(proxy.stderr, /Uncaught|unhandled|panic|handler exception/i);
    } finally {
      await proxy.stop();
      await redis.remove();
      await one.close();
    }
  },
);

Deno.test("TokenRedis: SIGTERM while lookups wait on a Redis that does not answer: the proxy exits at once", async () => {
  // Answers the connection's setup (CLIENT SETNAME, PING at start), then never again.
  const silent = new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(4096);
    for (let answered = 0; answered < 2;) {
      const count = await conn.read(buffer);
      if (count === null) return;
      const commands = new TextDecoder().decode(buffer.subarray(0, count)).match(/^\*/gm) ?? [];
      await conn.write(new TextEncoder().encode("+OK\r\n".repeat(commands.length)));
      answered += commands.length;
    }
    while ((await conn.read(buffer)) !== null) { /* silent */ }
  });
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=TokenRedis",
    `--token-source=127.0.0.1:${silent.port}`,
  ]);
  const clients: Deno.Conn[] = [];
  try {
    const port = await proxy.port();
    for (let i = 0; i < 20; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      clients.push(conn);
      await writeAll(conn, new TextEncoder().encode(upgradeRequest({}, "/?token=desk")));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = performance.now();
    const status = await proxy.stop();
    assert.equal(status.code, 0);
    assert.ok(performance.now() - started < 1500, `${Math.round(performance.now() - started)} ms`);
  } finally {
    for (const conn of clients) conn.close();
    await proxy.stop();
    await silent.close();
  }
});
