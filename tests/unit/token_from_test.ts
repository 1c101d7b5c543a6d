// Where a token travels (lib/token_from.ts): --token-from's parser and reading each source from a request.
import assert from "node:assert/strict";
import type { HttpRequest } from "../../lib/http.ts";
import {
  cookieToken,
  findToken,
  formatTokenSource,
  parseTokenFrom,
  pathToken,
  protocolToken,
  queryToken,
  withoutTokenProtocols,
} from "../../lib/token_from.ts";
import { negotiate } from "../../lib/websocket/handshake.ts";

const request = (target: string, headers: Record<string, string> = {}): HttpRequest => ({
  method: "GET",
  target,
  version: "HTTP/1.1",
  headers: new Map(Object.entries(headers)),
});

const untrusted = { fromTrustedProxy: false };
const trusted = { fromTrustedProxy: true };

Deno.test("--token-from: sources in order, names checked, header names lower-cased, mistakes named", () => {
  assert.deepEqual(parseTokenFrom("cookie:vnc_token, path,query"), [
    { kind: "cookie", name: "vnc_token" },
    { kind: "path" },
    { kind: "query" },
  ]);
  assert.deepEqual(parseTokenFrom("header:X-VNC-Token,protocol,host"), [
    { kind: "header", name: "x-vnc-token" },
    { kind: "protocol" },
    { kind: "host" },
  ]);
  assert.equal(formatTokenSource({ kind: "cookie", name: "a" }), "cookie:a");
  const refused: [string, RegExp][] = [
    ["", /no token source/],
    ["query,bogus", /'bogus': not a token source \(query, host, path, cookie:NAME/],
    ["cookie", /'cookie': cookie:NAME needs a cookie name/],
    ["cookie:", /needs a cookie name/],
    ["header:a b", /needs a header name/],
    ["path:x", /'path:x': path takes no name/],
    ["query,query", /'query' is listed twice/],
    ["header:A,header:a", /'header:a' is listed twice/],
  ];
  for (const [text, pattern] of refused) assert.throws(() => parseTokenFrom(text), pattern, text);
});

Deno.test("query: as Python's parse_qs reads it: all after the first '?', blank values skipped", () => {
  assert.equal(queryToken("/websockify?token=abc%20d&token=2"), "abc d");
  assert.equal(queryToken("/?x=1&token=a+b"), "a b");
  assert.equal(queryToken("/websockify"), undefined);
  // A '?' inside the token is the token's ('?token=a?b' is 'a?b' in Python, not 'a').
  assert.equal(queryToken("/?token=abc?def"), "abc?def");
  // parse_qs drops blank values: an empty token= is no token, and a later one is used.
  assert.equal(queryToken("/?token=&token=b"), "b");
  assert.equal(queryToken("/?token="), undefined);
  assert.equal(queryToken("/?token"), undefined);
  // Names are decoded too, and the fragment is not part of the query.
  assert.equal(queryToken("/?%74oken=x"), "x");
  assert.equal(queryToken("/?token=x#y&token=z"), "x");
});

Deno.test("host: the Host header without its port (--host-token)", () => {
  const host = [{ kind: "host" as const }];
  assert.equal(
    findToken(request("/", { host: "vm1.example:6080" }), host, untrusted).token,
    "vm1.example",
  );
  assert.equal(findToken(request("/", { host: "[::1]:6080" }), host, untrusted).token, "::1");
  assert.equal(findToken(request("/", {}), host, untrusted).token, undefined);
});

Deno.test("path: the last segment of a path of two segments or more, percent-decoded", () => {
  assert.equal(pathToken("/websockify/desk-42"), "desk-42");
  assert.equal(pathToken("/websockify/desk%2042?x=1#y"), "desk 42");
  assert.equal(pathToken("/a/b/c%2Fd"), "c/d", "an encoded slash is the token's");
  assert.equal(pathToken("http://host:6080/websockify/t1"), "t1", "absolute form");
  assert.equal(pathToken("/websockify"), undefined, "the usual endpoint is no token");
  assert.equal(pathToken("/websockify/"), undefined);
  assert.equal(pathToken("/"), undefined);
  assert.equal(pathToken("/websockify/%zz"), undefined, "broken percent-encoding");
  assert.equal(pathToken("*"), undefined);
});

Deno.test("cookie:NAME: the first such cookie, quotes dropped, percent-decoded where valid", () => {
  assert.equal(cookieToken("a=1; vnc_token=desk-42; b=2", "vnc_token"), "desk-42");
  assert.equal(cookieToken('vnc_token="desk 42"', "vnc_token"), "desk 42");
  assert.equal(cookieToken("vnc_token=desk%2042", "vnc_token"), "desk 42");
  assert.equal(cookieToken("vnc_token=100%", "vnc_token"), "100%", "invalid encoding: as sent");
  assert.equal(cookieToken("vnc_token=; vnc_token=second", "vnc_token"), "second");
  assert.equal(
    cookieToken("xvnc_token=no; VNC_TOKEN=no", "vnc_token"),
    undefined,
    "names are exact",
  );
  assert.equal(
    cookieToken("a=1, vnc_token=joined", "vnc_token"),
    "joined",
    "repeated Cookie lines",
  );
  assert.equal(cookieToken(undefined, "vnc_token"), undefined);
});

Deno.test("header:NAME is honoured from a trusted proxy only; from anyone else it is ignored and named", () => {
  const sources = parseTokenFrom("header:X-VNC-Token,query");
  const sent = request("/?token=q", { "x-vnc-token": " desk-42 " });
  assert.deepEqual(findToken(sent, sources, trusted), {
    token: "desk-42",
    source: { kind: "header", name: "x-vnc-token" },
  });
  // From an untrusted peer the header is passed over: the next source answers, or none does.
  assert.equal(findToken(sent, sources, untrusted).token, "q");
  assert.deepEqual(
    findToken(request("/", { "x-vnc-token": "desk-42" }), sources, untrusted),
    { token: undefined, ignored: ["header:x-vnc-token"] },
  );
  assert.deepEqual(findToken(request("/"), sources, untrusted), { token: undefined, ignored: [] });
});

Deno.test("protocol: an offered token.VALUE; the handshake never selects it", () => {
  assert.equal(protocolToken("binary, token.desk-42"), "desk-42");
  assert.equal(protocolToken("token., token.x"), "x", "an empty value is skipped");
  assert.equal(protocolToken("binary"), undefined);
  assert.equal(protocolToken(undefined), undefined);
  const handshake = {
    host: "h",
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  };
  const withBinary = request("/", { ...handshake, "sec-websocket-protocol": "token.t, binary" });
  const accepted = negotiate(withoutTokenProtocols(withBinary));
  assert.ok("accept" in accepted);
  assert.equal(accepted.protocol, "binary");
  // Offered alone, the token leaves nothing to select: raw binary, no Sec-WebSocket-Protocol answer.
  const alone = withoutTokenProtocols(
    request("/", { ...handshake, "sec-websocket-protocol": "token.t" }),
  );
  assert.equal(alone.headers.has("sec-websocket-protocol"), false);
  const bare = negotiate(alone);
  assert.ok("accept" in bare);
  assert.equal(bare.protocol, undefined);
});

Deno.test("sources are tried in order; the first one that has a token wins", () => {
  const sent = request("/websockify/from-path?token=from-query", {
    cookie: "t=from-cookie",
    "sec-websocket-protocol": "binary, token.from-protocol",
  });
  const first = (text: string) => findToken(sent, parseTokenFrom(text), untrusted).token;
  assert.equal(first("query,path"), "from-query");
  assert.equal(first("path,query"), "from-path");
  assert.equal(first("cookie:t,path"), "from-cookie");
  assert.equal(first("cookie:none,protocol,query"), "from-protocol");
  // /websockify with ?token=: the path has no token, so path,query still finds the query's.
  assert.equal(
    findToken(request("/websockify?token=q"), parseTokenFrom("path,query"), untrusted).token,
    "q",
  );
});
