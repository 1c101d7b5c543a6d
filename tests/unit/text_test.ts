// Client text made safe (lib/text.ts): control characters escaped for logs and headers, HTML escaping.
import assert from "node:assert/strict";
import { escapeControls, escapeHtml } from "../../lib/text.ts";
import { RAW_CONTROL } from "../helpers/bytes.ts";

Deno.test("escapeControls: C0, DEL, C1, line separators and bidi controls escaped; everything else kept", () => {
  for (let code = 0; code < 0x10000; code++) {
    const c = String.fromCharCode(code);
    const escaped = escapeControls(`a${c}b`);
    const control = code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 ||
      code === 0x2029 || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
    if (!control) {
      assert.equal(escaped, `a${c}b`, `U+${code.toString(16)}`);
      continue;
    }
    assert.doesNotMatch(escaped.slice(1, -1), RAW_CONTROL);
    assert.match(escaped, /^a\\(n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})b$/, `U+${code.toString(16)}`);
  }
  assert.equal(
    escapeControls("x\ny\r\tz\x00\x1b[0m\x7f\x85\u2028"),
    "x\\ny\\r\\tz\\x00\\x1b[0m\\x7f\\x85\\u2028",
  );
  assert.equal(escapeControls("C:\\path é ü €"), "C:\\path é ü €");
});

Deno.test("escapeHtml: & < > \" ' as numeric references, everything else kept", () => {
  assert.equal(
    escapeHtml(`<a href="x" title='y'>&amp;</a>`),
    "&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;amp;&#60;/a&#62;",
  );
  assert.equal(escapeHtml("plain é € \u0000 \\"), "plain é € \u0000 \\");
  assert.equal(escapeHtml(""), "");
});
