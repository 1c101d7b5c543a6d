// The static web server's pure parts (lib/web.ts): URL paths, ranges, HTTP dates, redirects, keep-alive, listings.
import assert from "node:assert/strict";
import {
  directoryListing,
  directoryLocation,
  parseHttpDate,
  parseRange,
  parseWebTarget,
  urlPathSegments,
  wantsKeepAlive,
} from "../../lib/web.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

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
  assert.deepEqual(parseWebTarget("//a/%2f..?q=%ZZ"), {
    kind: "path",
    segments: [],
    trailingSlash: false,
    query: "q=%ZZ",
  });
  assert.equal(parseWebTarget("/a#b").kind, "bad");
  assert.equal(parseWebTarget("/%").kind, "bad");
  assert.equal(parseWebTarget("*").kind, "bad");
  assert.equal(parseWebTarget("/a b").kind, "bad");
  assert.equal(directoryLocation([], undefined), "/");
  assert.equal(directoryLocation(["evil.com"], "x=1"), "/evil.com/?x=1");
  assert.equal(directoryLocation(["a/b", "\\c", "d e"], undefined), "/a%2Fb/%5Cc/d%20e/");
  const now = Date.UTC(2026, 5, 1);
  const nov6 = Date.UTC(1994, 10, 6, 8, 49, 37);
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT", now), nov6);
  assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", now), nov6);
  assert.equal(parseHttpDate("Sun Nov  6 08:49:37 1994", now), nov6);
  assert.equal(parseHttpDate("Monday, 01-Jan-29 00:00:00 GMT", now), Date.UTC(2029, 0, 1));
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 UTC", now), undefined);
  assert.equal(parseHttpDate("Sun, 6 Nov 1994 08:49:37 GMT", now), undefined);
  assert.equal(parseHttpDate("Sun, 29 Feb 2023 00:00:00 GMT", now), undefined);
  assert.equal(parseHttpDate("1994-11-06T08:49:37Z", now), undefined);
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
