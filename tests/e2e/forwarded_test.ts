// --trusted-proxy with real peers: clients from two loopback addresses (127.0.0.1 trusted, 127.0.0.2 not, bound
// with node:net's localAddress) sending forged and honest Forwarded / X-Forwarded-For / X-Real-IP headers; an
// IPv6 peer; per-IP session limits by the named address; keep-alive requests named one by one; and Debian's
// nginx (X-Forwarded-For) and HAProxy in http mode (option forwardfor) as real reverse proxies in front. What the log lines and a token
// plugin module (tests/plugins/client_recorder.ts) are told is checked.

import assert from "node:assert/strict";
import WebSocketClient from "ws";
import { websockify } from "../../mod.ts";
import { HAPROXY_AVAILABLE, LoadBalancer, NGINX_AVAILABLE } from "../helpers/balancers.ts";
import { ROOT } from "../helpers/paths.ts";
import { type InProcessProxy, startProxy } from "../helpers/proxy.ts";
import { echoTarget } from "../helpers/targets.ts";
import { BoundClient } from "../helpers/bound_client.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const RECORDER = `${ROOT}tests/plugins/client_recorder.ts`;

/** An upgrade request head with the test's extra header lines. */
function upgrade(path: string, targetPort: number, headers: string[] = []): string {
  return [
    `GET ${path} HTTP/1.1`,
    "Host: x",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    `X-Target-Port: ${targetPort}`,
    ...headers,
    "",
    "",
  ].join("\r\n");
}

/** The client prefix of the proxy's log line that contains `text`. */
function clientOfLine(proxy: InProcessProxy, text: string): string | undefined {
  const line = proxy.log.lines.find((candidate) => candidate.includes(text));
  return line?.slice(0, line.indexOf(" - - ["));
}

async function recorded(file: string, count: number): Promise<string[]> {
  let lines: string[] = [];
  await waitFor(
    () => {
      lines = Deno.readTextFileSync(file).split("\n").filter((line) => line);
      return lines.length >= count;
    },
    5000,
    `${count} plugin lookups`,
  );
  return lines;
}

Deno.test("--trusted-proxy: only the trusted peer's headers name the client, in the log and for the plugin", async () => {
  const echo = echoTarget();
  const dir = await Deno.makeTempDir();
  const record = `${dir}/clients`;
  Deno.writeTextFileSync(record, "");
  const proxy = await startProxy([
    "--trusted-proxy=127.0.0.1,10.0.0.0/8",
    "--trusted-proxy",
    "fd00::/8",
    `--token-plugin=${RECORDER}`,
    `--token-source=${record}`,
  ]);
  try {
    // [from, header lines, the client expected (port: "peer" for the peer's own port, "-" for none)]
    const cases: [string, string[], string, string][] = [
      // An untrusted peer forges every header: all ignored.
      ["127.0.0.2", ["X-Forwarded-For: 6.6.6.6"], "127.0.0.2", "peer"],
      ["127.0.0.2", ["Forwarded: for=6.6.6.6"], "127.0.0.2", "peer"],
      [
        "127.0.0.2",
        ["X-Real-IP: 6.6.6.6", "X-Forwarded-For: 10.0.0.1, 6.6.6.6"],
        "127.0.0.2",
        "peer",
      ],
      // The trusted peer: the rightmost untrusted address; the client's forged entries stay on the left.
      ["127.0.0.1", ["X-Forwarded-For: 203.0.113.7"], "203.0.113.7", "-"],
      ["127.0.0.1", ["X-Forwarded-For: 6.6.6.6, 203.0.113.7,10.0.0.2"], "203.0.113.7", "-"],
      [
        "127.0.0.1",
        ["X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 203.0.113.8"],
        "203.0.113.8",
        "-",
      ],
      ["127.0.0.1", ["X-Forwarded-For: 203.0.113.9:40123"], "203.0.113.9", "40123"],
      ["127.0.0.1", ["X-Forwarded-For: ::ffff:198.51.100.11"], "198.51.100.11", "-"],
      ["127.0.0.1", ["X-Forwarded-For: 2001:DB8:0::0:1, fd00::5"], "2001:db8::1", "-"],
      // Forwarded first (quoted IPv6 with a port), then X-Forwarded-For, then X-Real-IP.
      [
        "127.0.0.1",
        ['Forwarded: for="[2001:db8:cafe::17]:4711";proto=http', "X-Forwarded-For: 6.6.6.6"],
        "2001:db8:cafe::17",
        "4711",
      ],
      ["127.0.0.1", ["Forwarded: for=6.6.6.6, For=198.51.100.9;by=_x"], "198.51.100.9", "-"],
      ["127.0.0.1", ["Forwarded: for=198.51.100.12, for=_hidden"], "198.51.100.12", "-"],
      ["127.0.0.1", ["X-Real-IP: 198.51.100.10"], "198.51.100.10", "-"],
      // Nothing usable: the peer itself.
      ["127.0.0.1", ["X-Forwarded-For: garbage, unknown"], "127.0.0.1", "peer"],
      ["127.0.0.1", ["Forwarded: for=unknown", "X-Forwarded-For: 6.6.6.6"], "127.0.0.1", "peer"],
      ["127.0.0.1", [], "127.0.0.1", "peer"],
    ];
    let index = 0;
    for (const [from, headers, client, port] of cases) {
      index++;
      const what = `case ${index}: ${from} ${headers.join(" | ")}`;
      const connection = await BoundClient.connect(from, proxy.port);
      const status = await connection.send(upgrade(`/case-${index}?token=rec`, echo.port, headers));
      assert.equal(status, "HTTP/1.1 101 Switching Protocols", what);
      await connection.close();
      await waitFor(
        () =>
          proxy.log.has(new RegExp(`Path: '/case-${index}\\?`)) &&
          (proxy.log.lines.filter((line) => /session ended by/.test(line)).length >= index),
        5000,
        `the session of ${what}`,
      );
      const [last] = (await recorded(record, index)).slice(-1);
      const expectedPort = port === "peer" ? String(connection.localPort) : port;
      assert.equal(last, `${client} ${expectedPort}`, what);
      assert.equal(clientOfLine(proxy, `Path: '/case-${index}?`), client, what);
      assert.equal(clientOfLine(proxy, `: Path: '/case-${index}?`), client, what);
    }
    // Each session's summary is attributed to the named client too.
    const summaries = proxy.log.lines.filter((line) => /session ended by/.test(line));
    assert.deepEqual(
      summaries.map((line) => line.slice(0, line.indexOf(" - - ["))),
      cases.map(([, , client]) => client),
    );
    // -v says which header named the client, and through which proxy.
    assert.ok(
      proxy.log.has(
        /^203\.0\.113\.7 - - \[.*\] client named by the X-Forwarded-For header of trusted proxy 127\.0\.0\.1$/,
      ),
    );
    // Nothing was ever attributed to a forged address.
    assert.ok(
      !proxy.log.lines.some((line) => line.startsWith("6.6.6.6")),
      proxy.log.lines.join("\n"),
    );
  } finally {
    await proxy.stop();
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--trusted-proxy: per-IP session limits count the named client; keep-alive requests are named one by one", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([
    "--trusted-proxy=127.0.0.1",
    "--max-sessions-per-ip=1",
    `127.0.0.1:${echo.port}`,
  ]);
  const held: BoundClient[] = [];
  try {
    const open = async (from: string, headers: string[]) => {
      const connection = await BoundClient.connect(from, proxy.port);
      held.push(connection);
      return await connection.send(upgrade("/", echo.port, headers));
    };
    const OK = "HTTP/1.1 101 Switching Protocols";
    const FULL = "HTTP/1.1 503 Too many sessions from 203.0.113.20 (--max-sessions-per-ip 1)";
    assert.equal(await open("127.0.0.1", ["X-Forwarded-For: 203.0.113.20"]), OK);
    // Another browser behind the same reverse proxy is another client.
    assert.equal(await open("127.0.0.1", ["X-Forwarded-For: 203.0.113.21"]), OK);
    // The same browser again: over its limit, however its address is spelled.
    assert.equal(await open("127.0.0.1", ["X-Forwarded-For: 203.0.113.20"]), FULL);
    assert.equal(await open("127.0.0.1", ['Forwarded: for="203.0.113.20:1234"']), FULL);
    assert.equal(await open("127.0.0.1", ["X-Forwarded-For: ::ffff:203.0.113.20"]), FULL);
    assert.ok(
      proxy.log.has(
        /^203\.0\.113\.20 - - \[.*\] code 503, message Too many sessions from 203\.0\.113\.20/,
      ),
    );
    // A forging untrusted peer is counted as itself (it has no session yet).
    assert.equal(await open("127.0.0.2", ["X-Forwarded-For: 203.0.113.21"]), OK);
    // The trusted proxy's own address has no session either: a request without a header is it.
    assert.equal(await open("127.0.0.1", []), OK);

    // Keep-alive: two requests on one connection of the trusted proxy, each named by its own header.
    const connection = await BoundClient.connect("127.0.0.1", proxy.port);
    held.push(connection);
    assert.equal(
      await connection.send(
        "GET /websockify/websock.js HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.30\r\n\r\n",
      ),
      "HTTP/1.1 200 OK",
    );
    assert.equal(
      await connection.send(upgrade("/second", echo.port, ["X-Forwarded-For: 198.51.100.31"])),
      OK,
    );
    assert.equal(clientOfLine(proxy, '"GET /websockify/websock.js HTTP/1.1" 200'), "198.51.100.30");
    assert.equal(clientOfLine(proxy, "Path: '/second'"), "198.51.100.31");
  } finally {
    for (const connection of held) await connection.close();
    await proxy.stop();
    await echo.close();
  }
});

Deno.test("--trusted-proxy: an IPv6 peer (the library's trustedProxy option)", async () => {
  const echo = echoTarget();
  const lines: string[] = [];
  const proxy = await websockify({
    listen: "[::1]:0",
    target: `127.0.0.1:${echo.port}`,
    trustedProxy: ["::1", "10.0.0.0/8"],
    log: (line) => lines.push(line),
  });
  try {
    for (
      const [headers, path] of [
        [["X-Forwarded-For: 6.6.6.6, 2001:db8::42"], "/a"],
        [['Forwarded: for="[2001:db8::43]"'], "/b"],
        [[], "/c"],
      ] as const
    ) {
      const connection = await BoundClient.connect("::1", proxy.port, "::1");
      assert.equal(
        await connection.send(upgrade(path, echo.port, [...headers])),
        "HTTP/1.1 101 Switching Protocols",
      );
      await connection.close();
    }
    await waitFor(
      () => lines.filter((line) => /session ended/.test(line)).length === 3,
      5000,
      "3 ends",
    );
    const clientOf = (text: string) => {
      const line = lines.find((candidate) => candidate.includes(text));
      return line?.slice(0, line.indexOf(" - - ["));
    };
    assert.equal(clientOf("Path: '/a'"), "2001:db8::42");
    assert.equal(clientOf("Path: '/b'"), "2001:db8::43");
    assert.equal(clientOf("Path: '/c'"), "::1");
  } finally {
    await proxy.shutdown();
    await echo.close();
  }
});

Deno.test("--trusted-proxy with --proxy-protocol: the PROXY header's source is what must be trusted", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([
    "--proxy-protocol",
    "--trusted-proxy=192.0.2.1",
    `127.0.0.1:${echo.port}`,
  ]);
  try {
    const cases: [string, string, string][] = [
      // A trusted reverse proxy (192.0.2.1) behind a TCP load balancer: its header names the browser.
      ["PROXY TCP4 192.0.2.1 127.0.0.1 5000 80", "203.0.113.60", "/via-trusted"],
      // Another source: its header is ignored, the load balancer's word stands.
      ["PROXY TCP4 192.0.2.2 127.0.0.1 5001 80", "192.0.2.2", "/via-other"],
    ];
    for (const [header, client, path] of cases) {
      const connection = await BoundClient.connect("127.0.0.1", proxy.port);
      const head = upgrade(path, echo.port, [
        client === "192.0.2.2" ? "X-Forwarded-For: 6.6.6.6" : `X-Forwarded-For: ${client}`,
      ]);
      assert.equal(
        await connection.send(`${header}\r\n${head}`),
        "HTTP/1.1 101 Switching Protocols",
      );
      await connection.close();
    }
    await waitFor(
      () => proxy.log.lines.filter((line) => /session ended by/.test(line)).length === 2,
      5000,
      "2 session summaries",
    );
    assert.equal(clientOfLine(proxy, "Path: '/via-trusted'"), "203.0.113.60");
    assert.equal(clientOfLine(proxy, "Path: '/via-other'"), "192.0.2.2");
    // The peer itself (127.0.0.1) is not trusted: only the PROXY source counted.
    assert.ok(!proxy.log.lines.some((line) => line.startsWith("6.6.6.6")));
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

/** A WebSocket session through `url` with npm ws from `localAddress`: sends `text`, returns the echo. */
function wsEcho(
  url: string,
  localAddress: string,
  headers: Record<string, string>,
  text: string,
): Promise<string> {
  return deadline(
    new Promise<string>((resolve, reject) => {
      const ws = new WebSocketClient(url, ["binary"], { localAddress, headers });
      let answer = "";
      ws.on("open", () => ws.send(new TextEncoder().encode(text)));
      ws.on("message", (data: Uint8Array) => {
        answer += new TextDecoder().decode(data);
        if (answer.length >= text.length) ws.close(1000);
      });
      ws.on("close", () => resolve(answer));
      ws.on("error", reject);
    }),
    10_000,
    `a session through ${url}`,
  );
}

Deno.test({
  name:
    "--trusted-proxy behind Debian's nginx: the log and the token plugin see the browser's address",
  ignore: !NGINX_AVAILABLE,
  async fn() {
    const echo = echoTarget();
    const dir = await Deno.makeTempDir();
    const record = `${dir}/clients`;
    Deno.writeTextFileSync(record, "");
    const proxy = await startProxy([
      "--trusted-proxy=127.0.0.1",
      `--token-plugin=${RECORDER}`,
      `--token-source=${record}`,
    ]);
    // The README's configuration: X-Forwarded-For appended, a client's Forwarded header removed.
    const nginx = await LoadBalancer.nginxHttp([
      `proxy_pass http://127.0.0.1:${proxy.port};`,
      "proxy_http_version 1.1;",
      "proxy_set_header Upgrade $http_upgrade;",
      'proxy_set_header Connection "upgrade";',
      "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
      'proxy_set_header Forwarded "";',
      "proxy_read_timeout 1h;",
    ].join(" "));
    try {
      const target = { "X-Target-Port": String(echo.port) };
      // An honest browser on 127.0.0.2.
      assert.equal(
        await wsEcho(`ws://127.0.0.1:${nginx.port}/one?token=rec`, "127.0.0.2", target, "hello"),
        "hello",
      );
      // A browser forging both headers: nginx appends its address to the one, drops the other.
      assert.equal(
        await wsEcho(`ws://127.0.0.1:${nginx.port}/two?token=rec`, "127.0.0.2", {
          ...target,
          "X-Forwarded-For": "6.6.6.6",
          "Forwarded": "for=6.6.6.6",
          "X-Real-IP": "6.6.6.6",
        }, "forged"),
        "forged",
      );
      // An IPv6 browser.
      assert.equal(
        await wsEcho(`ws://[::1]:${nginx.port}/three?token=rec`, "::1", target, "six"),
        "six",
      );
      await waitFor(
        () => proxy.log.lines.filter((line) => /session ended by/.test(line)).length === 3,
        5000,
        "3 session summaries",
      );
      const lines = await recorded(record, 3);
      assert.deepEqual(lines, ["127.0.0.2 -", "127.0.0.2 -", "::1 -"]);
      assert.equal(clientOfLine(proxy, "Path: '/one?"), "127.0.0.2");
      assert.equal(clientOfLine(proxy, "Path: '/two?"), "127.0.0.2");
      assert.equal(clientOfLine(proxy, "Path: '/three?"), "::1");
      const summaries = proxy.log.lines.filter((line) => /session ended by/.test(line));
      assert.deepEqual(
        summaries.map((line) => line.slice(0, line.indexOf(" - - ["))),
        ["127.0.0.2", "127.0.0.2", "::1"],
      );
      // Never nginx's own address, never the forged one.
      assert.ok(
        !proxy.log.lines.some((line) => /^(127\.0\.0\.1|6\.6\.6\.6) /.test(line)),
        proxy.log.lines.join("\n"),
      );
    } finally {
      await nginx.stop();
      await proxy.stop();
      await echo.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "--trusted-proxy behind HAProxy in http mode (option forwardfor): the browser's address",
  ignore: !HAPROXY_AVAILABLE,
  async fn() {
    const echo = echoTarget();
    const dir = await Deno.makeTempDir();
    const record = `${dir}/clients`;
    Deno.writeTextFileSync(record, "");
    const proxy = await startProxy([
      "--trusted-proxy=127.0.0.1",
      `--token-plugin=${RECORDER}`,
      `--token-source=${record}`,
    ]);
    // The README's configuration.
    const haproxy = await LoadBalancer.haproxy(`server proxy 127.0.0.1:${proxy.port}`, {
      mode: "http",
      frontend: ["option forwardfor", "http-request del-header Forwarded"],
    });
    try {
      const target = { "X-Target-Port": String(echo.port) };
      assert.equal(
        await wsEcho(`ws://127.0.0.1:${haproxy.port}/h1?token=rec`, "127.0.0.2", target, "hi"),
        "hi",
      );
      assert.equal(
        await wsEcho(`ws://127.0.0.1:${haproxy.port}/h2?token=rec`, "127.0.0.2", {
          ...target,
          "X-Forwarded-For": "6.6.6.6",
          "Forwarded": "for=6.6.6.6",
        }, "forged"),
        "forged",
      );
      assert.deepEqual(await recorded(record, 2), ["127.0.0.2 -", "127.0.0.2 -"]);
      assert.equal(clientOfLine(proxy, "Path: '/h1?"), "127.0.0.2");
      assert.equal(clientOfLine(proxy, "Path: '/h2?"), "127.0.0.2");
      assert.ok(!proxy.log.lines.some((line) => /^6\.6\.6\.6 /.test(line)));
    } finally {
      await haproxy.stop();
      await proxy.stop();
      await echo.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
