// --allowed-origin (lib/origins.ts): origins compared serialized; no Origin passes.
import assert from "node:assert/strict";
import { originAllowed, parseOrigin, serializeOrigin } from "../../lib/origins.ts";

Deno.test("origins are serialized as browsers send them", () => {
  assert.equal(parseOrigin("https://NoVNC.Example"), "https://novnc.example");
  assert.equal(parseOrigin("https://novnc.example:443/"), "https://novnc.example");
  assert.equal(parseOrigin("http://novnc.example:80"), "http://novnc.example");
  assert.equal(parseOrigin("http://[::1]:8080"), "http://[::1]:8080");
  assert.equal(parseOrigin("http://bücher.example"), "http://xn--bcher-kva.example");
  assert.equal(parseOrigin("null"), "null");
  assert.equal(parseOrigin("chrome-extension://ABCdef"), "chrome-extension://abcdef");
  for (const bad of ["novnc.example", "https://a/b", "https://a?x", "https://u:p@a", "*", ""]) {
    assert.throws(() => parseOrigin(bad), /is not an origin/, bad);
  }
  assert.equal(serializeOrigin("https://a.example/"), "https://a.example");
});

Deno.test("originAllowed: a listed origin (any spelling), or no Origin at all; an empty list allows any", () => {
  const allowed = ["https://novnc.example", "null"];
  assert.ok(originAllowed(allowed, "https://novnc.example"));
  assert.ok(originAllowed(allowed, "https://NOVNC.example:443"));
  assert.ok(originAllowed(allowed, "null"));
  assert.ok(originAllowed(allowed, undefined), "no Origin: not a browser");
  assert.ok(!originAllowed(allowed, "https://evil.example"));
  assert.ok(!originAllowed(allowed, "http://novnc.example"), "the scheme counts");
  assert.ok(!originAllowed(allowed, "https://novnc.example:8443"), "the port counts");
  assert.ok(!originAllowed(allowed, "https://novnc.example.evil"));
  assert.ok(!originAllowed(allowed, "garbage"));
  assert.ok(!originAllowed(allowed, ""));
  assert.ok(originAllowed([], "https://anything.example"));
});
