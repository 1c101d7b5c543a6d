// The static web server (--web) and the HTTP answers on the proxy's port, driven with curl and a raw client.
import assert from "node:assert/strict";
import { writeAll } from "../../lib/io.ts";
import type { ServerTimeouts } from "../../lib/server.ts";
import { pseudoRandomBytes, readToEnd } from "../helpers/bytes.ts";
import { startProxy } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

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
  await Deno.mkdir(`${root}/sub`);
  await Deno.mkdir(`${root}/evil.com`);
  await Deno.mkdir(`${root}/odd dir`);
  await Deno.mkdir(`${root}/htm`);
  await Deno.writeTextFile(`${root}/htm/index.htm`, "old index");
  const big = pseudoRandomBytes(3 << 20, 17);
  await Deno.writeFile(`${root}/big.bin`, big);
  await Deno.symlink(outside, `${root}/escape`);
  await Deno.symlink(`${outside}/secret.txt`, `${root}/secret-link.txt`);
  await Deno.symlink(`${root}/app/ui.js`, `${root}/inside-link.js`);
  await Deno.mkdir(`${root}/linked-index`);
  await Deno.symlink(`${outside}/secret.txt`, `${root}/linked-index/index.html`);
  return { root, outside, big };
}

async function withWeb(
  args: string[],
  body: (base: string, root: string, big: Uint8Array, log: () => string[]) => Promise<void>,
  timeouts: Partial<ServerTimeouts> = {},
) {
  const { root, outside, big } = await makeWebRoot();
  const target = echoTarget();
  const proxy = await startProxy([`127.0.0.1:${target.port}`, `--web=${root}`, ...args], timeouts);
  try {
    await body(`http://127.0.0.1:${proxy.port}`, root, big, () => proxy.log.lines);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const latin1 = new TextDecoder("latin1");

/**
 * One raw request on a fresh connection (the target's bytes as given, latin1): everything the server answers
 * until it closes, as latin1 text. Bounded: the server must close within 5 s.
 */
async function rawRequest(base: string, target: string, headers = "Connection: close\r\n") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
  try {
    const head = `GET ${target} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`;
    await writeAll(conn, Uint8Array.from(head, (c) => c.charCodeAt(0) & 0xff));
    return latin1.decode(await deadline(readToEnd(conn), 5000, `the answer to ${target}`));
  } finally {
    conn.close();
  }
}

const statusOf = (response: string) => Number(response.match(/^HTTP\/1\.1 (\d{3}) /)?.[1]);

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

Deno.test("If-Modified-Since: 304 only for a valid HTTP-date, not in the future, not before the mtime", () =>
  withWeb([], async (base, root) => {
    // Modified at 2020-01-01 00:00:00.700 UTC: Last-Modified says 00:00:00, and 00:00:00 is not older.
    const mtime = new Date(Date.UTC(2020, 0, 1, 0, 0, 0, 700));
    await Deno.utime(`${root}/app/ui.js`, mtime, mtime);
    const status = async (since: string) =>
      (await curl(`${base}/app/ui.js`, "-H", `If-Modified-Since: ${since}`)).status;
    const tomorrow = new Date(Date.now() + 86400_000).toUTCString();
    for (
      const [since, expected] of [
        ["Wed, 01 Jan 2020 00:00:00 GMT", 304],
        ["Tue, 31 Dec 2019 23:59:59 GMT", 200],
        ["Wednesday, 01-Jan-20 00:00:00 GMT", 304], // RFC 850
        ["Wed Jan  1 00:00:00 2020", 304], // asctime
        ["Sat, 01 Jan 2022 12:00:00 GMT", 304],
        [tomorrow, 200], // in the future: invalid (RFC 9110 13.1.3); 304 before
        ["Fri, 01 Jan 2100 00:00:00 GMT", 200],
        ["2099", 200], // JavaScript's Date.parse took this for 2099: 304 before
        ["2022-01-01T00:00:00Z", 200], // not an HTTP-date: 304 before
        ["Sat, 01 Jan 2022", 200],
        ["Mon, 31 Feb 2022 00:00:00 GMT", 200],
        ["Sat, 01 Jan 2022 24:00:00 GMT", 200],
        ["garbage", 200],
      ] as const
    ) {
      assert.equal(await status(since), expected, since);
    }
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

Deno.test("the directory redirect never leaves the server: Location from the normalised path, query kept", () =>
  withWeb([], async (base) => {
    for (
      const [target, location] of [
        ["//evil.com/%2f..", "/"], // was `Location: //evil.com/%2f../`, an open redirect
        ["//evil.com/%2f..?a=b", "/?a=b"],
        ["//evil.com", "/evil.com/"],
        ["//evil.com?x=1", "/evil.com/?x=1"],
        ["///evil.com", "/evil.com/"],
        ["/%2f%2fevil.com", "/evil.com/"],
        ["/%2F/evil.com", "/evil.com/"],
        ["/app/..//evil.com/.", "/evil.com/"],
        ["/.//evil.com", "/evil.com/"],
        ["http://evil.com//evil.com", "/evil.com/"],
        ["/app?x=1&next=//evil.com/%2f..", "/app/?x=1&next=//evil.com/%2f.."],
        ["/app?", "/app/"],
        ["/app/sub?%2F%2Fa=%5C", "/app/sub/?%2F%2Fa=%5C"],
        ["/odd%20dir", "/odd%20dir/"],
      ]
    ) {
      const response = await rawRequest(base, target);
      assert.equal(statusOf(response), 301, target);
      assert.equal(response.match(/\r\nLocation: (.*)\r\n/)?.[1], location, target);
    }
    for (const target of ["/\\evil.com", "/%5Cevil.com", "/%5c%5cevil.com/", "\\\\evil.com"]) {
      const status = statusOf(await rawRequest(base, target));
      assert.ok(status === 404 || status === 400, `${target}: ${status}`);
    }
    // curl agrees (it sends the path as is).
    const viaCurl = await curl(`${base}//evil.com/%2f..`);
    assert.equal(viaCurl.status, 301);
    assert.match(viaCurl.headers, /\r\nLocation: \/\r\n/);
    const listing = await curl(`${base}/odd%20dir/`);
    assert.match(text(listing.body), /<title>Directory listing for \/odd dir\/<\/title>/);
  }));

Deno.test("nasty request targets each get an HTTP status (400 for malformed ones); the server keeps serving", () =>
  withWeb([], async (base, _root, _big, log) => {
    const cases: [string, number | undefined][] = [
      ["/sub/#%/?x", 400], // was: connection dropped, "URI malformed"
      ["/app/sub/#%/?x", 400],
      ["/index.html#top", 400],
      ["/#", 400],
      ["/%", 400],
      ["/%2", 400],
      ["/%G0", 400],
      ["/%%", 400],
      ["/%u0041", 400],
      ["/%E0%A4%A", 400],
      ["/%C0%AF", 400], // overlong UTF-8
      ["/%FF", 400],
      ["/%ED%A0%80", 400], // a UTF-16 surrogate
      ["/?%ZZ", 200], // the query is not decoded
      ["/%00", 404],
      ["/a%00b", 404],
      ["/a\0b", 400],
      ["/\x01", 400],
      ["/a\x1bb", 400],
      ["/\x7f", 400],
      ["/\xe9", 400],
      ["/\xc3\xa9", 400],
      ["/a\tb", 400],
      ["*", 400],
      ["evil.com/", 400],
      ["?x", 400],
      ["ftp://host/", 400],
      ["http://host/app/ui.js", 200],
      ["HTTPS://HOST:1/app/ui.js?x", 200],
      ["http://host", 200],
      ["http://host?x", 200],
      ["http:///", 200],
      ["/" + "a".repeat(30000), 404],
      ["/%" + "a".repeat(30000), 400],
      ["/" + "%2e%2e/".repeat(3000) + "etc/passwd", 404],
      ["/" + "a".repeat(40000), 431], // over the head cap
      ["//", 200],
      ["/./.././", 200],
      ["/..", 301],
    ];
    for (const [target, expected] of cases) {
      const shown = JSON.stringify(target.slice(0, 40));
      const response = await rawRequest(base, target);
      const status = statusOf(response);
      assert.equal(status, expected, `${shown}: ${response.slice(0, 80)}`);
      assert.doesNotMatch(response, /root:/, shown);
    }
    // HEAD and keep-alive: the 400 comes with Connection: close and the connection ends.
    const head = await rawRequest(base, "/%", "");
    assert.match(head, /^HTTP\/1\.1 400 [^\r]*\r\n(.*\r\n)*Connection: close\r\n/);
    assert.equal(statusOf(await rawRequest(base, "/app/ui.js")), 200, "still serving");
    assert.ok(
      !log().some((line) => /handler exception|URI malformed/.test(line)),
      log().join("\n"),
    );
  }));

Deno.test("nothing outside the root: .., encoded .., NUL, backslashes, symlinks leaving the root (index files too)", () =>
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
    // A directory's index.html that links out of the root is not served as its index either.
    const linked = await curl(`${base}/linked-index/`);
    assert.doesNotMatch(text(linked.body), /outside the root/, "/linked-index/");
  }));

/** This process's open descriptors (the proxy runs in it): fd number -> what it points to. */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(entry.name, Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch { /* closed meanwhile (the readDir's own fd) */ }
  }
  return fds;
}

Deno.test("a client that stops reading a large file is cut after the write timeout: socket and file closed", async () => {
  const writeTimeout = 2000;
  await withWeb([], async (base, root, _big, log) => {
    const size = 32 << 20;
    await Deno.writeFile(`${root}/huge.bin`, new Uint8Array(size));
    const port = Number(new URL(base).port);
    const fileOpen = () => [...openFds().values()].some((link) => link.endsWith("/huge.bin"));
    const sockets = () =>
      [...openFds().values()].filter((link) => link.startsWith("socket:")).length;
    const baseline = sockets();
    const request = new TextEncoder().encode("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n");

    // A reader that pauses (well within the bound) but empties its buffer each time is never cut.
    const steady = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(steady, request);
    const chunk = new Uint8Array(16 << 20);
    let received = 0;
    const readSteadily = async () => {
      const n = await deadline(
        steady.read(chunk),
        10000,
        `a read after ${received} bytes; log: ${log().slice(-3).join(" | ")}`,
      );
      assert.ok(n !== null, `the steady reader was cut after ${received} bytes`);
      received += n;
    };
    for (let i = 0; i < 6; i++) {
      await readSteadily();
      await sleep(writeTimeout / 5);
    }
    // The rest at full speed; the head came first, a few hundred bytes more than the file.
    for (let reads = 0; received < size && reads < 10000; reads++) await readSteadily();
    assert.ok(received >= size, `the steady reader got ${received} of ${size} bytes`);
    steady.close();
    await waitFor(() => sockets() === baseline && !fileOpen(), 5000, "the steady connection's end");

    // A client that never reads: the server's writes stall once the socket buffers are full.
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    const asked = performance.now();
    await writeAll(stalled, request);
    await waitFor(() => fileOpen() && sockets() === baseline + 2, 5000, "the download under way");
    await waitFor(
      () => !fileOpen() && sockets() === baseline + 1,
      writeTimeout + 10000,
      "the server to close the stalled connection and the file",
    );
    const cut = performance.now() - asked;
    assert.ok(cut >= writeTimeout * 0.9, `cut after ${Math.round(cut)} ms, before the bound`);
    // The client finds what the kernel had buffered, then the end: not the whole file.
    const rest = await deadline(readToEnd(stalled), 10000, "EOF on the stalled connection");
    assert.match(latin1.decode(rest.subarray(0, 20)), /^HTTP\/1\.1 200 OK/);
    assert.ok(rest.length < size, `${rest.length} bytes`);
    stalled.close();
    await waitFor(() => sockets() === baseline, 5000, "the sockets back to the baseline");
  }, { webWrite: writeTimeout });
});

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
