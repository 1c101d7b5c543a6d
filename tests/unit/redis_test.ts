// TokenRedis's pure parts (source syntax, stored values, RESP) and its client against a real redis-server.
import assert from "node:assert/strict";
import { encodeCommand, RedisClient, RespError, RespParser } from "../../lib/redis.ts";
import {
  formatRedisSource,
  parseRedisSource,
  redisTarget,
  splitSourceFields,
} from "../../lib/tokenredis.ts";
import { makeCerts } from "../helpers/certs.ts";
import { RedisServer, redisTest } from "../helpers/redis.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { writeAll } from "../../lib/io.ts";
import { waitFor } from "../helpers/waits.ts";

Deno.test("TokenRedis source fields split as Python's parse_source_args does (its own table)", () => {
  const table: [string, string[]][] = [
    ["", [""]],
    [":", ["", ""]],
    ["::", ["", "", ""]],
    ['"', ['"']],
    ['""', ['""']],
    ['"""', ['"""']],
    ['"localhost"', ["localhost"]],
    ['"localhost":', ["localhost", ""]],
    ['"localhost"::', ["localhost", "", ""]],
    ['"local:host"', ["local:host"]],
    ['"local:host:"pass"', ['"local', "host", "pass"]],
    ['"local":"host"', ["local", "host"]],
    ['"local":host"', ["local", 'host"']],
    ['localhost:6379:1:pass"word:"my-app-namespace:dev"', [
      "localhost",
      "6379",
      "1",
      'pass"word',
      "my-app-namespace:dev",
    ]],
    ['h::::"a:b"', ["h", "", "", "", "a:b"]],
  ];
  for (const [source, fields] of table) {
    assert.deepEqual(splitSourceFields(source), fields, source);
  }
});

Deno.test("TokenRedis source: defaults for empty fields, @file passwords, TLS words, and clear refusals", () => {
  assert.deepEqual(parseRedisSource("redis.example", "/srv"), {
    hostname: "redis.example",
    port: 6379,
    db: 0,
    password: undefined,
    namespace: "",
    tls: false,
  });
  assert.deepEqual(parseRedisSource('r:6380:2:pw:"a:b":yes', "/srv"), {
    hostname: "r",
    port: 6380,
    db: 2,
    password: "pw",
    namespace: "a:b",
    tls: true,
  });
  assert.deepEqual(parseRedisSource("r:::@secrets/redis.pw", "/srv").password, {
    file: "/srv/secrets/redis.pw",
  });
  assert.equal(parseRedisSource('"::1"', "/").hostname, "::1");
  for (const word of ["1", "true", "SSL", "yes"]) {
    assert.equal(parseRedisSource(`r:::::${word}`, "/").tls, true, word);
  }
  for (const word of ["", "0", "false", "no"]) {
    assert.equal(parseRedisSource(`r:::::${word}`, "/").tls, false, word);
  }
  const refusals: [string, RegExp][] = [
    ["", /no host/],
    [":6379", /no host/],
    ["r:http", /bad port 'http'/],
    ["r:0", /bad port '0'/],
    ["r:70000", /bad port/],
    ["r:6379:x", /bad db 'x'/],
    ["r:6379:-1", /bad db/],
    ["r:::::maybe", /bad ssl field 'maybe'/],
    ["r:1:2:3:4:5:6", /too many fields/],
  ];
  for (const [source, why] of refusals) {
    assert.throws(() => parseRedisSource(source, "/"), (error: Error) => {
      assert.match(error.message, why, source);
      assert.match(
        error.message,
        /expected host\[:port\[:db\[:password\[:namespace\[:ssl\]\]\]\]\]/,
      );
      return true;
    });
  }
});

Deno.test("TokenRedis source written back parses to the same (quotes where a field has colons)", () => {
  for (
    const source of [
      "r",
      'r:6380:2:pw:"a:b":yes',
      'r::::"x:y:z"',
      '"::1":7000',
      "r:::@/etc/pw",
      'r:1:0:"p:w"',
    ]
  ) {
    const parsed = parseRedisSource(source, "/");
    assert.deepEqual(parseRedisSource(formatRedisSource(parsed), "/"), parsed, source);
  }
});

Deno.test("TokenRedis values: JSON {host: 'h:p'} or plain h:p, blanks around; anything else is no target", () => {
  const tcp = (hostname: string, port: number) => ({ kind: "tcp", hostname, port });
  assert.deepEqual(redisTarget('{"host": "10.0.0.5:5901"}'), tcp("10.0.0.5", 5901));
  assert.deepEqual(redisTarget('  {"host":"desk","port":"5900"}\n'), tcp("desk", 5900));
  assert.deepEqual(redisTarget('{"host":"::1","port":5900}'), tcp("::1", 5900));
  assert.deepEqual(redisTarget(" desk:5902 \r\n"), tcp("desk", 5902));
  assert.deepEqual(redisTarget("[::1]:5903"), tcp("::1", 5903));
  for (
    const bad of [
      "",
      "desk",
      "desk:",
      "desk:0",
      "desk:99999",
      '{"host": "desk"}',
      '{"hots": "desk:1"}',
      "{not json",
      '{"host": 5}',
      "unix_socket:/run/x.sock",
      '"desk:1"',
    ]
  ) {
    assert.equal(redisTarget(bad), undefined, bad);
  }
});

Deno.test("RESP: commands are arrays of bulk strings; replies parse however the bytes are split", () => {
  assert.equal(
    new TextDecoder().decode(encodeCommand(["GET", "ns:tök en"])),
    "*2\r\n$3\r\nGET\r\n$10\r\nns:tök en\r\n",
  );
  const wire = new TextEncoder().encode(
    "+OK\r\n-WRONGPASS bad\r\n:42\r\n$-1\r\n$5\r\nh:1\r\n\r\n*2\r\n$1\r\na\r\n*-1\r\n$0\r\n\r\n",
  );
  const expected = [
    "OK",
    new RespError("WRONGPASS bad"),
    42,
    null,
    "h:1\r\n",
    ["a", null],
    "",
  ];
  for (const step of [1, 2, 3, 7, wire.length]) {
    const parser = new RespParser(1024);
    const replies: unknown[] = [];
    for (let at = 0; at < wire.length; at += step) {
      parser.push(wire.subarray(at, at + step));
      for (let reply = parser.next(); reply !== undefined; reply = parser.next()) {
        replies.push(reply);
      }
    }
    assert.deepEqual(replies, expected, `in pieces of ${step}`);
  }
});

Deno.test("RESP: a reply over the bound, or bytes that are not RESP, are errors (never unbounded buffering)", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  const big = new RespParser(100);
  assert.throws(() => big.push(encode("$1000\r\n")) ?? big.next(), /over 100 bytes/);
  const flood = new RespParser(100);
  assert.throws(() => {
    for (let i = 0; i < 10; i++) flood.push(encode("+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  }, /over 100 bytes/);
  const garbage = new RespParser(100);
  garbage.push(encode("HTTP/1.1 400 Bad Request\r\n"));
  assert.throws(() => garbage.next(), /not a RESP reply/);
  const badLength = new RespParser(100);
  badLength.push(encode("$abc\r\n"));
  assert.throws(() => badLength.next(), /bad integer/);
});

Deno.test("RESP: a reply that arrives a few bytes at a time is parsed in one pass, however long or deep", () => {
  // A hostile or broken server decides how its reply is cut into reads. Re-parsing the reply from its first byte
  // on every read made 6,000 array items in 4-byte reads cost 7 s of CPU (the event loop blocked all along) and
  // a 60 KB line in 1-byte reads 2 s; nesting 15,000 arrays deep overflowed the stack.
  const encode = (text: string) => new TextEncoder().encode(text);
  const cases: [string, Uint8Array, number, (reply: unknown) => boolean][] = [
    [
      "6,000 items in 4-byte reads",
      encode("*6000\r\n" + ":7\r\n".repeat(6000)),
      4,
      (reply) => Array.isArray(reply) && reply.length === 6000 && reply[5999] === 7,
    ],
    [
      "a 60 KB line in 1-byte reads",
      encode("+" + "a".repeat(60000) + "\r\n"),
      1,
      (reply) => typeof reply === "string" && reply.length === 60000,
    ],
    [
      "15,000 nested arrays",
      encode("*1\r\n".repeat(15000) + ":1\r\n"),
      1000,
      (reply) => Array.isArray(reply),
    ],
  ];
  for (const [name, wire, step, check] of cases) {
    const parser = new RespParser(65536);
    const replies: unknown[] = [];
    const started = performance.now();
    for (let at = 0; at < wire.length; at += step) {
      parser.push(wire.subarray(at, at + step));
      for (let reply = parser.next(); reply !== undefined; reply = parser.next()) {
        replies.push(reply);
      }
    }
    const elapsed = performance.now() - started;
    assert.equal(replies.length, 1, name);
    assert.ok(check(replies[0]), name);
    assert.ok(elapsed < 1000, `${name}: ${Math.round(elapsed)} ms`);
  }
});

redisTest(
  "RedisClient: one connection carries many concurrent commands, with AUTH, SELECT and its name",
  async () => {
    const redis = await RedisServer.start();
    const client = new RedisClient({
      hostname: "127.0.0.1",
      port: redis.port,
      tls: false,
      password: redis.password,
      db: 3,
    });
    try {
      for (let i = 0; i < 50; i++) await redis.cli(["SET", `k${i}`, `v${i}`], 3);
      const replies = await Promise.all(
        Array.from({ length: 200 }, (_, i) => client.command(["GET", `k${i % 60}`])),
      );
      assert.deepEqual(
        replies,
        Array.from({ length: 200 }, (_, i) => i % 60 < 50 ? `v${i % 60}` : null),
      );
      assert.equal(await redis.namedClients("websockify"), 1);
    } finally {
      client.close();
      await redis.remove();
    }
  },
);

redisTest(
  "RedisClient: a wrong password fails each command with Redis's reason, never the password",
  async () => {
    const redis = await RedisServer.start();
    const client = new RedisClient({
      hostname: "127.0.0.1",
      port: redis.port,
      tls: false,
      password: "not-the-password",
      db: 0,
    });
    try {
      await assert.rejects(client.command(["GET", "x"]), (error: Error) => {
        assert.match(error.message, /refused the connection setup: WRONGPASS/);
        assert.doesNotMatch(error.message, /not-the-password/);
        return true;
      });
    } finally {
      client.close();
      await redis.remove();
    }
  },
);

Deno.test("RedisClient: a server that stops answering fails the command in bounded time; the next one reconnects", async () => {
  // Answers the connection's first command (CLIENT SETNAME), then nothing.
  let connections = 0;
  const silent = new TcpTarget(async (conn) => {
    connections++;
    let answered = false;
    for await (const _ of conn.readable) {
      if (!answered) await conn.write(new TextEncoder().encode("+OK\r\n"));
      answered = true;
    }
  });
  const client = new RedisClient({
    hostname: "127.0.0.1",
    port: silent.port,
    tls: false,
    db: 0,
    commandTimeoutMs: 300,
  });
  try {
    const started = performance.now();
    await assert.rejects(client.command(["GET", "x"]), /no answer within 300 ms/);
    assert.ok(performance.now() - started < 2000);
    await assert.rejects(client.command(["GET", "y"]), /no answer within 300 ms/);
    assert.equal(
      connections,
      2,
      "a timed-out connection is not reused (its replies would be off by one)",
    );
  } finally {
    client.close();
    await silent.close();
  }
});

redisTest(
  "RedisClient: Redis down fails fast with back-off, and commands work again once it is back",
  async () => {
    const redis = await RedisServer.start();
    const client = new RedisClient({
      hostname: "127.0.0.1",
      port: redis.port,
      tls: false,
      password: redis.password,
      db: 0,
    });
    try {
      await redis.cli(["SET", "k", "one"]);
      assert.equal(await client.command(["GET", "k"]), "one");
      await redis.stop();
      await assert.rejects(
        client.command(["GET", "k"]),
        /connection closed by Redis|cannot connect/,
      );
      await assert.rejects(client.command(["GET", "k"]), /cannot connect|next try in/);
      // While backing off, a command fails at once instead of trying again.
      const started = performance.now();
      await assert.rejects(client.command(["GET", "k"]), /next try in \d+ ms/);
      assert.ok(performance.now() - started < 50);
      await redis.restart();
      await redis.cli(["SET", "k", "two"]);
      let reply: unknown;
      for (let i = 0; i < 50 && reply !== "two"; i++) {
        reply = await client.command(["GET", "k"]).catch(() => undefined);
        if (reply !== "two") await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(reply, "two");
    } finally {
      client.close();
      await redis.remove();
    }
  },
);

redisTest(
  "RedisClient: TLS against a plain Redis, an untrusted certificate, or plain against a TLS-only Redis: a clear reason, in bounded time",
  async () => {
    const certs = await makeCerts();
    const plain = await RedisServer.start();
    const tlsOnly = await RedisServer.start({
      tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca },
    });
    const attempt = async (port: number, tls: boolean, password: string) => {
      const client = new RedisClient({
        hostname: "localhost",
        port,
        tls,
        password,
        db: 0,
        connectTimeoutMs: 500,
      });
      const started = performance.now();
      try {
        await client.command(["GET", "x"]);
        return { message: "answered", ms: performance.now() - started };
      } catch (error) {
        return { message: (error as Error).message, ms: performance.now() - started };
      } finally {
        client.close();
      }
    };
    try {
      // A plain Redis waits for a line end that a ClientHello does not have: the handshake never completes.
      const tlsToPlain = await attempt(plain.port, true, plain.password);
      assert.match(tlsToPlain.message, /no TLS handshake within 500 ms/);
      assert.ok(tlsToPlain.ms < 1500, `${Math.round(tlsToPlain.ms)} ms`);
      // The test CA is not trusted by this process (no DENO_CERT).
      const untrusted = await attempt(tlsOnly.port, true, tlsOnly.password);
      assert.match(untrusted.message, /TLS handshake failed: .*certificate/i);
      // A TLS-only Redis drops a plain connection without a word.
      const plainToTls = await attempt(tlsOnly.port, false, tlsOnly.password);
      assert.match(plainToTls.message, /no answer at all: is that port TLS-only\?/);
      assert.ok(plainToTls.ms < 1500, `${Math.round(plainToTls.ms)} ms`);
    } finally {
      await plain.remove();
      await tlsOnly.remove();
      await certs.remove();
    }
  },
);

redisTest("RedisClient: TLS tries against a plain Redis leave no connection behind", async () => {
  // Deno's own TLS kept the socket of a handshake that never completed open after close(), until the peer
  // closed it (a plain Redis never does): one more open connection on every try, while lookups kept coming.
  const plain = await RedisServer.start();
  const connected = async () =>
    Number((await plain.cli(["INFO", "clients"])).match(/connected_clients:(\d+)/)![1]);
  try {
    for (let i = 0; i < 5; i++) {
      const client = new RedisClient({
        hostname: "localhost",
        port: plain.port,
        tls: true,
        db: 0,
        connectTimeoutMs: 200,
      });
      await assert.rejects(client.command(["PING"]), /no TLS handshake within 200 ms/);
      client.close();
    }
    // Only redis-cli asking.
    let count = await connected();
    for (let i = 0; i < 20 && count > 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      count = await connected();
    }
    assert.equal(count, 1, "connections left open on the Redis side");
  } finally {
    await plain.remove();
  }
});

redisTest(
  "RedisClient: closed while it connects, it keeps no connection (and the command fails)",
  async () => {
    const redis = await RedisServer.start();
    try {
      const client = new RedisClient({
        hostname: "127.0.0.1",
        port: redis.port,
        tls: false,
        password: redis.password,
        db: 0,
      });
      const command = client.command(["PING"]);
      client.close();
      await assert.rejects(command, /client closed/);
      let count = "";
      for (let i = 0; i < 20 && count !== "1"; i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        count = (await redis.cli(["INFO", "clients"])).match(/connected_clients:(\d+)/)![1];
      }
      assert.equal(count, "1", "only redis-cli is connected");
    } finally {
      await redis.remove();
    }
  },
);

Deno.test("RedisClient against a broken or hostile server: each answer a clear error at once, and the next command reconnects", async () => {
  // What the server sends in reply to GET (it answers the connection's first command, CLIENT SETNAME, with +OK).
  const cases: [string, string | ((conn: Deno.Conn) => Promise<void>), RegExp | string][] = [
    ["a huge bulk length", "$999999999\r\n", /protocol error: reply over 65536 bytes/],
    ["an endless line", "+" + "a".repeat(70000), /protocol error: reply over 65536 bytes/],
    // The command has its answer; the one after it answers nothing: the connection is dropped.
    ["a reply to no command", "$3\r\nh:1\r\n+OK\r\n", "h:1"],
    ["garbage", "HTTP/1.1 400 Bad Request\r\n\r\n", /protocol error: not a RESP reply/],
    ["a RESP3 map", "%1\r\n+host\r\n+h:1\r\n", /not a RESP reply \(type byte "%"\)/],
    ["a RESP3 set", "~1\r\n+a\r\n", /not a RESP reply \(type byte "~"\)/],
    ["a RESP3 push", ">2\r\n+message\r\n+x\r\n", /not a RESP reply \(type byte ">"\)/],
    ["a RESP3 null", "_\r\n", /not a RESP reply \(type byte "_"\)/],
    ["a bulk string without its CRLF", "$1\r\nabc\r\n", /bulk string without its CRLF/],
    [
      "closing mid-reply",
      async (conn) => {
        await conn.write(new TextEncoder().encode("$10\r\nabc"));
        conn.close();
      },
      /connection closed by Redis/,
    ],
  ];
  for (const [name, reply, expected] of cases) {
    let connections = 0;
    let dropped = 0;
    const server = new TcpTarget(async (conn) => {
      connections++;
      const buffer = new Uint8Array(4096);
      await conn.read(buffer);
      await conn.write(new TextEncoder().encode("+OK\r\n"));
      if ((await conn.read(buffer)) === null) return;
      try {
        if (typeof reply === "string") await writeAll(conn, new TextEncoder().encode(reply));
        else await reply(conn);
        while ((await conn.read(buffer)) !== null) { /* until the client closes */ }
      } finally {
        dropped++;
      }
    });
    const client = new RedisClient({ hostname: "127.0.0.1", port: server.port, tls: false, db: 0 });
    try {
      for (let i = 0; i < 2; i++) {
        const started = performance.now();
        const command = client.command(["GET", "x"]);
        if (typeof expected === "string") assert.equal(await command, expected, name);
        else await assert.rejects(command, expected, name);
        assert.ok(performance.now() - started < 1000, `${name}: at once`);
        await waitFor(() => dropped === i + 1, 1000, `${name}: the connection dropped`);
      }
      assert.equal(connections, 2, `${name}: a connection that failed is not reused`);
    } finally {
      client.close();
      await server.close();
    }
  }
});
