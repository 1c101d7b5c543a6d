// Token plugins (target per connection) and auth plugins on the wire: real clients, targets, openssl s_client.
import assert from "node:assert/strict";
import { Opcode } from "../../lib/websocket/frames.ts";
import { makeCerts, sClient, serverCertArgs } from "../helpers/certs.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";
import { CompactEncrypt, exportSPKI, generateKeyPair, SignJWT } from "jose";

Deno.test("TokenFile end to end: per-token targets, edits apply at once, unknown token closes without an answer", async () => {
  const dir = await Deno.makeTempDir();
  const one = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("one"))
  );
  const two = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("two"))
  );
  const tokens = `${dir}/tokens.cfg`;
  await Deno.writeTextFile(
    tokens,
    `first: 127.0.0.1:${one.port}\n\nsecond: 127.0.0.1:${two.port}\n`,
  );
  const proxy = await startProxy(["--token-plugin=TokenFile", `--token-source=${tokens}`]);
  try {
    const first = await RawClient.connect(proxy.port);
    assert.match(
      await first.request(upgradeRequest({}, "/websockify?token=first")),
      /^HTTP\/1\.1 101/,
    );
    assert.equal(new TextDecoder().decode(await first.readData(3)), "one");
    first.close();
    await Deno.writeTextFile(tokens, `first: 127.0.0.1:${two.port}\n`); // re-read on every lookup
    const again = await RawClient.connect(proxy.port);
    assert.match(await again.request(upgradeRequest({}, "/?token=first")), /^HTTP\/1\.1 101/);
    assert.equal(new TextDecoder().decode(await again.readData(3)), "two");
    again.close();
    const unknown = await RawClient.connect(proxy.port);
    await unknown.send(new TextEncoder().encode(upgradeRequest({}, "/?token=nope")));
    assert.equal((await unknown.readRest()).length, 0, "no HTTP answer at all");
    unknown.close();
    const missing = await RawClient.connect(proxy.port);
    await missing.send(new TextEncoder().encode(upgradeRequest({}, "/websockify")));
    assert.equal((await missing.readRest()).length, 0);
    missing.close();
    assert.ok(proxy.log.has(/127\.0\.0\.1: Token #[0-9a-f]{8} not found/));
    assert.ok(!proxy.log.has(/nope/), "the token is never logged in clear");
    assert.ok(proxy.log.has(/127\.0\.0\.1: Token not present/));
    assert.ok(!proxy.log.has(/Syntax error/), "blank lines are fine");
  } finally {
    await proxy.stop();
    await one.close();
    await two.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TokenFile reports a syntax error once per version of the file, not on every lookup", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  const tokens = `${dir}/tokens.cfg`;
  await Deno.writeTextFile(tokens, `good: 127.0.0.1:${target.port}\nbroken line\n`);
  const proxy = await startProxy(["--token-plugin=TokenFile", `--token-source=${tokens}`]);
  const syntaxErrors = () => proxy.log.lines.filter((line) => /Syntax error/.test(line));
  const session = async () => {
    const client = await RawClient.connect(proxy.port);
    assert.match(await client.request(upgradeRequest({}, "/?token=good")), /^HTTP\/1\.1 101 /);
    client.close();
  };
  try {
    for (let i = 0; i < 3; i++) await session();
    assert.deepEqual(syntaxErrors(), [`Syntax error in ${tokens} on line 2`]);
    // An edit that still has a bad line: reported once more, with its new line number.
    await Deno.writeTextFile(tokens, `# edited\ngood: 127.0.0.1:${target.port}\nstill broken\n`);
    for (let i = 0; i < 3; i++) await session();
    assert.deepEqual(syntaxErrors(), [
      `Syntax error in ${tokens} on line 2`,
      `Syntax error in ${tokens} on line 3`,
    ]);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BasicHTTPAuth on the wire: a lower-case scheme and a UTF-8 password are accepted", async () => {
  const target = echoTarget();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin=BasicHTTPAuth",
    "--auth-source=jürgen:pässwörd",
  ]);
  const encode = (credentials: string) =>
    btoa(String.fromCharCode(...new TextEncoder().encode(credentials)));
  try {
    const client = await RawClient.open(proxy.port, {
      Authorization: `basic ${encode("jürgen:pässwörd")}`,
    });
    await client.sendFrame(Opcode.Binary, "in");
    assert.equal(new TextDecoder().decode(await client.readData(2)), "in");
    client.close();
    const wrong = await RawClient.connect(proxy.port);
    assert.match(
      await wrong.request(upgradeRequest({ Authorization: `BASIC ${encode("jürgen:passwort")}` })),
      /^HTTP\/1\.1 401 /,
    );
    wrong.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("--host-token, --target-config, UnixDomainSocketDirectory; the target argument is refused with a token plugin", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  await Deno.writeTextFile(`${dir}/tokens`, `localhost: 127.0.0.1:${target.port}\n`);
  const hostProxy = await startProxy([
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    "--host-token",
  ]);
  const configProxy = await startProxy([`--target-config=${dir}/tokens`]);
  await Deno.mkdir(`${dir}/sockets`);
  const socketListener = Deno.listen({ transport: "unix", path: `${dir}/sockets/vm7` });
  const socketServing = (async () => {
    const conn = await socketListener.accept();
    await writeAll(conn, new TextEncoder().encode("unix vm7"));
    conn.close();
  })();
  const socketProxy = await startProxy([
    "--token-plugin=UnixDomainSocketDirectory",
    `--token-source=${dir}/sockets`,
  ]);
  try {
    const byHost = await RawClient.open(hostProxy.port, { Host: "localhost:6080" });
    await byHost.sendFrame(Opcode.Binary, "host");
    assert.equal(new TextDecoder().decode(await byHost.readData(4)), "host");
    byHost.close();
    const byConfig = await RawClient.connect(configProxy.port);
    assert.match(
      await byConfig.request(upgradeRequest({}, "/?token=localhost")),
      /^HTTP\/1\.1 101/,
    );
    byConfig.close();
    const bySocket = await RawClient.connect(socketProxy.port);
    assert.match(await bySocket.request(upgradeRequest({}, "/?token=vm7")), /^HTTP\/1\.1 101/);
    assert.equal(new TextDecoder().decode(await bySocket.readData(8)), "unix vm7");
    bySocket.close();
    await socketServing;
    const escape = await RawClient.connect(socketProxy.port);
    await escape.send(new TextEncoder().encode(upgradeRequest({}, "/?token=../tokens")));
    assert.equal((await escape.readRest()).length, 0);
    escape.close();
    const refused = new ProxyProcess([
      "6080",
      "h:1",
      "--token-plugin=TokenFile",
      `--token-source=${dir}/tokens`,
    ]);
    assert.equal((await refused.status()).code, 2);
    assert.match(refused.stderr, /Too many arguments/);
    const unknown = new ProxyProcess([
      "6080",
      "--token-plugin=websockify.token_plugins.TokenMemcached",
      "--token-source=x",
    ]);
    assert.equal((await unknown.status()).code, 2);
    assert.match(unknown.stderr, /not available \(built in: TokenFile/);
  } finally {
    await hostProxy.stop();
    await configProxy.stop();
    await socketProxy.stop();
    socketListener.close();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth plugins on the wire: 401 with the challenge, 403 Invalid Origin, --web-auth, client-certificate CN", async () => {
  const target = echoTarget();
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(`${root}/index.html`, "secret page");
  const basic = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin=BasicHTTPAuth",
    "--auth-source=user:pass word",
    `--web=${root}`,
    "--web-auth",
  ]);
  const origin = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin=ExpectOrigin",
    "--auth-source=https://novnc.example",
  ]);
  const certs = await makeCerts();
  const cn = await startProxy([
    `127.0.0.1:${target.port}`,
    ...serverCertArgs(certs),
    "--verify-client",
    `--cafile=${certs.ca}`,
    "--auth-plugin=ClientCertCNAuth",
    "--auth-source=someone-else client1",
  ]);
  try {
    const anonymous = await RawClient.connect(basic.port);
    const head = await anonymous.request(upgradeRequest());
    assert.match(head, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assert.match(head, /WWW-Authenticate: Basic realm="Websockify"\r\n/);
    assert.equal((await anonymous.readRest()).length, 0, "no body");
    anonymous.close();
    const authorized = await RawClient.open(basic.port, {
      Authorization: "Basic " + btoa("user:pass word"),
    });
    authorized.close();
    const page = await RawClient.connect(basic.port);
    assert.match(
      await page.request("GET / HTTP/1.1\r\n\r\n"),
      /^HTTP\/1\.1 401/,
      "--web-auth guards files",
    );
    page.close();
    const pageOk = await RawClient.connect(basic.port);
    const okHead = await pageOk.request(
      `GET / HTTP/1.1\r\nAuthorization: Basic ${
        btoa("user:pass word")
      }\r\nConnection: close\r\n\r\n`,
    );
    assert.match(okHead, /^HTTP\/1\.1 200 OK/);
    pageOk.close();

    const stranger = await RawClient.connect(origin.port);
    assert.match(
      await stranger.request(upgradeRequest({ Origin: "https://evil.example" })),
      /^HTTP\/1\.1 403 Invalid Origin/,
    );
    stranger.close();
    const friend = await RawClient.open(origin.port, { Origin: "https://novnc.example" });
    friend.close();
    await waitFor(
      () => origin.log.has(/authentication failed: 403 Invalid Origin Header/),
      3000,
      "log",
    );

    const upgrade = upgradeRequest({ SSL_CLIENT_S_DN_CN: "client1" }); // a forged header changes nothing
    const withCert = await sClient(
      cn.port,
      ["-cert", certs.clientCert, "-key", certs.clientKey],
      upgrade,
    );
    assert.match(withCert.text, /HTTP\/1\.1 101 Switching Protocols/);
    // A certificate from the same CA but for a CN that is not listed gets 403.
    const issued = `${certs.dir}/client2.pem`;
    const issuedKey = `${certs.dir}/client2.key`;
    await certs.issueServer("client2", issued, issuedKey);
    const wrongCN = await sClient(cn.port, ["-cert", issued, "-key", issuedKey], upgrade);
    assert.match(wrongCN.text, /HTTP\/1\.1 403 Forbidden/);
  } finally {
    await basic.stop();
    await origin.stop();
    await cn.stop();
    await target.close();
    await certs.remove();
    await Deno.remove(root, { recursive: true });
  }
});

/** A real HTTP token service on loopback: answers per path, records the paths it was asked for. */
function tokenService(answer: (path: string) => Promise<Response> | Response) {
  const asked: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    asked.push(path);
    return answer(path);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, asked, close: () => server.shutdown() };
}

Deno.test("BaseTokenAPI and JSONTokenApi end to end: the service's answer picks the target; non-2xx is no such token", async () => {
  const one = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("one"))
  );
  const two = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("two"))
  );
  const service = tokenService((path) => {
    if (path === "/text/vm%201") return new Response(` 127.0.0.1:${one.port}\n`);
    if (path === "/json/vm%2F2") {
      return Response.json({ host: "127.0.0.1", port: String(two.port) });
    }
    if (path.startsWith("/json/bad")) return new Response("not json");
    return new Response("no such desktop", { status: 404 });
  });
  const text = await startProxy([
    "--token-plugin=websockify.token_plugins.BaseTokenAPI", // as Python launch scripts spell it
    `--token-source=${service.url}/text/%s`,
  ]);
  const json = await startProxy([
    "--token-plugin=JSONTokenApi",
    `--token-source=${service.url}/json/%s`,
  ]);
  try {
    const first = await RawClient.connect(text.port);
    assert.match(await first.request(upgradeRequest({}, "/?token=vm+1")), /^HTTP\/1\.1 101/);
    assert.equal(new TextDecoder().decode(await first.readData(3)), "one");
    first.close();
    const second = await RawClient.connect(json.port);
    assert.match(await second.request(upgradeRequest({}, "/?token=vm%2F2")), /^HTTP\/1\.1 101/);
    assert.equal(new TextDecoder().decode(await second.readData(3)), "two");
    second.close();
    assert.deepEqual(
      service.asked.slice(0, 2),
      ["/text/vm%201", "/json/vm%2F2"],
      "tokens go URL-encoded",
    );
    // 404: no such token, closed without an answer, as for a token file.
    const unknown = await RawClient.connect(text.port);
    await unknown.send(new TextEncoder().encode(upgradeRequest({}, "/?token=nope")));
    assert.equal((await unknown.readRest()).length, 0, "no HTTP answer at all");
    unknown.close();
    await waitFor(() => text.log.has(/Token #[0-9a-f]{8} not found/), 2000, "the not-found line");
    // An answer that is not a target fails the lookup, with the service named and the token not.
    const bad = await RawClient.connect(json.port);
    await bad.send(new TextEncoder().encode(upgradeRequest({}, "/?token=bad-secret-token")));
    assert.equal((await bad.readRest()).length, 0);
    bad.close();
    await waitFor(() => json.log.has(/token lookup failed/), 2000, "the failed lookup line");
    const failure = json.log.lines.find((line) => /token lookup failed/.test(line))!;
    assert.match(failure, /token service 127\.0\.0\.1:\d+: the answer is not a target/);
    assert.doesNotMatch(failure, /secret/);
  } finally {
    await text.stop();
    await json.stop();
    await service.close();
    await one.close();
    await two.close();
  }
});

Deno.test("a token service that does not answer: the session is refused after 5 s, others are served meanwhile", async () => {
  const target = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("ok"))
  );
  const hold = Promise.withResolvers<void>();
  const service = tokenService(async (path) => {
    if (path === "/slow") await hold.promise; // never answers in time
    return new Response(`127.0.0.1:${target.port}`);
  });
  const proxy = await startProxy([
    "--token-plugin=BaseTokenAPI",
    `--token-source=${service.url}/%s`,
  ]);
  try {
    const started = performance.now();
    const slow = await RawClient.connect(proxy.port);
    await slow.send(new TextEncoder().encode(upgradeRequest({}, "/?token=slow")));
    // Lookups never block other connections.
    const fast = await RawClient.connect(proxy.port);
    assert.match(await fast.request(upgradeRequest({}, "/?token=fast")), /^HTTP\/1\.1 101/);
    assert.equal(new TextDecoder().decode(await fast.readData(2)), "ok");
    fast.close();
    assert.equal((await slow.readRest(8000)).length, 0, "refused without an answer");
    const waited = performance.now() - started;
    slow.close();
    assert.ok(waited >= 4500 && waited < 7500, `refused after ${waited} ms`);
    assert.ok(
      proxy.log.has(/token lookup failed: token service 127\.0\.0\.1:\d+: no answer within 5 s/),
    );
  } finally {
    hold.resolve();
    await proxy.stop();
    await service.close();
    await target.close();
  }
});

Deno.test("a token service source without %s, or not http(s), stops the start with the reason", async () => {
  for (
    const [source, reason] of [
      ["http://127.0.0.1:9/targets", /no %s where the token goes/],
      ["ftp://host/%s", /not an http or https URL/],
      ["just words", /not a URL/],
    ] as const
  ) {
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      "--token-plugin=JSONTokenApi",
      `--token-source=${source}`,
    ]);
    const status = await proxy.status();
    assert.notEqual(status.code, 0);
    assert.match(proxy.stderr, reason);
  }
});

Deno.test("JWTTokenApi end to end: RS256, ES256 (after a key rotation on disk) and HS256 tokens; expired, early, forged, none and JWE refused", async () => {
  const dir = await Deno.makeTempDir();
  const target = new TcpTarget(async (conn) =>
    void await writeAll(conn, new TextEncoder().encode("in"))
  );
  const claims = { host: "127.0.0.1", port: target.port };
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const other = await generateKeyPair("RS256", { extractable: true });
  const ec = await generateKeyPair("ES256", { extractable: true });
  const keyFile = `${dir}/key.pem`;
  await Deno.writeTextFile(keyFile, await exportSPKI(rsa.publicKey));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const secretFile = `${dir}/secret.key`;
  // As Python reads it: the base64url `k` of an oct JWK.
  await Deno.writeTextFile(
    secretFile,
    btoa(String.fromCharCode(...secret)).replaceAll("+", "-").replaceAll("/", "_").replace(
      /=+$/,
      "",
    ) + "\n",
  );
  const sign = (
    alg: string,
    key: CryptoKey | Uint8Array,
    extra: (jwt: SignJWT) => SignJWT = (jwt) => jwt,
  ) => extra(new SignJWT(claims).setProtectedHeader({ alg })).sign(key);
  const rsaProxy = await startProxy(["--token-plugin=JWTTokenApi", `--token-source=${keyFile}`]);
  const hsProxy = await startProxy(["--token-plugin=JWTTokenApi", `--token-source=${secretFile}`]);
  const accepted = async (port: number, token: string) => {
    const client = await RawClient.connect(port);
    try {
      const head = await client.request(upgradeRequest({}, `/?token=${token}`));
      if (!head.startsWith("HTTP/1.1 101")) return false;
      return new TextDecoder().decode(await client.readData(2)) === "in";
    } catch {
      return false;
    } finally {
      client.close();
    }
  };
  try {
    assert.ok(await accepted(rsaProxy.port, await sign("RS256", rsa.privateKey)), "RS256");
    assert.ok(await accepted(hsProxy.port, await sign("HS256", secret)), "HS256");
    const now = Math.floor(Date.now() / 1000);
    const refusals: [string, string, RegExp][] = [
      [
        "expired",
        await sign("RS256", rsa.privateKey, (jwt) => jwt.setExpirationTime(now - 60)),
        /JWT expired/,
      ],
      [
        "early",
        await sign("RS256", rsa.privateKey, (jwt) => jwt.setNotBefore(now + 600)),
        /not valid now \(nbf claim\)/,
      ],
      ["forged", await sign("RS256", other.privateKey), /signature does not verify/],
      [
        "none",
        `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify(claims))}.`,
        /algorithm not allowed|not a signed JWT/,
      ],
      [
        "JWE",
        await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(claims)))
          .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" })
          .encrypt((await generateKeyPair("RSA-OAEP-256")).publicKey),
        /not a signed JWT/,
      ],
      [
        "HS256 with the public key's text",
        await sign("HS256", new TextEncoder().encode(await exportSPKI(rsa.publicKey))),
        /algorithm not allowed/,
      ],
    ];
    for (const [what, token, reason] of refusals) {
      const before = rsaProxy.log.lines.length;
      assert.equal(await accepted(rsaProxy.port, token), false, what);
      await waitFor(
        () => rsaProxy.log.lines.length > before && rsaProxy.log.has(reason),
        2000,
        `the refusal of ${what}`,
      );
      const line = rsaProxy.log.lines.slice(before).find((l) => /Token refused/.test(l));
      assert.ok(
        line && !line.includes(token.slice(0, 20)),
        `${what}: refused without the token in the log (${line})`,
      );
    }
    assert.equal(
      await accepted(hsProxy.port, await sign("HS256", crypto.getRandomValues(new Uint8Array(32)))),
      false,
      "another secret",
    );
    // Key rotation on disk: the new key's tokens are accepted without a restart, the old key's no longer.
    await Deno.writeTextFile(`${keyFile}.new`, await exportSPKI(ec.publicKey));
    await Deno.rename(`${keyFile}.new`, keyFile);
    assert.ok(
      await accepted(rsaProxy.port, await sign("ES256", ec.privateKey)),
      "ES256 after the rotation",
    );
    assert.equal(
      await accepted(rsaProxy.port, await sign("RS256", rsa.privateKey)),
      false,
      "the old key",
    );
  } finally {
    await rsaProxy.stop();
    await hsProxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

function b64url(text: string): string {
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}
