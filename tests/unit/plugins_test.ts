// Token and auth plugins' decisions (lib/plugins.ts): token files, auth verdicts.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import {
  createAuthPlugin,
  jsonTarget,
  type ParsedTokens,
  parseJwtKey,
  parseTokenFile,
  parseTokenTarget,
} from "../../lib/plugins.ts";

const request = (target: string, headers: Record<string, string> = {}) => ({
  method: "GET",
  target,
  version: "HTTP/1.1",
  headers: new Map(Object.entries(headers)),
});

Deno.test("token files: targets, comments, blank lines, IPv6, unix sockets, syntax errors", () => {
  const parsed: ParsedTokens = { targets: new Map(), syntaxErrors: [] };
  parseTokenFile(
    [
      "# comment",
      "",
      "alpha: 127.0.0.1:5901",
      "  beta: host.example:5902  ",
      "v6: [::1]:5903",
      "v6b: ::1:5904",
      "sock: unix_socket:/run/vnc.sock",
      "broken:127.0.0.1:5905",
      "noport: host",
      "alpha: 127.0.0.1:5999",
    ].join("\n"),
    parsed,
  );
  assert.deepEqual(parsed.targets.get("alpha"), { kind: "tcp", hostname: "127.0.0.1", port: 5999 });
  assert.deepEqual(parsed.targets.get("beta"), {
    kind: "tcp",
    hostname: "host.example",
    port: 5902,
  });
  assert.deepEqual(parsed.targets.get("v6"), { kind: "tcp", hostname: "::1", port: 5903 });
  assert.deepEqual(parsed.targets.get("v6b"), { kind: "tcp", hostname: "::1", port: 5904 });
  assert.deepEqual(parsed.targets.get("sock"), { kind: "unix", path: "/run/vnc.sock" });
  assert.deepEqual(parsed.syntaxErrors, [8, 9], "blank lines and comments are not errors");
  assert.equal(parseTokenTarget("host:0"), undefined);
});

Deno.test("BasicHTTPAuth and ExpectOrigin decisions (websockify's test vectors)", () => {
  const basic = createAuthPlugin("BasicHTTPAuth", "Aladdin:open sesame");
  const context = (headers: Record<string, string>) => ({
    request: request("/", headers),
    target: { kind: "tcp" as const, hostname: "h", port: 1 },
    clientCertCN: undefined,
  });
  assert.equal(
    basic.authenticate(context({ authorization: "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==" })),
    undefined,
  );
  assert.equal(basic.authenticate(context({}))?.status, 401);
  assert.deepEqual(basic.authenticate(context({}))?.headers, [[
    "WWW-Authenticate",
    'Basic realm="Websockify"',
  ]]);
  assert.equal(
    basic.authenticate(context({ authorization: "Basic " + btoa("Aladdin:wrong") }))?.status,
    401,
  );
  assert.equal(basic.authenticate(context({ authorization: "Bearer xyz" }))?.status, 403);
  assert.equal(basic.authenticate(context({ authorization: "Basic !!!garbage" }))?.status, 401);
  // The scheme is case-insensitive (RFC 7617); another scheme, or "Basic" glued to more letters, is not Basic.
  const good = btoa("Aladdin:open sesame");
  for (const scheme of ["basic", "BASIC", "bAsIc", "Basic\t", "basic  "]) {
    assert.equal(
      basic.authenticate(context({ authorization: `${scheme} ${good}` })),
      undefined,
      scheme,
    );
  }
  assert.equal(basic.authenticate(context({ authorization: `Basicx ${good}` }))?.status, 403);
  assert.equal(basic.authenticate(context({ authorization: "basic" }))?.status, 401);
  // UTF-8 credentials (RFC 7617 §2.1) match a non-ASCII source; their Latin-1 spelling does not.
  const utf8 = createAuthPlugin("BasicHTTPAuth", "jürgen:pässwörd€");
  const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
  const utf8Header = `Basic ${base64(new TextEncoder().encode("jürgen:pässwörd€"))}`;
  assert.equal(utf8.authenticate(context({ authorization: utf8Header })), undefined);
  const latin1Header = `Basic ${
    base64(Uint8Array.from("jürgen:pässwörd", (c) => c.charCodeAt(0)))
  }`;
  assert.equal(utf8.authenticate(context({ authorization: latin1Header }))?.status, 401);
  assert.equal(
    utf8.authenticate(context({
      authorization: `Basic ${base64(new TextEncoder().encode("jürgen:pässwörd"))}`,
    }))?.status,
    401,
    "a prefix of the password",
  );
  const origin = createAuthPlugin("ExpectOrigin", "https://a.example https://b.example");
  assert.equal(origin.authenticate(context({ origin: "https://b.example" })), undefined);
  assert.equal(
    origin.authenticate(context({ origin: "https://evil.example" }))?.message,
    "Invalid Origin",
  );
  assert.equal(origin.authenticate(context({}))?.status, 403);
});

Deno.test("a JSON token service answer: host and port (a number or digits), anything else is no target", () => {
  assert.deepEqual(jsonTarget('{"host": "10.0.0.1", "port": 5900}'), {
    kind: "tcp",
    hostname: "10.0.0.1",
    port: 5900,
  });
  assert.deepEqual(jsonTarget('{"host": "[fd00::1]", "port": "5901"}'), {
    kind: "tcp",
    hostname: "fd00::1",
    port: 5901,
  });
  for (
    const text of [
      "not json",
      "null",
      "[1]",
      '{"host": "", "port": 1}',
      '{"host": "h"}',
      '{"host": "h", "port": 0}',
      '{"host": "h", "port": 65536}',
      '{"host": "h", "port": "59x"}',
      '{"host": 5, "port": 1}',
    ]
  ) {
    assert.equal(jsonTarget(text), undefined, text);
  }
});

Deno.test("a JWTTokenApi key file: a PEM public or private key (its public half), or a base64url secret as Python reads it", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const fromPrivate = parseJwtKey(
    privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    "k",
  );
  assert.deepEqual(fromPrivate, { kind: "pem", spki: publicPem }, "only the public half is kept");
  assert.deepEqual(parseJwtKey(publicPem, "k"), { kind: "pem", spki: publicPem });
  assert.deepEqual(parseJwtKey("AQID_-8\n", "k"), {
    kind: "secret",
    bytes: new Uint8Array([1, 2, 3, 0xff, 0xef]),
  });
  assert.throws(
    () => parseJwtKey("not a key at all!", "k.txt"),
    /k\.txt: neither a PEM key nor a base64url secret/,
  );
  assert.throws(
    () => parseJwtKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "k.pem"),
    /k\.pem: not a usable PEM key/,
  );
});
