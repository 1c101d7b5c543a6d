// Token plugins (target per connection) and auth plugins on the wire: real clients, targets, openssl s_client.
import assert from "node:assert/strict";
import { Opcode } from "../../lib/websocket/frames.ts";
import { makeCerts, sClient } from "../helpers/certs.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget, TcpTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

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
    assert.ok(proxy.log.has(/127\.0\.0\.1: Token 'nope' not found/));
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
      "--token-plugin=websockify.token_plugins.TokenRedis",
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
    `--cert=${certs.serverCert}`,
    `--key=${certs.serverKey}`,
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
