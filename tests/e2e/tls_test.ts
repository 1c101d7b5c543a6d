// TLS on the proxy's own port (sniffed), its options, and TLS toward the target. Real peers: openssl s_client,
// Deno's TLS client, a TLS echo target.
import assert from "node:assert/strict";
import { Opcode } from "../../lib/websocket/frames.ts";
import { readToEnd } from "../helpers/bytes.ts";
import {
  type ClientChain,
  clientChains,
  makeCerts,
  opensslVerifies,
  sClient,
  serverCertArgs,
  type TestCerts,
} from "../helpers/certs.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

let certs: TestCerts;

async function withCerts(body: () => Promise<void>): Promise<void> {
  certs = await makeCerts();
  try {
    await body();
  } finally {
    await certs.remove();
  }
}

const GET = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

Deno.test("ws:// and wss:// on the same port at the same time", () =>
  withCerts(async () => {
    const target = echoTarget();
    const proxy = await startProxy([
      `127.0.0.1:${target.port}`,
      ...serverCertArgs(certs),
    ]);
    try {
      const ca = await Deno.readTextFile(certs.ca);
      const secure = await RawClient.openTls(proxy.port, ca);
      const plain = await RawClient.open(proxy.port);
      await secure.sendFrame(Opcode.Binary, "over TLS");
      await plain.sendFrame(Opcode.Binary, "in plain");
      assert.equal(new TextDecoder().decode(await secure.readData(8)), "over TLS");
      assert.equal(new TextDecoder().decode(await plain.readData(8)), "in plain");
      await secure.sendFrame(Opcode.Close, new Uint8Array([0x03, 0xe8]));
      assert.equal((await secure.nextClose())?.code, 1000);
      secure.close();
      plain.close();
      assert.ok(proxy.log.has(/SSL\/TLS \(wss:\/\/\) WebSocket connection/));
      assert.ok(proxy.log.has(/Plain non-SSL \(ws:\/\/\) WebSocket connection/));
    } finally {
      await proxy.stop();
      await target.close();
    }
  }));

Deno.test("TLS versions: 1.2 and 1.3 by default; --ssl-version tlsv1_3 refuses 1.2; 1.1 is never offered", () =>
  withCerts(async () => {
    const target = echoTarget();
    const base = [`127.0.0.1:${target.port}`, `--cert=${certs.combined}`];
    const proxy = await startProxy(base);
    const strict = await startProxy([...base, "--ssl-version=tlsv1_3"]);
    try {
      const v12 = await sClient(proxy.port, ["-tls1_2"], GET);
      assert.match(v12.text, /HTTP\/1\.1 405 Method Not Allowed/);
      assert.match(v12.text, /Protocol\s*:\s*TLSv1\.2|TLSv1\.2/);
      const v13 = await sClient(proxy.port, ["-tls1_3"], GET);
      assert.match(v13.text, /HTTP\/1\.1 405/);
      assert.match(v13.text, /TLSv1\.3/);
      const v11 = await sClient(proxy.port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], GET);
      assert.doesNotMatch(v11.text, /HTTP\/1\.1 405/);
      const refused = await sClient(strict.port, ["-tls1_2"], GET);
      assert.doesNotMatch(refused.text, /HTTP\/1\.1 405/);
      const accepted = await sClient(strict.port, ["-tls1_3"], GET);
      assert.match(accepted.text, /HTTP\/1\.1 405/);
    } finally {
      await proxy.stop();
      await strict.stop();
      await target.close();
    }
  }));

Deno.test("a certificate renewed on disk is used for new connections without a restart", () =>
  withCerts(async () => {
    const target = echoTarget();
    const cert = `${certs.dir}/live.pem`;
    const key = `${certs.dir}/live.key`;
    await certs.issueServer("first-cert", cert, key);
    const proxy = await startProxy([`127.0.0.1:${target.port}`, `--cert=${cert}`, `--key=${key}`]);
    try {
      assert.match((await sClient(proxy.port, [], GET)).text, /subject=CN\s*=\s*first-cert/);
      await certs.issueServer("second-cert", cert, key);
      assert.match((await sClient(proxy.port, [], GET)).text, /subject=CN\s*=\s*second-cert/);
    } finally {
      await proxy.stop();
      await target.close();
    }
  }));

Deno.test("without a certificate: TLS clients are closed with a log line; the banner says TLS is off", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, "--cert=/nonexistent/self.pem"]);
  try {
    const attempt = await sClient(proxy.port, [], GET);
    assert.doesNotMatch(attempt.text, /HTTP\/1\.1/);
    await waitFor(
      () => proxy.log.has(/SSL connection but '\/nonexistent\/self\.pem' not found/),
      3000,
      "log",
    );
    const plain = await RawClient.open(proxy.port);
    plain.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
  const banner = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", "--cert=/nonexistent/self.pem"]);
  await banner.port();
  assert.match(banner.stderr, /- No SSL\/TLS support \(no cert file\)/);
  await banner.stop();
});

Deno.test("--ssl-only: plain connections refused, TLS served; startup fails without a certificate", () =>
  withCerts(async () => {
    const target = echoTarget();
    const proxy = new ProxyProcess([
      "127.0.0.1:0",
      `127.0.0.1:${target.port}`,
      "--ssl-only",
      ...serverCertArgs(certs),
    ]);
    try {
      const port = await proxy.port();
      assert.match(proxy.stderr, /- SSL\/TLS support\n\s+- Deny non-SSL\/TLS connections/);
      const plain = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(plain, new TextEncoder().encode(GET));
      assert.equal((await readToEnd(plain)).length, 0, "closed without an answer");
      plain.close();
      await waitFor(
        () => /non-SSL connection received but disallowed/.test(proxy.stderr),
        3000,
        "log",
      );
      const secure = await RawClient.openTls(port, await Deno.readTextFile(certs.ca));
      await secure.sendFrame(Opcode.Binary, "only TLS");
      assert.equal(new TextDecoder().decode(await secure.readData(8)), "only TLS");
      secure.close();
    } finally {
      await proxy.stop();
      await target.close();
    }
    const missing = new ProxyProcess([
      "127.0.0.1:0",
      "127.0.0.1:1",
      "--ssl-only",
      "--cert=/nonexistent.pem",
    ]);
    assert.equal((await missing.status()).code, 2);
    assert.match(missing.stderr, /--ssl-only and the certificate '\/nonexistent\.pem' not found/);
  }));

Deno.test("--verify-client: no certificate and untrusted certificates are refused, a CA-issued one is served", () =>
  withCerts(async () => {
    const target = echoTarget();
    const proxy = await startProxy([
      `127.0.0.1:${target.port}`,
      ...serverCertArgs(certs),
      "--verify-client",
      `--cafile=${certs.ca}`,
    ]);
    try {
      const none = await sClient(proxy.port, [], GET);
      assert.doesNotMatch(none.text, /HTTP\/1\.1 405/);
      const untrusted = await sClient(proxy.port, [
        "-cert",
        certs.untrustedCert,
        "-key",
        certs.untrustedKey,
      ], GET);
      assert.doesNotMatch(untrusted.text, /HTTP\/1\.1 405/);
      await waitFor(
        () => proxy.log.has(/TLS handshake failed: .*not issued by a trusted CA/),
        3000,
        "refusal log",
      );
      const trusted = await sClient(proxy.port, [
        "-cert",
        certs.clientCert,
        "-key",
        certs.clientKey,
      ], GET);
      assert.match(trusted.text, /HTTP\/1\.1 405 Method Not Allowed/);
    } finally {
      await proxy.stop();
      await target.close();
    }
  }));

Deno.test("passphrase-protected keys: --key-password, --key-password-file, $WEBSOCKIFY_KEY_PASSWORD; a wrong one fails at startup", () =>
  withCerts(async () => {
    const target = echoTarget();
    const passwordFile = `${certs.dir}/password.txt`;
    await Deno.writeTextFile(passwordFile, certs.password + "\n");
    const base = [
      `127.0.0.1:${target.port}`,
      `--cert=${certs.serverCert}`,
      `--key=${certs.encryptedKey}`,
    ];
    try {
      for (
        const extra of [[`--key-password=${certs.password}`], [
          `--key-password-file=${passwordFile}`,
        ]]
      ) {
        const proxy = await startProxy([...base, ...extra]);
        assert.match((await sClient(proxy.port, [], GET)).text, /HTTP\/1\.1 405/, extra.join(" "));
        await proxy.stop();
      }
      const viaEnv = new ProxyProcess(["127.0.0.1:0", ...base], {
        env: { WEBSOCKIFY_KEY_PASSWORD: certs.password },
      });
      const port = await viaEnv.port();
      assert.match((await sClient(port, [], GET)).text, /HTTP\/1\.1 405/);
      await viaEnv.stop();
      const wrong = new ProxyProcess(["127.0.0.1:0", ...base, "--key-password=wrong"]);
      assert.equal((await wrong.status()).code, 1);
      assert.match(wrong.stderr, /cannot use the certificate .*wrong --key-password/);
    } finally {
      await target.close();
    }
  }));

Deno.test("values the TLS stack cannot honour are said at startup", async () => {
  const ciphers = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", "--ssl-ciphers=HIGH:!aNULL"]);
  assert.equal((await ciphers.status()).code, 2);
  assert.match(ciphers.stderr, /--ssl-ciphers: .*cannot restrict cipher suites/);
  const old = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", "--ssl-version=tlsv1_1"]);
  await old.port();
  assert.match(old.stderr, /note: --ssl-version tlsv1_1: TLS 1\.0 and 1\.1 are not offered/);
  await old.stop();
  const bad = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", "--ssl-version=sslv3"]);
  assert.equal((await bad.status()).code, 2);
  assert.match(bad.stderr, /invalid choice: 'sslv3'/);
});

Deno.test("--ssl-target: TLS to the target, verified (with --ssl-target-cafile for a private CA)", () =>
  withCerts(async () => {
    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(certs.serverCert),
      key: await Deno.readTextFile(certs.serverKey),
    });
    const port = (listener.addr as Deno.NetAddr).port;
    const serving = (async () => {
      for await (const conn of listener) {
        (async () => {
          const buffer = new Uint8Array(1024);
          let n: number | null;
          try {
            while ((n = await conn.read(buffer)) !== null) {
              await writeAll(conn, buffer.subarray(0, n));
            }
          } catch { /* refused handshakes end here */ }
          try {
            conn.close();
          } catch { /* closed */ }
        })();
      }
    })().catch(() => {});
    const trusted = await startProxy([
      `localhost:${port}`,
      "--ssl-target",
      `--ssl-target-cafile=${certs.ca}`,
    ]);
    const untrusted = await startProxy([`localhost:${port}`, "--ssl-target"]);
    try {
      const client = await RawClient.open(trusted.port);
      await client.sendFrame(Opcode.Binary, "encrypted hop");
      assert.equal(new TextDecoder().decode(await client.readData(13)), "encrypted hop");
      client.close();
      assert.ok(trusted.log.has(new RegExp(`connecting to: localhost:${port} \\(using SSL\\)`)));
      const refused = await RawClient.open(untrusted.port);
      assert.equal((await refused.nextClose())?.code, 1011);
      refused.close();
      assert.ok(
        untrusted.log.has(/Failed to connect to localhost:\d+: .*(certificate|UnknownIssuer)/i),
      );
    } finally {
      await trusted.stop();
      await untrusted.stop();
      listener.close();
      await serving;
    }
  }));

/** Python's ssl module as a TLS echo target that reports the server name (SNI) each client asked for. */
function pythonTlsTarget(cert: string, key: string) {
  const server = new Deno.Command("python3", {
    args: [
      "-u",
      "-c",
      [
        "import socket, ssl, sys, threading",
        "ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)",
        "ctx.load_cert_chain(sys.argv[1], sys.argv[2])",
        "ctx.sni_callback = lambda sock, name, context: print('sni=' + str(name), flush=True)",
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(4)",
        "print('port=%d' % s.getsockname()[1], flush=True)",
        "def serve(c):",
        "    try:",
        "        t = ctx.wrap_socket(c, server_side=True)",
        "        while True:",
        "            d = t.recv(65536)",
        "            if not d: break",
        "            t.sendall(d)",
        "    except Exception as e: print('error=' + str(e), flush=True)",
        "while True:",
        "    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()",
      ].join("\n"),
      cert,
      key,
    ],
    stdout: "piped",
  }).spawn();
  const state = { output: "" };
  const reading = (async () => {
    for await (const chunk of server.stdout) state.output += new TextDecoder().decode(chunk);
  })();
  return {
    state,
    async port(): Promise<number> {
      await waitFor(() => /port=\d+/.test(state.output), 5000, "python TLS target");
      return Number(state.output.match(/port=(\d+)/)![1]);
    },
    async stop() {
      server.kill();
      await server.status;
      await reading;
    },
  };
}

Deno.test("--ssl-target sends SNI (the target's host name) and verifies the certificate's name", () =>
  withCerts(async () => {
    const good = pythonTlsTarget(certs.serverCert, certs.serverKey);
    const otherCert = `${certs.dir}/elsewhere.pem`;
    const otherKey = `${certs.dir}/elsewhere.key`;
    await certs.issueServer("elsewhere", otherCert, otherKey, "DNS:elsewhere.example");
    const wrongName = pythonTlsTarget(otherCert, otherKey);
    try {
      const proxy = await startProxy([
        `localhost:${await good.port()}`,
        "--ssl-target",
        `--ssl-target-cafile=${certs.ca}`,
      ]);
      const mismatch = await startProxy([
        `localhost:${await wrongName.port()}`,
        "--ssl-target",
        `--ssl-target-cafile=${certs.ca}`,
      ]);
      try {
        const client = await RawClient.open(proxy.port);
        await client.sendFrame(Opcode.Binary, "named");
        assert.equal(new TextDecoder().decode(await client.readData(5)), "named");
        client.close();
        await waitFor(() => /sni=localhost/.test(good.state.output), 3000, "the SNI report");
        // Same CA, but the certificate names another host: refused.
        const refused = await RawClient.open(mismatch.port);
        assert.equal((await refused.nextClose())?.code, 1011);
        refused.close();
        assert.ok(
          mismatch.log.has(
            /Failed to connect to localhost:\d+: .*(NotValidForName|not valid for|name)/i,
          ),
        );
      } finally {
        await proxy.stop();
        await mismatch.stop();
      }
    } finally {
      await good.stop();
      await wrongName.stop();
    }
  }));

Deno.test("--verify-client: every issuer in a client chain must be a CA (basicConstraints, pathLen, keyCertSign)", () =>
  withCerts(async () => {
    const chains = await clientChains(certs);
    const target = echoTarget();
    const proxy = await startProxy([
      `127.0.0.1:${target.port}`,
      ...serverCertArgs(certs),
      "--verify-client",
      `--cafile=${certs.ca}`,
      "--auth-plugin=ClientCertCNAuth",
      "--auth-source=admin",
    ]);
    const present = async (chain: ClientChain) => {
      const bundle = `${certs.dir}/presented-${crypto.randomUUID()}.pem`;
      await Deno.writeTextFile(
        bundle,
        (await Promise.all(chain.intermediates.map((c) => Deno.readTextFile(c.cert)))).join(""),
      );
      return await sClient(proxy.port, [
        "-cert",
        chain.leaf.cert,
        "-key",
        chain.leaf.key,
        "-cert_chain",
        bundle,
      ], upgradeRequest());
    };
    try {
      const refusals = {
        forged: /'CN=leaf' is not a CA \(no basicConstraints CA:TRUE\) but issued 'CN=admin'/,
        tooDeep: /path length constraint of 'CN=pathlen0' exceeded/,
        noCertSign: /the keyUsage of CA 'CN=no-certsign' lacks keyCertSign/,
      };
      for (const [name, reason] of Object.entries(refusals) as [keyof typeof refusals, RegExp][]) {
        assert.equal(await opensslVerifies(certs, chains[name]), false, `openssl refuses ${name}`);
        const answer = await present(chains[name]);
        assert.doesNotMatch(answer.text, /HTTP\/1\.1 101/, `${name} must not get 101`);
        await waitFor(
          () => proxy.log.has(new RegExp(`TLS handshake failed: .*${reason.source}`)),
          3000,
          `the refusal of ${name}`,
        );
      }
      assert.ok(!proxy.log.has(/connecting to:/), "no refused chain reached the target");
      assert.equal(await opensslVerifies(certs, chains.proper), true, "openssl accepts proper");
      const accepted = await present(chains.proper);
      assert.match(accepted.text, /HTTP\/1\.1 101 Switching Protocols/);
    } finally {
      await proxy.stop();
      await target.close();
    }
  }));

Deno.test("startup: a private key that does not belong to the certificate is refused, naming both files", () =>
  withCerts(async () => {
    // The same inside one file (websockify's self.pem layout): certificate of one pair, key of another.
    const mixed = `${certs.dir}/mixed.pem`;
    await Deno.writeTextFile(
      mixed,
      (await Deno.readTextFile(certs.serverCert)) + (await Deno.readTextFile(certs.untrustedKey)),
    );
    const cases = [
      {
        args: [`--cert=${certs.serverCert}`, `--key=${certs.clientKey}`],
        message:
          /error: cannot use the certificate '.*\/server\.pem': the private key in '.*\/client\.key' does not belong to the certificate in '.*\/server\.pem'/,
      },
      {
        args: [`--cert=${mixed}`],
        message:
          /the private key in '.*\/mixed\.pem' does not belong to the certificate in '.*\/mixed\.pem'/,
      },
    ];
    for (const { args, message } of cases) {
      const proxy = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", ...args]);
      try {
        assert.equal((await proxy.status()).code, 1, proxy.stderr);
        assert.match(proxy.stderr, message);
        assert.doesNotMatch(proxy.stderr, /SSL\/TLS support|Listen on/);
      } finally {
        await proxy.stop();
      }
    }
  }));

Deno.test("startup: an expired or not yet valid certificate starts with a warning", () =>
  withCerts(async () => {
    const expired = await certs.issueDated("expired", "20200101000000Z", "20200102000000Z");
    const future = await certs.issueDated("future", "20990101000000Z", "20990102000000Z");
    for (
      const [cert, warning] of [
        [
          expired,
          /warning: the certificate '.*\/expired\.pem' expired on Jan\s+2 00:00:00 2020 GMT/,
        ],
        [
          future,
          /warning: the certificate '.*\/future\.pem' is not valid yet \(from Jan\s+1 00:00:00 2099 GMT\)/,
        ],
      ] as const
    ) {
      const proxy = new ProxyProcess([
        "127.0.0.1:0",
        "127.0.0.1:1",
        `--cert=${cert.cert}`,
        `--key=${cert.key}`,
      ]);
      try {
        await proxy.port();
        assert.match(proxy.stderr, warning);
        assert.match(proxy.stderr, /- SSL\/TLS support/, "it still starts with TLS");
      } finally {
        await proxy.stop();
      }
    }
    // A certificate within its dates: no warning.
    const valid = new ProxyProcess([
      "127.0.0.1:0",
      "127.0.0.1:1",
      ...serverCertArgs(certs),
    ]);
    try {
      await valid.port();
      assert.doesNotMatch(valid.stderr, /warning/);
    } finally {
      await valid.stop();
    }
  }));

Deno.test("startup: a missing --cert given explicitly is a warning; the default self.pem missing, an info line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "websockify-nocert-" });
  try {
    const explicit = new ProxyProcess([
      "127.0.0.1:0",
      "127.0.0.1:1",
      `--cert=${dir}/typo.pem`,
      `--log-file=${dir}/ws.log`,
    ]);
    const warning = new RegExp(
      `warning: --cert '${dir}/typo\\.pem' not found: TLS \\(wss://\\) is off`,
    );
    try {
      await explicit.port();
      assert.match(explicit.stderr, warning);
    } finally {
      await explicit.stop();
    }
    assert.match(await Deno.readTextFile(`${dir}/ws.log`), warning, "also in --log-file");
    const directory = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", `--cert=${dir}`]);
    try {
      await directory.port();
      assert.match(directory.stderr, /warning: --cert '.*' not a file: TLS \(wss:\/\/\) is off/);
    } finally {
      await directory.stop();
    }
    // Started in `dir`, where the default self.pem does not exist.
    const defaulted = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1"], { shell: `cd '${dir}' &&` });
    try {
      await defaulted.port();
      assert.match(
        defaulted.stderr,
        new RegExp(
          `no certificate: '${dir}/self\\.pem' \\(the default --cert\\) not found: TLS \\(wss://\\) is off`,
        ),
      );
      assert.doesNotMatch(defaulted.stderr, /warning/);
    } finally {
      await defaulted.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
