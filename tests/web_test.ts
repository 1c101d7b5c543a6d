// The static web server (--web) and the HTTP answers on the proxy's port, driven with curl and a raw client.
import assert from "node:assert/strict";
import { writeAll } from "../lib/io.ts";
import { directoryListing, parseRange, urlPathSegments, wantsKeepAlive } from "../lib/web.ts";
import { echoTarget, pseudoRandomBytes, RawClient, readToEnd, startProxy } from "./helpers.ts";

interface CurlResult {
  status: number;
  headers: string;
  body: Uint8Array;
}

/** curl with --path-as-is (no client-side normalisation): status, headers and body. */
async function curl(url: string, ...args: string[]): Promise<CurlResult> {
  const dir = await Deno.makeTempDir();
  try {
    const output = await new Deno.Command("curl", {
      args: [
        "-s",
        "--path-as-is",
        "-D",
        `${dir}/h`,
        "-o",
        `${dir}/b`,
        "-w",
        "%{http_code}",
        ...args,
        url,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10000),
    }).output();
    const headers = await Deno.readTextFile(`${dir}/h`).catch(() => "");
    const body = await Deno.readFile(`${dir}/b`).catch(() => new Uint8Array(0));
    return { status: Number(new TextDecoder().decode(output.stdout)), headers, body };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A web root with an index, a listing directory, odd names, a large file and an escaping symlink. */
async function makeWebRoot(): Promise<{ root: string; outside: string; big: Uint8Array }> {
  const root = await Deno.makeTempDir({ prefix: "websockify-web-" });
  const outside = await Deno.makeTempDir({ prefix: "websockify-outside-" });
  await Deno.writeTextFile(`${outside}/secret.txt`, "outside the root");
  await Deno.writeTextFile(`${root}/index.html`, "<h1>noVNC</h1>");
  await Deno.mkdir(`${root}/app`);
  await Deno.writeTextFile(`${root}/app/ui.js`, "export const ui = 1;");
  await Deno.writeFile(`${root}/app/core.wasm`, new Uint8Array([0, 97, 115, 109]));
  await Deno.writeTextFile(`${root}/app/logo.svg`, "<svg/>");
  await Deno.writeTextFile(`${root}/app/<b>&"odd".txt`, "odd");
  await Deno.mkdir(`${root}/app/sub`);
  await Deno.mkdir(`${root}/htm`);
  await Deno.writeTextFile(`${root}/htm/index.htm`, "old index");
  const big = pseudoRandomBytes(3 << 20, 17);
  await Deno.writeFile(`${root}/big.bin`, big);
  await Deno.symlink(outside, `${root}/escape`);
  await Deno.symlink(`${outside}/secret.txt`, `${root}/secret-link.txt`);
  await Deno.symlink(`${root}/app/ui.js`, `${root}/inside-link.js`);
  return { root, outside, big };
}

async function withWeb(
  args: string[],
  body: (base: string, root: string, big: Uint8Array) => Promise<void>,
) {
  const { root, outside, big } = await makeWebRoot();
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--web=${root}`, ...args]);
  try {
    await body(`http://127.0.0.1:${proxy.port}`, root, big);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("index.html for /, query ignored, MIME types from the mime package, Content-Length", () =>
  withWeb([], async (base) => {
    const index = await curl(`${base}/?token=abc&x=1`);
    assert.equal(index.status, 200);
    assert.equal(text(index.body), "<h1>noVNC</h1>");
    assert.match(index.headers, /Content-Type: text\/html/i);
    assert.match(index.headers, /Content-Length: 14\r\n/);
    assert.match(index.headers, /Last-Modified: \w{3}, \d\d \w{3} \d{4}/);
    assert.match((await curl(`${base}/app/ui.js`)).headers, /Content-Type: text\/javascript/);
    assert.match((await curl(`${base}/app/core.wasm`)).headers, /Content-Type: application\/wasm/);
    assert.match((await curl(`${base}/app/logo.svg`)).headers, /Content-Type: image\/svg\+xml/);
    assert.equal(text((await curl(`${base}/htm/`)).body), "old index");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
    await writeAll(
      conn,
      new TextEncoder().encode("HEAD /app/ui.js HTTP/1.1\r\nConnection: close\r\n\r\n"),
    );
    const head = text(await readToEnd(conn));
    conn.close();
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*Content-Length: 20\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), "no body after the headers");
    assert.equal(text((await curl(`${base}/inside-link.js`)).body), "export const ui = 1;");
  }));

Deno.test("a 3 MiB file arrives byte for byte; ranges give 206, suffix ranges work, bad ones 416", () =>
  withWeb([], async (base, _root, big) => {
    const whole = await curl(`${base}/big.bin`);
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, big);
    const part = await curl(`${base}/big.bin`, "-H", "Range: bytes=1000-1999");
    assert.equal(part.status, 206);
    assert.match(part.headers, new RegExp(`Content-Range: bytes 1000-1999/${big.length}`));
    assert.deepEqual(part.body, big.subarray(1000, 2000));
    const tail = await curl(`${base}/big.bin`, "-H", "Range: bytes=-10");
    assert.deepEqual(tail.body, big.subarray(big.length - 10));
    const open = await curl(`${base}/big.bin`, "-H", `Range: bytes=${big.length - 5}-`);
    assert.deepEqual(open.body, big.subarray(big.length - 5));
    const beyond = await curl(`${base}/big.bin`, "-H", `Range: bytes=${big.length}-`);
    assert.equal(beyond.status, 416);
    assert.match(beyond.headers, new RegExp(`Content-Range: bytes \\*/${big.length}`));
  }));

Deno.test("Last-Modified and If-Modified-Since give 304", () =>
  withWeb([], async (base) => {
    const first = await curl(`${base}/app/ui.js`);
    const modified = first.headers.match(/Last-Modified: (.*)\r\n/)![1];
    const again = await curl(`${base}/app/ui.js`, "-H", `If-Modified-Since: ${modified}`);
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const older = await curl(
      `${base}/app/ui.js`,
      "-H",
      "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT",
    );
    assert.equal(older.status, 200);
  }));

Deno.test("directories: 301 adds the slash (keeping the query), listings escape names, --file-only gives 404", async () => {
  await withWeb([], async (base) => {
    const redirect = await curl(`${base}/app?x=1`);
    assert.equal(redirect.status, 301);
    assert.match(redirect.headers, /Location: \/app\/\?x=1\r\n/);
    const listing = await curl(`${base}/app/`);
    assert.equal(listing.status, 200);
    const html = text(listing.body);
    assert.match(html, /<title>Directory listing for \/app\/<\/title>/);
    assert.match(
      html,
      /<a href="%3Cb%3E%26%22odd%22\.txt">&#60;b&#62;&#38;&#34;odd&#34;\.txt<\/a>/,
    );
    assert.match(html, /<a href="sub\/">sub\/<\/a>/);
    assert.doesNotMatch(html, /<b>&"odd"/, "names are never raw HTML");
  });
  await withWeb(["--file-only"], async (base) => {
    assert.equal((await curl(`${base}/app/`)).status, 404);
    assert.equal((await curl(`${base}/`)).status, 200, "index files are still served");
  });
});

Deno.test("nothing outside the root: .., encoded .., NUL, backslashes, symlinks leaving the root", () =>
  withWeb([], async (base) => {
    for (
      const path of [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/app/%2E%2E/%2e%2E/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc/passwd",
        "/big.bin%00.txt",
        "/..\\..\\etc\\passwd",
        "/escape/secret.txt",
        "/secret-link.txt",
        "/%ZZ",
      ]
    ) {
      const result = await curl(base + path);
      assert.ok(result.status === 404 || result.status === 400, `${path}: ${result.status}`);
      assert.doesNotMatch(text(result.body), /root:|outside the root/, path);
    }
    // `..` never climbs above the root: it stays inside and finds the index.
    assert.equal(text((await curl(`${base}/app/../index.html`)).body), "<h1>noVNC</h1>");
  }));

Deno.test("keep-alive: several requests on one connection, then an upgrade on the same port", () =>
  withWeb([], async (base) => {
    const port = Number(new URL(base).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    // Two requests pipelined in one write, a third after the answers.
    await writeAll(conn, new TextEncoder().encode(request("/app/ui.js") + request("/index.html")));
    const client = RawClient.wrap(conn);
    const first = await client.readHead();
    assert.match(first, /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*Connection: keep-alive\r\n/);
    const second = await client.readHead(); // after the first body (20 bytes) which readHead skips into
    assert.match(second, /HTTP\/1\.1 200 OK/);
    conn.close();
    const curlTwice = await new Deno.Command("curl", {
      args: ["-sv", `${base}/app/ui.js`, `${base}/index.html`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.match(
      new TextDecoder().decode(curlTwice.stderr),
      /Re-using existing connection|Reusing existing/i,
    );
    const ws = await RawClient.open(port);
    ws.close();
  }));

Deno.test("other methods with --web: POST 405, TRACE 501; HTTP/1.0 closes after the answer", () =>
  withWeb([], async (base) => {
    assert.equal((await curl(`${base}/`, "-X", "POST", "-d", "x=1")).status, 405);
    assert.equal((await curl(`${base}/`, "-X", "TRACE")).status, 501);
    const port = Number(new URL(base).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, new TextEncoder().encode("GET /app/ui.js HTTP/1.0\r\n\r\n"));
    const all = text(await readToEnd(conn));
    assert.match(all, /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*Connection: close\r\n/);
    assert.ok(all.endsWith("export const ui = 1;"));
    conn.close();
  }));

Deno.test("the Flash policy request gets the cross-domain policy, then the connection closes", async () => {
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`]);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    await writeAll(conn, new TextEncoder().encode("<policy-file-"));
    await writeAll(conn, new TextEncoder().encode("request/>\0"));
    assert.equal(
      text(await readToEnd(conn)),
      '<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>\0',
    );
    conn.close();
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("keep-alive only without a request body", () => {
  const request = (version: string, headers: Record<string, string>) => ({
    method: "GET",
    target: "/",
    version,
    headers: new Map(Object.entries(headers)),
  });
  assert.equal(wantsKeepAlive(request("HTTP/1.1", {})), true);
  assert.equal(wantsKeepAlive(request("HTTP/1.1", { connection: "close" })), false);
  assert.equal(wantsKeepAlive(request("HTTP/1.0", {})), false);
  assert.equal(wantsKeepAlive(request("HTTP/1.0", { connection: "keep-alive" })), true);
  assert.equal(wantsKeepAlive(request("HTTP/1.1", { "content-length": "5" })), false);
  assert.equal(wantsKeepAlive(request("HTTP/1.1", { "content-length": "0" })), true);
  assert.equal(wantsKeepAlive(request("HTTP/1.1", { "transfer-encoding": "chunked" })), false);
});

Deno.test("URL path rules and range parsing (pure)", async () => {
  assert.deepEqual(urlPathSegments("/a/./b//c?x=../.."), ["a", "b", "c"]);
  assert.deepEqual(urlPathSegments("/a/../../b"), ["b"]);
  assert.deepEqual(urlPathSegments("/%61%2Fb"), ["a", "b"]);
  assert.equal(urlPathSegments("/a%00"), undefined);
  assert.equal(urlPathSegments("/%E0%A4%A"), undefined);
  assert.deepEqual(urlPathSegments("http://host:1/x/y"), ["x", "y"]);
  assert.deepEqual(parseRange("bytes=0-9", 100), [0, 9]);
  assert.deepEqual(parseRange("bytes=90-200", 100), [90, 99]);
  assert.deepEqual(parseRange("bytes=-5", 100), [95, 99]);
  assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=0-1,5-6", 100), undefined);
  assert.equal(parseRange("items=0-1", 100), undefined);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/B.txt`, "");
  await Deno.writeTextFile(`${dir}/a.txt`, "");
  const html = text(await directoryListing(dir, "/x/"));
  assert.ok(html.indexOf("a.txt") < html.indexOf("B.txt"), "sorted case-insensitively");
  await Deno.remove(dir, { recursive: true });
});
