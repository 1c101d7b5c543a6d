// The built-in pages' routing and caching rules (lib/builtin.ts), without a proxy.
import assert from "node:assert/strict";
import { BUILTIN_FILES, builtinName, etagMatches, loadBuiltin } from "../../lib/builtin.ts";

Deno.test("builtinName: only paths under /websockify/ are the built-ins'; .. is resolved first", () => {
  assert.equal(builtinName("/websockify/"), "");
  assert.equal(builtinName("/websockify/wstelnet.html"), "wstelnet.html");
  assert.equal(builtinName("/websockify/wstelnet.html?host=x&port=23"), "wstelnet.html");
  assert.equal(builtinName("/websockify/xterm/xterm.css"), "xterm/xterm.css");
  assert.equal(builtinName("/websockify//./xterm//xterm.css"), "xterm/xterm.css");
  assert.equal(builtinName("/websockify/%77stelnet.html"), "wstelnet.html");
  assert.equal(builtinName("http://host:6080/websockify/websock.js"), "websock.js");
  assert.equal(builtinName("/websockify/nothing"), "nothing"); // under the prefix: the built-ins answer 404
  // Not under the prefix: --web or the usual HTTP error, as before.
  assert.equal(builtinName("/websockify"), undefined); // noVNC's WebSocket path, without the slash
  assert.equal(builtinName("/websockify?token=x"), undefined);
  assert.equal(builtinName("/websockify/../index.html"), undefined);
  assert.equal(builtinName("/"), undefined);
  assert.equal(builtinName("/vnc.html"), undefined);
  assert.equal(builtinName("/WEBSOCKIFY/websock.js"), undefined);
  assert.equal(builtinName("/websockify/%zz"), undefined); // a bad target is answered 400 by the usual path
  assert.equal(builtinName("*"), undefined);
});

Deno.test("etagMatches: If-None-Match lists, weak tags and * match; others do not", () => {
  assert.equal(etagMatches(undefined, '"a"'), false);
  assert.equal(etagMatches('"a"', '"a"'), true);
  assert.equal(etagMatches('"b", W/"a"', '"a"'), true);
  assert.equal(etagMatches(" * ", '"a"'), true);
  assert.equal(etagMatches('"ab"', '"a"'), false);
  assert.equal(etagMatches("", '"a"'), false);
});

Deno.test("every built-in file loads, with a content type and an ETag that follows its content", async () => {
  const tags = new Set<string>();
  for (const [name, file] of BUILTIN_FILES) {
    const loaded = await loadBuiltin(name)!;
    assert.ok(loaded.body.length > 100, name);
    assert.match(
      file.type,
      /^(text\/(html|javascript|css)|application\/typescript); charset=utf-8$/,
    );
    assert.match(loaded.etag, /^"[0-9a-f]{24}"$/);
    tags.add(loaded.etag);
    assert.doesNotMatch(new TextDecoder().decode(loaded.body), /sourceMappingURL/, name);
  }
  assert.equal(tags.size, BUILTIN_FILES.size, "one ETag per content");
  assert.equal(loadBuiltin("no-such-file"), undefined);
});
