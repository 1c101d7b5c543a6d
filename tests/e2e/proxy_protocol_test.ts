// The PROXY protocol with real peers: HAProxy (send-proxy, send-proxy-v2 with CRC32C, health checks with
// check-send-proxy, to a unix socket) and nginx's stream module (proxy_protocol on) in front of the proxy, real
// WebSocket clients, real echo targets; connections without a header, slow headers; the header the proxy sends
// to targets (TCP, unix, TLS), read by target servers with the project's own parser and checked byte for byte
// against the specification.
//
// The load balancers connect to the proxy from 127.0.0.3 (HAProxy's `source`, nginx's `proxy_bind`) while the
// clients connect from 127.0.0.1 (or 127.0.0.2 with a known port): a log line with 127.0.0.3 would be the load
// balancer's address, not the client's.

import assert from "node:assert/strict";
import { helpText, parseCommandLine, UsageError } from "../../lib/cli.ts";
import { type ByteStream, writeAll } from "../../lib/io.ts";
import { parseProxyHeader, type ProxyHeader, V2_SIGNATURE } from "../../lib/proxy_protocol.ts";
import { acceptTls, loadCredentials } from "../../lib/tls.ts";
import { Opcode } from "../../lib/websocket/frames.ts";
import { websockify } from "../../mod.ts";
import { HAPROXY_AVAILABLE, LoadBalancer, NGINX_STREAM_AVAILABLE } from "../helpers/balancers.ts";
import { concat, readToEnd } from "../helpers/bytes.ts";
import { withTestCerts } from "../helpers/certs.ts";
import { ROOT } from "../helpers/paths.ts";
import { type InProcessProxy, startProxy } from "../helpers/proxy.ts";
import { RawClient, TLS_START, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget } from "../helpers/targets.ts";
import { BoundClient } from "../helpers/bound_client.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const CLIENT_INFO_PLUGIN = `${ROOT}tests/plugins/client_info.ts`;
const encoder = new TextEncoder();

/** One message through a Deno WebSocket and back; resolves once the socket has closed. */
async function echoOnce(url: string, message: string): Promise<string> {
  const ws = new WebSocket(url, ["binary"]);
  ws.binaryType = "arraybuffer";
  let answer = "";
  await deadline(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => ws.send(encoder.encode(message));
      ws.onmessage = (event) => {
        answer += new TextDecoder().decode(event.data as ArrayBuffer);
        if (answer.length >= message.length) ws.close(1000);
      };
      ws.onerror = () => reject(new Error("WebSocket error"));
      ws.onclose = () => resolve();
    }),
    10_000,
    `echo through ${url}`,
  );
  return answer;
}

/** The log lines of `proxy` whose client prefix is `address`. */
function linesFrom(proxy: InProcessProxy, address: string): string[] {
  return proxy.log.lines.filter((line) => line.startsWith(`${address} - - [`));
}

/** Checks that nothing in the log is attributed to the load balancer's own address. */
function noLineFromBalancer(proxy: InProcessProxy): void {
  assert.deepEqual(linesFrom(proxy, "127.0.0.3"), [], proxy.log.lines.join("\n"));
}

function haproxyTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !HAPROXY_AVAILABLE, fn });
}

// ---- PROXY protocol in ---------------------------------------------------------------------------------------

for (
  const [variant, server] of [["send-proxy", "send-proxy"], [
    "send-proxy-v2 with CRC32C",
    "send-proxy-v2 proxy-v2-options crc32c",
  ]]
) {
  haproxyTest(
    `HAProxy ${variant}: the client's address and port reach the log lines, the summary and the auth plugin`,
    async () => {
      const echo = echoTarget();
      const proxy = await startProxy([
        `127.0.0.1:${echo.port}`,
        "--proxy-protocol",
        `--auth-plugin=${CLIENT_INFO_PLUGIN}`,
      ]);
      const haproxy = await LoadBalancer.haproxy(
        `server proxy 127.0.0.1:${proxy.port} ${server} source 127.0.0.3`,
      );
      try {
        assert.equal(
          await echoOnce(`ws://127.0.0.1:${haproxy.port}/`, "through HAProxy"),
          "through HAProxy",
        );
        await waitFor(() => proxy.log.has(/session ended by client/), 5000, "the session summary");
        const version = server === "send-proxy" ? 1 : 2;
        const fromClient = linesFrom(proxy, "127.0.0.1").join("\n");
        assert.match(
          fromClient,
          new RegExp(
            `PROXY v${version} from 127\\.0\\.0\\.1:\\d+ to 127\\.0\\.0\\.1:${haproxy.port}, via 127\\.0\\.0\\.3:\\d+`,
          ),
        );
        assert.match(fromClient, /Plain non-SSL \(ws:\/\/\) WebSocket connection/);
        assert.match(
          fromClient,
          /session ended by client \(1000 \): 15 bytes from client, 15 bytes to client/,
        );

        // A client with a known address and port: the auth plugin is told both.
        const client = await BoundClient.connect("127.0.0.2", haproxy.port);
        const head = await client.request(upgradeRequest({}, "/who"));
        assert.match(head, /^HTTP\/1\.1 403/);
        await client.close();
        await waitFor(() => proxy.log.has(/authentication failed/), 5000, "the auth log line");
        assert.ok(
          linesFrom(proxy, "127.0.0.2").some((line) =>
            line.endsWith(
              `127.0.0.2: authentication failed: 403 client 127.0.0.2 port ${client.localPort}`,
            )
          ),
          proxy.log.lines.join("\n"),
        );
        noLineFromBalancer(proxy);
        assert.ok(!proxy.log.has(/refused/), proxy.log.lines.join("\n"));
      } finally {
        await haproxy.stop();
        await proxy.stop();
        await echo.close();
      }
    },
  );
}

haproxyTest(
  "HAProxy send-proxy-v2 in front of wss://: TLS is sniffed after the header",
  () =>
    withTestCerts(async (certs, ca) => {
      const echo = echoTarget();
      const proxy = await startProxy([
        `127.0.0.1:${echo.port}`,
        "--proxy-protocol",
        `--cert=${certs.serverCert}`,
        `--key=${certs.serverKey}`,
      ]);
      const haproxy = await LoadBalancer.haproxy(
        `server proxy 127.0.0.1:${proxy.port} send-proxy-v2 source 127.0.0.3`,
      );
      try {
        const client = await RawClient.openTls(haproxy.port, ca);
        await client.sendFrame(Opcode.Binary, "encrypted");
        assert.equal(new TextDecoder().decode(await client.readData(9)), "encrypted");
        client.close();
        await waitFor(() => proxy.log.has(/session ended/), 5000, "the session summary");
        assert.ok(
          linesFrom(proxy, "127.0.0.1").some((line) =>
            line.endsWith("SSL/TLS (wss://) WebSocket connection")
          ),
          proxy.log.lines.join("\n"),
        );
        noLineFromBalancer(proxy);
      } finally {
        await haproxy.stop();
        await proxy.stop();
        await echo.close();
      }
    }),
);

haproxyTest(
  "HAProxy to a --unix-listen socket: the client's address instead of the socket path; LOCAL health checks",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "websockify-pp-" });
    const socket = `${dir}/ws.sock`;
    const echo = echoTarget();
    const proxy = await startProxy([
      `--unix-listen=${socket}`,
      `127.0.0.1:${echo.port}`,
      "--proxy-protocol",
    ]);
    // check-send-proxy: HAProxy's health checks start with a v2 LOCAL header (its own connection).
    const haproxy = await LoadBalancer.haproxy(
      `server proxy unix@${socket} send-proxy-v2 check check-send-proxy inter 200`,
    );
    try {
      await waitFor(() => proxy.log.has(/PROXY v2 LOCAL/), 5000, "a health check");
      assert.equal(await echoOnce(`ws://127.0.0.1:${haproxy.port}/`, "over unix"), "over unix");
      await waitFor(() => proxy.log.has(/session ended by client/), 5000, "the session summary");
      const fromClient = linesFrom(proxy, "127.0.0.1").join("\n");
      assert.match(
        fromClient,
        new RegExp(`PROXY v2 from 127\\.0\\.0\\.1:\\d+ to 127\\.0\\.0\\.1:${haproxy.port}`),
      );
      assert.match(fromClient, /session ended by client/);
      // The health checks are served as the socket's own connections, and quietly.
      assert.ok(
        linesFrom(proxy, socket).every((line) => /PROXY v2 LOCAL/.test(line)),
        proxy.log.lines.join("\n"),
      );
      assert.ok(!proxy.log.has(/refused/), proxy.log.lines.join("\n"));
    } finally {
      await haproxy.stop();
      await proxy.stop();
      await echo.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test({
  name: "nginx stream with proxy_protocol on: the client's address in the log (v1)",
  ignore: !NGINX_STREAM_AVAILABLE,
  fn: async () => {
    const echo = echoTarget();
    const proxy = await startProxy([`127.0.0.1:${echo.port}`, "--proxy-protocol"]);
    const nginx = await LoadBalancer.nginx(
      `proxy_pass 127.0.0.1:${proxy.port}; proxy_protocol on; proxy_bind 127.0.0.3;`,
    );
    try {
      assert.equal(
        await echoOnce(`ws://127.0.0.1:${nginx.port}/`, "through nginx"),
        "through nginx",
      );
      await waitFor(() => proxy.log.has(/session ended by client/), 5000, "the session summary");
      const fromClient = linesFrom(proxy, "127.0.0.1").join("\n");
      assert.match(
        fromClient,
        new RegExp(
          `PROXY v1 from 127\\.0\\.0\\.1:\\d+ to 127\\.0\\.0\\.1:${nginx.port}, via 127\\.0\\.0\\.3:\\d+`,
        ),
      );
      assert.match(fromClient, /Plain non-SSL \(ws:\/\/\) WebSocket connection/);
      noLineFromBalancer(proxy);
    } finally {
      await nginx.stop();
      await proxy.stop();
      await echo.close();
    }
  },
});

Deno.test("--proxy-protocol: a connection without a valid header is closed without an HTTP answer, logged", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${echo.port}`, "--proxy-protocol"]);
  try {
    const cases: [Uint8Array, RegExp][] = [
      [
        encoder.encode(upgradeRequest()),
        /no PROXY protocol header: the connection starts with "GET \/ HTTP\/1\.1"$/,
      ],
      [TLS_START, /starts with a TLS ClientHello$/],
      [
        encoder.encode("PROXY TCP4 10.0.0.1 10.0.0.2 01 80\r\n"),
        /v1 header: source port "01" is not 0-65535$/,
      ],
      [
        concat([V2_SIGNATURE, Uint8Array.of(0x31, 0x11, 0, 0)]),
        /v2 header: version 3 \(only 2 exists\)$/,
      ],
    ];
    for (const [bytes, reason] of cases) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      const port = conn.localAddr.port;
      await writeAll(conn, bytes);
      assert.equal((await deadline(readToEnd(conn), 5000, "close")).length, 0, "no answer at all");
      conn.close();
      await waitFor(() => proxy.log.has(reason), 5000, String(reason));
      const line = proxy.log.lines.find((l) => reason.test(l))!;
      assert.match(
        line,
        new RegExp(
          `^127\\.0\\.0\\.1 - - \\[.*\\] PROXY protocol header refused from 127\\.0\\.0\\.1:${port}: `,
        ),
      );
    }
    // A browser's WebSocket, straight to the proxy, fails.
    const ws = new WebSocket(proxy.url);
    const outcome = await deadline(
      new Promise<string>((resolve) => {
        ws.onopen = () => resolve("open");
        ws.onerror = () => resolve("error");
      }),
      5000,
      "WebSocket outcome",
    );
    assert.equal(outcome, "error");
    await waitFor(() => ws.readyState === WebSocket.CLOSED, 5000, "WebSocket closed");
    assert.ok(!proxy.log.has(/WebSocket connection/));
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

Deno.test("--proxy-protocol: a header in pieces with the request in the same write works; a slow one hits the head deadline", async () => {
  const echo = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${echo.port}`, "--proxy-protocol"], {
    head: 1000,
    firstByte: 500,
  });
  try {
    // The header in two writes, the second also carrying the whole upgrade request and a frame's start.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const client = RawClient.wrap(conn);
    await writeAll(conn, encoder.encode("PROXY TCP6 2001:db8::7 2001:db8::1 4242"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const response = await client.request(" 443\r\n" + upgradeRequest());
    assert.match(response, /^HTTP\/1\.1 101/);
    await client.sendFrame(Opcode.Binary, "after the header");
    assert.equal(new TextDecoder().decode(await client.readData(16)), "after the header");
    client.close();
    await waitFor(() => proxy.log.has(/^2001:db8::7 .*session ended/), 5000, "the session summary");
    assert.ok(
      proxy.log.has(/^2001:db8::7 - - .*PROXY v1 from \[2001:db8::7\]:4242 to \[2001:db8::1\]:443/),
    );

    // Part of a header, then nothing: refused when the head deadline (1 s here) passes.
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    const started = performance.now();
    await writeAll(slow, encoder.encode("PROXY TCP4 10.0.0.1 "));
    assert.equal((await deadline(readToEnd(slow), 5000, "close")).length, 0);
    const waited = performance.now() - started;
    slow.close();
    assert.ok(waited > 800 && waited < 4000, `closed after ${waited} ms`);
    await waitFor(
      () => proxy.log.has(/header refused from 127\.0\.0\.1:\d+: incomplete after 1 s/),
      2000,
      "the line",
    );

    // A whole header and then silence: the client's first bytes get the first-byte time (closed silently).
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    await writeAll(silent, encoder.encode("PROXY TCP4 10.1.1.1 10.0.0.2 1 2\r\n"));
    assert.equal((await deadline(readToEnd(silent), 5000, "close")).length, 0);
    silent.close();
    await waitFor(() => proxy.log.has(/^10\.1\.1\.1 .*PROXY v1/), 2000, "the header line");
    assert.equal(proxy.log.lines.filter((line) => /refused/.test(line)).length, 1);
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

// ---- PROXY protocol out --------------------------------------------------------------------------------------

/**
 * A target that reads a PROXY header with the project's parser (keeping its raw bytes), then echoes, over TLS
 * when given credentials (the header comes before the TLS hello).
 */
class HeaderTarget {
  readonly seen: { raw: Uint8Array; header: ProxyHeader }[] = [];
  readonly #listener: Deno.Listener;
  readonly #loop: Promise<void>;
  readonly #conns: Deno.Conn[] = [];

  constructor(listener: Deno.Listener, tls?: { cert: string; key: string }) {
    this.#listener = listener;
    this.#loop = (async () => {
      const running: Promise<void>[] = [];
      for await (const conn of listener) {
        this.#conns.push(conn);
        running.push(
          this.#serve(conn, tls).catch(() => {}).finally(() => {
            try {
              conn.close();
            } catch { /* closed */ }
          }),
        );
      }
      await Promise.all(running);
    })().catch(() => {});
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #serve(conn: Deno.Conn, tls?: { cert: string; key: string }): Promise<void> {
    let bytes: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    let rest: Uint8Array;
    for (let reads = 0;; reads++) {
      const parsed = parseProxyHeader(bytes);
      if (parsed.kind === "header") {
        this.seen.push({ raw: bytes.slice(0, parsed.length), header: parsed.header });
        rest = bytes.slice(parsed.length);
        break;
      }
      if (parsed.kind === "invalid" || reads > 100) {
        throw new Error(`no header: ${JSON.stringify(parsed)}`);
      }
      const n = await conn.read(buffer);
      if (n === null) return;
      bytes = concat([bytes, buffer.subarray(0, n)]);
    }
    let stream: ByteStream = conn;
    if (tls) {
      const options = { ...tls, certGiven: true, verifyClient: false };
      stream = await acceptTls(conn, rest, options, await loadCredentials(options));
      rest = new Uint8Array(0);
    }
    await writeAll(stream, rest);
    for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
      await writeAll(stream, buffer.subarray(0, n));
    }
    stream.close();
  }

  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await this.#loop;
  }
}

/** Opens a session from a Deno.connect client (so its port is known) and echoes one frame through it. */
async function sessionThrough(proxyPort: number, message: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
  const client = RawClient.wrap(conn);
  try {
    assert.match(await client.request(upgradeRequest()), /^HTTP\/1\.1 101/);
    await client.sendFrame(Opcode.Binary, message);
    assert.equal(new TextDecoder().decode(await client.readData(message.length)), message);
    return conn.localAddr.port;
  } finally {
    client.close();
  }
}

Deno.test("--target-proxy-protocol v1 and v2: the target gets the spec's bytes for the client, then the session", async () => {
  const target = new HeaderTarget(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    for (const version of ["v1", "v2"] as const) {
      const proxy = await startProxy([
        `127.0.0.1:${target.port}`,
        `--target-proxy-protocol=${version}`,
      ]);
      try {
        const clientPort = await sessionThrough(proxy.port, `hello ${version}`);
        const { raw, header } = target.seen.at(-1)!;
        if (version === "v1") {
          assert.equal(
            new TextDecoder().decode(raw),
            `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${proxy.port}\r\n`,
          );
        } else {
          // sig, v2 PROXY, TCP over IPv4, 12 bytes: source, destination, source port, destination port
          assert.deepEqual([...raw], [
            ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
            0x21,
            0x11,
            0x00,
            0x0c,
            ...[127, 0, 0, 1, 127, 0, 0, 1],
            clientPort >> 8,
            clientPort & 0xff,
            proxy.port >> 8,
            proxy.port & 0xff,
          ]);
        }
        assert.deepEqual(header.addresses?.source, {
          family: "ipv4",
          address: "127.0.0.1",
          port: clientPort,
        });
        await waitFor(() => proxy.log.has(/session ended/), 5000, "the session summary");
      } finally {
        await proxy.stop();
      }
    }
    assert.equal(target.seen.length, 2);
  } finally {
    await target.close();
  }
});

Deno.test("--target-proxy-protocol to a unix target and before TLS (--ssl-target)", () =>
  withTestCerts(async (certs) => {
    const dir = await Deno.makeTempDir({ prefix: "websockify-pp-" });
    const unixTarget = new HeaderTarget(
      Deno.listen({ transport: "unix", path: `${dir}/target.sock` }),
    );
    const tlsTarget = new HeaderTarget(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
      cert: certs.serverCert,
      key: certs.serverKey,
    });
    const toUnix = await startProxy([
      `--unix-target=${dir}/target.sock`,
      "--target-proxy-protocol=v2",
    ]);
    const toTls = await startProxy([
      `localhost:${tlsTarget.port}`,
      "--ssl-target",
      `--ssl-target-cafile=${certs.ca}`,
      "--target-proxy-protocol=v1",
    ]);
    try {
      const unixClientPort = await sessionThrough(toUnix.port, "over a unix socket");
      assert.deepEqual(unixTarget.seen[0].header.addresses, {
        transport: "stream",
        source: { family: "ipv4", address: "127.0.0.1", port: unixClientPort },
        destination: { family: "ipv4", address: "127.0.0.1", port: toUnix.port },
      });
      const tlsClientPort = await sessionThrough(toTls.port, "over TLS after the header");
      assert.equal(
        new TextDecoder().decode(tlsTarget.seen[0].raw),
        `PROXY TCP4 127.0.0.1 127.0.0.1 ${tlsClientPort} ${toTls.port}\r\n`,
      );
      assert.ok(toTls.log.has(/connecting to: localhost:\d+ \(using SSL\)/));
      // The header went out, then the target's certificate is refused: close 1011, as without a header.
      const untrusted = await startProxy([
        `localhost:${tlsTarget.port}`,
        "--ssl-target",
        "--target-proxy-protocol=v2",
      ]);
      try {
        const refused = await RawClient.open(untrusted.port);
        assert.equal((await refused.nextClose())?.code, 1011);
        refused.close();
        assert.ok(
          untrusted.log.has(/Failed to connect to localhost:\d+: .*(certificate|UnknownIssuer)/i),
        );
        await waitFor(() => tlsTarget.seen.length === 2, 5000, "the second header");
        assert.equal(tlsTarget.seen[1].header.version, 2);
      } finally {
        await untrusted.stop();
      }
    } finally {
      await toUnix.stop();
      await toTls.stop();
      await unixTarget.close();
      await tlsTarget.close();
      await Deno.remove(dir, { recursive: true });
    }
  }));

haproxyTest(
  "HAProxy -> --proxy-protocol --target-proxy-protocol: the target gets the real client, and HAProxy's address as destination",
  async () => {
    const target = new HeaderTarget(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
    const proxy = await startProxy([
      `127.0.0.1:${target.port}`,
      "--proxy-protocol",
      "--target-proxy-protocol=v2",
    ]);
    const haproxy = await LoadBalancer.haproxy(
      `server proxy 127.0.0.1:${proxy.port} send-proxy-v2 source 127.0.0.3`,
    );
    try {
      const client = await BoundClient.connect("127.0.0.2", haproxy.port);
      assert.match(await client.request(upgradeRequest()), /^HTTP\/1\.1 101/);
      await waitFor(() => target.seen.length === 1, 5000, "the target's header");
      assert.deepEqual(target.seen[0].header.addresses, {
        transport: "stream",
        source: { family: "ipv4", address: "127.0.0.2", port: client.localPort },
        destination: { family: "ipv4", address: "127.0.0.1", port: haproxy.port },
      });
      await client.close();
    } finally {
      await haproxy.stop();
      await proxy.stop();
      await target.close();
    }
  },
);

Deno.test("the options: --help, choices, the banner, the library's typed options", async () => {
  const run = (argv: string[]) => {
    const command = parseCommandLine(argv, "/start");
    if (command.kind !== "run") throw new Error("not a run");
    return command.settings;
  };
  assert.match(
    helpText(),
    /\n {2}--proxy-protocol {10}connections start with a load balancer's PROXY protocol header/,
  );
  assert.match(
    helpText(),
    /\n {2}--target-proxy-protocol=VERSION\n {28}send the target a PROXY protocol header/,
  );
  assert.equal(run(["6080", "h:1"]).proxyProtocol, false);
  assert.equal(run(["6080", "h:1"]).targetProxyProtocol, undefined);
  assert.equal(run(["6080", "h:1", "--proxy-protocol"]).proxyProtocol, true);
  assert.equal(run(["6080", "h:1", "--target-proxy-protocol=v2"]).targetProxyProtocol, "v2");
  assert.equal(run(["6080", "h:1", "--target-proxy-protocol", "v1"]).targetProxyProtocol, "v1");
  assert.throws(
    () => run(["6080", "h:1", "--target-proxy-protocol=2"]),
    (error: unknown) =>
      error instanceof UsageError &&
      /invalid choice: '2' \(choose from 'v1', 'v2'\)/.test(error.message),
  );
  const proxy = await startProxy(["127.0.0.1:1", "--proxy-protocol", "--target-proxy-protocol=v1"]);
  proxy.server.logBanner();
  await proxy.stop();
  assert.ok(proxy.log.has(/^ {2}- PROXY protocol header required \(v1 or v2\)$/));
  assert.ok(proxy.log.has(/^ {2}- PROXY protocol v1 header sent to the target$/));
  await assert.rejects(
    websockify({ listen: 0, target: () => {}, targetProxyProtocol: "v1", log: "none" }),
    /targetProxyProtocol needs a TCP or unix target/,
  );
  // The library passes the options through: a proxy from mod.ts refuses a connection without a header.
  const lines: string[] = [];
  const library = await websockify({
    listen: "127.0.0.1:0",
    target: "127.0.0.1:1",
    proxyProtocol: true,
    log: (line) => lines.push(line),
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: library.port });
    await writeAll(conn, encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    assert.equal((await deadline(readToEnd(conn), 5000, "close")).length, 0);
    conn.close();
    await waitFor(
      () => lines.some((line) => /PROXY protocol header refused/.test(line)),
      5000,
      "the line",
    );
  } finally {
    await library.shutdown();
  }
});
