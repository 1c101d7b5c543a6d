// Tokens in log lines: a short hash, never the token.
import assert from "node:assert/strict";
import { hideSecret, redactTokens, tokenHash } from "../../lib/secrets.ts";
import { pathToken, queryToken } from "../../lib/token_from.ts";

Deno.test("tokenHash: # and the first 8 hex digits of the SHA-256 of the token's UTF-8", () => {
  // printf %s 'vm1' | sha256sum
  assert.equal(tokenHash("vm1"), "#7b11e3d1");
  assert.equal(tokenHash(""), "#e3b0c442");
  assert.match(tokenHash("tök\n"), /^#[0-9a-f]{8}$/);
  assert.notEqual(tokenHash("a"), tokenHash("b"));
});

Deno.test("redactTokens: every token= value becomes its hash (of the decoded token); the rest stays as sent", () => {
  assert.equal(redactTokens("/websockify"), "/websockify");
  assert.equal(redactTokens("/?token=vm1"), `/?token=${tokenHash("vm1")}`);
  assert.equal(
    redactTokens("/websockify?a=1&token=vm%201&b=%zz&token=x+y"),
    `/websockify?a=1&token=${tokenHash("vm 1")}&b=%zz&token=${tokenHash("x y")}`,
  );
  assert.equal(redactTokens("/?tokens=keep&xtoken=keep"), "/?tokens=keep&xtoken=keep");
  assert.equal(redactTokens("/?token="), `/?token=${tokenHash("")}`);
});

Deno.test("redactTokens: a token is hashed however the request spells its name, with the hash of the token looked up", () => {
  const targets = [
    "/?%74oken=SECRET1", // the name percent-encoded: the plugin reads it as token=
    "/?a=1&tok%65n=SECRET1&b=2",
    "/?token=SECRET1?more", // the token holds a '?'
    "/?token=SECRET1#frag&token=SECRET2", // a fragment (raw clients send one)
    "/?token=SECRET1%0A", // trailing newline, dropped from the token
    "/?token=&token=SECRET1",
    "/?token=SECRET1+x%20y",
  ];
  for (const target of targets) {
    const redacted = redactTokens(target);
    assert.doesNotMatch(redacted, /SECRET/, target);
    const token = queryToken(target);
    assert.ok(token?.startsWith("SECRET1"), target);
    assert.ok(
      redacted.includes(tokenHash(token!)),
      `${target} -> ${redacted}: the hash of ${JSON.stringify(token)} is ${tokenHash(token!)}`,
    );
  }
});

Deno.test("redactTokens with hidePath (--token-from path): the path's token becomes the hash of the token a plugin sees", () => {
  const cases: [string, string][] = [
    ["/websockify/SECRET1", "/websockify/"],
    ["/websockify/SECRET1%20x?a=1", "/websockify/"],
    ["/vnc/desks/SECRET1#frag", "/vnc/desks/"],
    ["http://host:6080/websockify/SECRET1", "http://host:6080/websockify/"],
    ["/websockify/SECRET1?token=SECRET2", "/websockify/"],
  ];
  for (const [target, prefix] of cases) {
    const redacted = redactTokens(target, true);
    assert.doesNotMatch(redacted, /SECRET/, target);
    const token = pathToken(target)!;
    assert.ok(token.startsWith("SECRET1"), target);
    assert.ok(redacted.startsWith(prefix + tokenHash(token)), `${target} -> ${redacted}`);
  }
  // Broken percent-encoding is no token, but hidden all the same.
  assert.equal(redactTokens("/websockify/SE%zz", true), `/websockify/${tokenHash("SE%zz")}`);
  // What carries no path token stays: the endpoint alone, a trailing slash, the root.
  for (const target of ["/websockify", "/websockify/", "/", "/vnc.html?x=1"]) {
    assert.equal(redactTokens(target, true), target);
  }
  // Without hidePath the path is as sent (static files keep readable request lines).
  assert.equal(redactTokens("/app/vnc.html"), "/app/vnc.html");
});

Deno.test("hideSecret: the secret whole, cut short or in pieces becomes its name; other text stays", () => {
  const name = tokenHash("ns:desk-42-secret");
  const hide = (text: string) => hideSecret(text, "ns:desk-42-secret", name);
  assert.equal(
    hide("ERR unknown command 'GET', with args beginning with: 'ns:desk-42-secret' "),
    `ERR unknown command 'GET', with args beginning with: '${name}' `,
  );
  assert.equal(hide("args: 'ns:desk-42-se'"), `args: '${name}'`, "cut short");
  assert.equal(hide("'ns:desk- 42-secret'"), `'${name} ${name}'`, "a character replaced");
  assert.equal(hide("nothing of it, not even ns:de"), "nothing of it, not even ns:de");
  assert.equal(hideSecret("key 'ab' and 'ab'", "ab", "#h"), "key '#h' and '#h'", "a short secret");
  assert.equal(hideSecret("text", "", "#h"), "text");
  // Bounded work whatever the sizes: a 64 KiB message and a 30 KB secret.
  const started = performance.now();
  hideSecret("x".repeat(65536), "y".repeat(30000), "#h");
  assert.ok(performance.now() - started < 1000);
});
