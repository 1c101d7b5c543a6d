// The built-in pages on the wire: served under /websockify/ without --web, byte for byte as on disk (xterm.js
// from its npm package), with types, ETags and 304s; the prefix's rules against --web, --no-builtin-pages and
// --web-auth.
import assert from "node:assert/strict";
import { BUILTIN_FILES } from "../../lib/builtin.ts";
import { ROOT } from "../helpers/paths.ts";
import { startProxy } from "../helpers/proxy.ts";
import { Opcode } from "../../lib/websocket/frames.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget } from "../helpers/targets.ts";

interface Reply {
  head: string;
  status: number;
  body: Uint8Array;
}

/** One request on its own connection (Connection: close): the response head and body. */
async function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<Reply> {
  const client = await RawClient.connect(port);
  try {
    const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
    const head = await client.request(
      `${method} ${path} HTTP/1.1\r\nHost: localhost\r\n${lines}Connection: close\r\n\r\n`,
    );
    const body = await client.readRest();
    return { head, status: Number(head.split(" ")[1]), body };
  } finally {
    client.close();
  }
}

const header = (reply: Reply, name: string) =>
  reply.head.match(new RegExp(`^${name}: (.*)$`, "im"))?.[1]?.trim();

/** What each built-in file must be: the file on disk (npm files without their source-map comment). */
async function expectedBody(name: string): Promise<Uint8Array> {
  const npm: Record<string, string> = {
    "xterm/xterm.mjs": "tests/node_modules/@xterm/xterm/lib/xterm.mjs",
    "xterm/xterm.css": "tests/node_modules/@xterm/xterm/css/xterm.css",
    "xterm/addon-fit.mjs": "tests/node_modules/@xterm/addon-fit/lib/addon-fit.mjs",
  };
  const path = npm[name] ?? `web/${name === "" ? "index.html" : name}`;
  const text = await Deno.readTextFile(`${ROOT}${path}`);
  return new TextEncoder().encode(text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n"));
}

Deno.test("built-in pages without --web: every file with its type, as on disk, ETag then 304, HEAD", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    assert.equal(BUILTIN_FILES.size, 13);
    for (const [name, file] of BUILTIN_FILES) {
      const path = `/websockify/${name}`;
      const reply = await get(proxy.port, path);
      assert.equal(reply.status, 200, `${path}: ${reply.head}`);
      assert.equal(header(reply, "Content-Type"), file.type, path);
      assert.deepEqual(reply.body, await expectedBody(name), path);
      assert.equal(header(reply, "Content-Length"), String(reply.body.length));
      assert.equal(header(reply, "Cache-Control"), "no-cache");
      assert.equal(header(reply, "X-Content-Type-Options"), "nosniff");
      const etag = header(reply, "ETag")!;
      const again = await get(proxy.port, path, { "If-None-Match": etag });
      assert.equal(again.status, 304, path);
      assert.equal(again.body.length, 0);
      assert.equal(header(again, "ETag"), etag);
      const other = await get(proxy.port, path, { "If-None-Match": '"something else"' });
      assert.equal(other.status, 200);
    }
    const head = await get(proxy.port, "/websockify/wstelnet.html", {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(
      Number(header(head, "Content-Length")),
      (await expectedBody("wstelnet.html")).length,
    );
    assert.match(
      await Deno.readTextFile(`${ROOT}web/wstelnet.html`),
      /from "\.\/xterm\/xterm\.mjs"/,
    );
    assert.ok(proxy.log.has(/"GET \/websockify\/websock\.js HTTP\/1\.1" 200 -/));
    assert.ok(proxy.log.has(/"GET \/websockify\/websock\.js HTTP\/1\.1" 304 -/));

    // Keep-alive: two files on one connection.
    const client = await RawClient.connect(proxy.port);
    try {
      const first = await client.request(
        "GET /websockify/websock.d.ts HTTP/1.1\r\nHost: x\r\n\r\n",
      );
      assert.match(first, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(first, /Connection: keep-alive/);
      const length = Number(first.match(/Content-Length: (\d+)/)![1]);
      await client.send(
        new TextEncoder().encode("GET /websockify/nope HTTP/1.1\r\nHost: x\r\n\r\n"),
      );
      const rest = new TextDecoder().decode(await client.readRest());
      assert.equal(rest.slice(length).split("\r\n")[0], "HTTP/1.1 404 File not found");
    } finally {
      client.close();
    }
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("the prefix: unknown names 404, other methods 405, /websockify and / unchanged, upgrades unchanged", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    assert.equal((await get(proxy.port, "/websockify/nothing.js")).status, 404);
    assert.equal((await get(proxy.port, "/websockify/xterm/")).status, 404);
    assert.equal((await get(proxy.port, "/websockify/wstelnet.html", {}, "POST")).status, 405);
    // Outside the prefix nothing changed: without --web, plain HTTP is 405 as in Python websockify.
    assert.equal((await get(proxy.port, "/websockify")).status, 405);
    assert.equal((await get(proxy.port, "/")).status, 405);
    assert.equal((await get(proxy.port, "/websockify/../wsecho.html")).status, 405);
    // A WebSocket under the prefix is still a WebSocket session.
    const ws = await RawClient.connect(proxy.port);
    try {
      const response = await ws.request(upgradeRequest({}, "/websockify/wsecho.html"));
      assert.match(response, /^HTTP\/1\.1 101 /);
      await ws.sendFrame(Opcode.Binary, "through");
      assert.equal(new TextDecoder().decode(await ws.readData(7)), "through");
    } finally {
      ws.close();
    }
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("with --web: the built-ins win under /websockify/, --web serves the rest; --no-builtin-pages restores 405", async () => {
  const target = echoTarget();
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(`${root}/index.html`, "web index");
  await Deno.mkdir(`${root}/websockify`);
  await Deno.writeTextFile(`${root}/websockify/websock.js`, "an old copy");
  await Deno.writeTextFile(`${root}/websockify/mine.html`, "mine");
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--web=${root}`]);
  const off = await startProxy([`127.0.0.1:${target.port}`, "--no-builtin-pages"]);
  const offWeb = await startProxy([
    `127.0.0.1:${target.port}`,
    "--no-builtin-pages",
    `--web=${root}`,
  ]);
  try {
    const decode = (reply: Reply) => new TextDecoder().decode(reply.body);
    assert.deepEqual(
      (await get(proxy.port, "/websockify/websock.js")).body,
      await expectedBody("websock.js"),
    );
    assert.equal(
      (await get(proxy.port, "/websockify/mine.html")).status,
      404,
      "the prefix is reserved",
    );
    assert.equal(decode(await get(proxy.port, "/")), "web index");
    assert.equal(decode(await get(proxy.port, "/index.html")), "web index");
    assert.equal(decode(await get(proxy.port, "/websockify/../index.html")), "web index");

    assert.equal((await get(off.port, "/websockify/wstelnet.html")).status, 405);
    assert.equal((await get(off.port, "/websockify/")).status, 405);
    assert.equal(decode(await get(offWeb.port, "/websockify/websock.js")), "an old copy");
    assert.equal(decode(await get(offWeb.port, "/websockify/mine.html")), "mine");
  } finally {
    await proxy.stop();
    await off.stop();
    await offWeb.stop();
    await target.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("--web-auth guards the built-in pages too", async () => {
  const target = echoTarget();
  const root = await Deno.makeTempDir();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin=BasicHTTPAuth",
    "--auth-source=user:secret",
    `--web=${root}`,
    "--web-auth",
  ]);
  try {
    assert.equal((await get(proxy.port, "/websockify/wsecho.html")).status, 401);
    const authorized = await get(proxy.port, "/websockify/wsecho.html", {
      Authorization: `Basic ${btoa("user:secret")}`,
    });
    assert.equal(authorized.status, 200);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(root, { recursive: true });
  }
});
