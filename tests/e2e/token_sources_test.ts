// --token-from on the wire: the token in a cookie, the path, a subprotocol, the query or a header, read by real
// clients (Deno's WebSocket, npm ws, raw bytes) through real token plugins to real targets; never in clear in a log.
import assert from "node:assert/strict";
import WebSocketNode from "ws";
import { SignJWT } from "jose";
import { writeAll } from "../../lib/io.ts";
import { tokenHash } from "../../lib/secrets.ts";
import { Opcode } from "../../lib/websocket/frames.ts";
import { type InProcessProxy, startProxy } from "../helpers/proxy.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { deadline } from "../helpers/waits.ts";

/** A target that says its name, then echoes. */
function namedTarget(name: string): TcpTarget {
  return new TcpTarget(async (conn) => {
    await writeAll(conn, new TextEncoder().encode(name));
    const buffer = new Uint8Array(4096);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      await writeAll(conn, buffer.subarray(0, n));
    }
  });
}

/**
 * Deno's WebSocket: opens `url`, reads what the target says first, sends "+echo" and reads it back; returns the
 * greeting and the selected subprotocol.
 */
async function denoSession(
  url: string,
  greetingLength: number,
  protocols: string[] = ["binary"],
): Promise<{ greeting: string; protocol: string }> {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  let text = "";
  const done = new Promise<void>((resolve, reject) => {
    ws.onmessage = (event) => {
      text += new TextDecoder().decode(new Uint8Array(event.data as ArrayBuffer));
      if (text.length === greetingLength) ws.send(new TextEncoder().encode("+echo"));
      if (text.length === greetingLength + 5) resolve();
    };
    ws.onerror = () => reject(new Error(`WebSocket error on ${url}`));
    ws.onclose = (event) => reject(new Error(`closed ${event.code} before the echo (${url})`));
  });
  try {
    await deadline(done, 5000, url);
  } finally {
    ws.onclose = null;
    ws.close();
  }
  assert.equal(text.slice(greetingLength), "+echo");
  return { greeting: text.slice(0, greetingLength), protocol: ws.protocol };
}

/** npm ws with extra request headers (a Cookie, say): the greeting, after an echo round trip. */
async function nodeSession(
  url: string,
  greetingLength: number,
  headers: Record<string, string>,
): Promise<string> {
  const ws = new WebSocketNode(url, ["binary"], { headers, perMessageDeflate: false });
  let text = "";
  const done = new Promise<void>((resolve, reject) => {
    ws.on("message", (data: Buffer) => {
      text += data.toString();
      if (text.length === greetingLength) ws.send(Buffer.from("+echo"));
      if (text.length === greetingLength + 5) resolve();
    });
    ws.on("error", reject);
    ws.on("close", (code: number) => reject(new Error(`closed ${code} before the echo`)));
  });
  try {
    await deadline(done, 5000, url);
  } finally {
    ws.removeAllListeners("close");
    ws.close();
  }
  return text.slice(0, greetingLength);
}

/** Every log line, checked for a secret's characters. */
function assertNoSecrets(proxy: InProcessProxy, secrets: string[]): void {
  for (const line of proxy.log.lines) {
    for (const secret of secrets) {
      assert.ok(!line.includes(secret), `a token in clear in: ${line}`);
      const encoded = encodeURIComponent(secret);
      assert.ok(!line.includes(encoded), `a token (encoded) in clear in: ${line}`);
    }
  }
}

Deno.test("--token-from cookie, path, protocol, query: each reaches its own target (Deno WebSocket, npm ws); no token in any log line", async () => {
  const dir = await Deno.makeTempDir();
  const names = ["kuki", "pfad", "prot", "frag"];
  const targets = Object.fromEntries(names.map((name) => [name, namedTarget(name)]));
  // Tokens that look like secrets, with characters that need encoding in a path or a cookie.
  const tokens = {
    kuki: "Sek-Kuki xyzw",
    pfad: "Sek Pfad/qrst",
    prot: "Sek-Prot-uvwk",
    frag: "Sek-Query-ghij",
  };
  await Deno.writeTextFile(
    `${dir}/tokens`,
    names.map((name) => `${tokens[name as keyof typeof tokens]}: 127.0.0.1:${targets[name].port}\n`)
      .join(""),
  );
  const proxy = await startProxy([
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    "--token-from=cookie:vnc_token,path,protocol,query",
  ]);
  const base = `ws://127.0.0.1:${proxy.port}`;
  try {
    // The cookie, as a browser sends it (percent-encoded by the page that set it), among others.
    assert.equal(
      await nodeSession(`${base}/websockify`, 4, {
        Cookie: `theme=dark; vnc_token=${encodeURIComponent(tokens.kuki)}; x=1`,
      }),
      "kuki",
    );
    // The path's last segment, percent-decoded (an encoded '/' is the token's).
    assert.equal(
      (await denoSession(`${base}/websockify/${encodeURIComponent(tokens.pfad)}`, 4)).greeting,
      "pfad",
    );
    // A subprotocol token.VALUE beside binary: binary is the one selected.
    const byProtocol = await denoSession(`${base}/websockify`, 4, [
      "binary",
      `token.${tokens.prot}`,
    ]);
    assert.deepEqual(byProtocol, { greeting: "prot", protocol: "binary" });
    // The query, as always; and earlier sources win over later ones (the cookie over the query).
    assert.equal(
      (await denoSession(`${base}/websockify?token=${encodeURIComponent(tokens.frag)}`, 4))
        .greeting,
      "frag",
    );
    assert.equal(
      await nodeSession(`${base}/websockify?token=${encodeURIComponent(tokens.frag)}`, 4, {
        Cookie: `vnc_token=${encodeURIComponent(tokens.kuki)}`,
      }),
      "kuki",
    );
    // Offered alone (a non-browser client), the token subprotocol leaves no subprotocol to answer with.
    const raw = await RawClient.connect(proxy.port);
    const head = await raw.request(
      upgradeRequest({ "Sec-WebSocket-Protocol": `token.${tokens.prot}` }, "/websockify"),
    );
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.doesNotMatch(head, /Sec-WebSocket-Protocol|Sek/i);
    assert.equal(new TextDecoder().decode(await raw.readData(4)), "prot");
    raw.close();

    // -v logs the request lines and the Path: line with the path's token as its hash.
    const pathHash = tokenHash(tokens.pfad);
    assert.ok(proxy.log.has(new RegExp(`Path: '/websockify/${pathHash}'`)), "Path: line");
    assert.ok(proxy.log.has(new RegExp(`"GET /websockify/${pathHash} HTTP/1\\.1" 101`)));
    assertNoSecrets(proxy, Object.values(tokens));
  } finally {
    await proxy.stop();
    for (const target of Object.values(targets)) await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--token-from: unknown and missing tokens in a path or cookie close without an answer, named by hash only", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tokens`, "known: 127.0.0.1:9\n");
  const proxy = await startProxy([
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    "--token-from=path,cookie:t",
  ]);
  try {
    for (
      const [path, headers] of [
        ["/websockify/Sek-Unknown-Pfad", {}],
        ["/websockify", { Cookie: "t=Sek-Unknown-Kuki" }],
        ["/websockify", {}],
        ["/websockify/", { Cookie: "t=" }],
      ] as [string, Record<string, string>][]
    ) {
      const client = await RawClient.connect(proxy.port);
      await client.send(new TextEncoder().encode(upgradeRequest(headers, path)));
      assert.equal((await client.readRest()).length, 0, `${path}: no HTTP answer`);
      client.close();
    }
    assert.ok(proxy.log.has(new RegExp(`Token ${tokenHash("Sek-Unknown-Pfad")} not found`)));
    assert.ok(proxy.log.has(new RegExp(`Token ${tokenHash("Sek-Unknown-Kuki")} not found`)));
    assert.ok(proxy.log.has(/127\.0\.0\.1: Token not present$/));
    // A plain GET of such a path (the built-in pages' prefix: 404), its request line hidden as well.
    const page = await RawClient.connect(proxy.port);
    assert.match(
      await page.request("GET /websockify/Sek-Get-Pfad HTTP/1.1\r\n\r\n"),
      /^HTTP\/1\.1 404/,
    );
    assert.ok(
      proxy.log.has(new RegExp(`"GET /websockify/${tokenHash("Sek-Get-Pfad")} HTTP/1.1" 404`)),
    );
    page.close();
    assertNoSecrets(proxy, ["Sek-"]);
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--token-from header:NAME is ignored from a peer that is not a trusted proxy: no session, the log says why", async () => {
  const dir = await Deno.makeTempDir();
  const target = namedTarget("hdr!");
  await Deno.writeTextFile(`${dir}/tokens`, `Sek-Header-abc: 127.0.0.1:${target.port}\n`);
  const proxy = await startProxy([
    "--token-plugin=TokenFile",
    `--token-source=${dir}/tokens`,
    "--token-from=header:X-VNC-Token",
  ]);
  try {
    // The loopback client is not a trusted proxy (there is none): its header names no target.
    const client = await RawClient.connect(proxy.port);
    await client.send(
      new TextEncoder().encode(upgradeRequest({ "X-VNC-Token": "Sek-Header-abc" }, "/websockify")),
    );
    assert.equal((await client.readRest()).length, 0, "closed without an answer");
    client.close();
    assert.ok(
      proxy.log.has(
        /127\.0\.0\.1: Token not present \(header:x-vnc-token ignored: not from a trusted proxy\)/,
      ),
      proxy.log.lines.join("\n"),
    );
    assert.equal(target.connections.length, 0, "the target never heard of it");
    assertNoSecrets(proxy, ["Sek-Header-abc"]);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--token-from works with any token plugin: JWTTokenApi with the JWT in a cookie and in the path", async () => {
  const dir = await Deno.makeTempDir();
  const target = namedTarget("jwt!");
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const secretFile = `${dir}/secret.key`;
  await Deno.writeTextFile(
    secretFile,
    btoa(String.fromCharCode(...secret)).replaceAll("+", "-").replaceAll("/", "_")
      .replace(/=+$/, ""),
  );
  const jwt = await new SignJWT({ host: "127.0.0.1", port: target.port })
    .setProtectedHeader({ alg: "HS256" }).sign(secret);
  const proxy = await startProxy([
    "--token-plugin=JWTTokenApi",
    `--token-source=${secretFile}`,
    "--token-from",
    "cookie:vnc_jwt,path",
  ]);
  const base = `ws://127.0.0.1:${proxy.port}`;
  try {
    assert.equal(await nodeSession(`${base}/websockify`, 4, { Cookie: `vnc_jwt=${jwt}` }), "jwt!");
    assert.equal((await denoSession(`${base}/websockify/${jwt}`, 4)).greeting, "jwt!");
    const raw = await RawClient.connect(proxy.port);
    await raw.send(new TextEncoder().encode(upgradeRequest({}, `/websockify/${jwt}x`)));
    assert.equal((await raw.readRest()).length, 0, "a forged JWT in the path is refused");
    raw.close();
    assert.ok(proxy.log.has(/Token refused: JWT signature does not verify/));
    assertNoSecrets(proxy, [jwt, jwt.split(".")[2]]);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--token-from host is --host-token; the same session either way", async () => {
  const dir = await Deno.makeTempDir();
  const target = namedTarget("host");
  await Deno.writeTextFile(`${dir}/tokens`, `desk7.vnc.example: 127.0.0.1:${target.port}\n`);
  const proxies = [
    await startProxy(["--token-plugin=TokenFile", `--token-source=${dir}/tokens`, "--host-token"]),
    await startProxy([
      "--token-plugin=TokenFile",
      `--token-source=${dir}/tokens`,
      "--token-from=host",
    ]),
  ];
  try {
    for (const proxy of proxies) {
      const client = await RawClient.open(proxy.port, { Host: "desk7.vnc.example:6080" });
      assert.equal(new TextDecoder().decode(await client.readData(4)), "host");
      await client.sendFrame(Opcode.Binary, "x");
      assert.equal(new TextDecoder().decode(await client.readData(1)), "x");
      client.close();
    }
  } finally {
    for (const proxy of proxies) await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});
