// HTTP request heads (reading with a size cap, parsing) and error pages (lib/http.ts), without sockets.
import assert from "node:assert/strict";
import {
  BadRequestError,
  errorResponse,
  findHeadEnd,
  parseRequestHead,
  readRequestHead,
} from "../../lib/http.ts";
import type { ByteStream } from "../../lib/io.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("request heads: parsing, repeated headers, bad syntax", () => {
  const parsed = parseRequestHead(
    text(
      "GET /websockify?token=a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nUpgrade:  websocket \r\n\r\n",
    ),
  );
  assert.equal(parsed.method, "GET");
  assert.equal(parsed.target, "/websockify?token=a");
  assert.equal(parsed.headers.get("x-a"), "1, 2");
  assert.equal(parsed.headers.get("upgrade"), "websocket");
  assert.equal(parseRequestHead(text("GET / HTTP/1.0\n\n")).version, "HTTP/1.0");
  for (
    const bad of [
      "<policy-file-request/>\0\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
      "\x16\x03\x01\r\n\r\n",
    ]
  ) {
    assert.throws(() => parseRequestHead(text(bad)), BadRequestError, JSON.stringify(bad));
  }
});

Deno.test("a bad request line names its token by the hash (the message is logged)", () => {
  // A client that does not encode the space in its token sends four words: a 400 whose reason quoted the line.
  assert.throws(
    () => parseRequestHead(text("GET /websockify?token=desk secret-42 HTTP/1.1\r\n\r\n")),
    (error: Error) => {
      assert.match(error.message, /^Bad request syntax \("GET \/websockify\?token=#[0-9a-f]{8}/);
      assert.doesNotMatch(error.message, /desk|secret-42/);
      return true;
    },
  );
});

Deno.test("findHeadEnd handles CRLF and bare LF, and resumes from an offset", () => {
  assert.equal(findHeadEnd(text("GET / HTTP/1.1\r\n\r\nrest")), 18);
  assert.equal(findHeadEnd(text("GET / HTTP/1.1\n\nrest")), 16);
  assert.equal(findHeadEnd(text("GET / HTTP/1.1\r\nHost: a\r\n")), -1);
  assert.equal(findHeadEnd(text("ab\r\n\r\n"), 3), 6);
});

/** A stream that hands out a fixed byte sequence in chunks of `size`. */
function trickle(data: Uint8Array, size: number): ByteStream {
  let offset = 0;
  return {
    read(buffer) {
      if (offset >= data.length) return Promise.resolve(null);
      const n = Math.min(size, buffer.length, data.length - offset);
      buffer.set(data.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
    write: (d) => Promise.resolve(d.length),
    closeWrite: () => Promise.resolve(),
    close() {},
  };
}

Deno.test("readRequestHead: one byte at a time, extra bytes kept, cap enforced, EOF", async () => {
  const head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const input = new Uint8Array([...text(head), 0x82, 0x00]);
  const slow = await readRequestHead(trickle(input, 1));
  assert.ok(slow.kind === "head");
  assert.equal(new TextDecoder().decode(slow.head), head);
  assert.deepEqual(Array.from(slow.rest), [], "reading stops at the blank line");
  const together = await readRequestHead(trickle(input, 100));
  assert.ok(together.kind === "head");
  assert.equal(new TextDecoder().decode(together.head), head);
  assert.deepEqual(Array.from(together.rest), [0x82, 0x00], "bytes after the head are kept");
  const big = "GET / HTTP/1.1\r\nX: " + "a".repeat(40000) + "\r\n\r\n";
  assert.equal((await readRequestHead(trickle(text(big), 1000))).kind, "too-large");
  assert.equal((await readRequestHead(trickle(text("GET / HT"), 3))).kind, "closed");
});

Deno.test("error pages: reason phrase, HTML body, Connection: close, escaped message", () => {
  const page = new TextDecoder().decode(errorResponse(400, "Bad <thing>"));
  assert.match(page, /^HTTP\/1\.1 400 Bad <thing>\r\n/);
  assert.match(page, /\r\nConnection: close\r\n/);
  assert.match(page, /Content-Type: text\/html;charset=utf-8/);
  assert.match(page, /<p>Error code: 400<\/p>/);
  assert.match(page, /Bad &#60;thing&#62;/);
  const length = Number(page.match(/Content-Length: (\d+)/)![1]);
  assert.equal(new TextEncoder().encode(page.slice(page.indexOf("\r\n\r\n") + 4)).length, length);
  const noBody = new TextDecoder().decode(errorResponse(405, "Method Not Allowed", [], false));
  assert.ok(noBody.endsWith("\r\n\r\n"));
});

Deno.test("a bad request line hides a path token too (--token-from path or not: it is quoted in the log)", () => {
  assert.throws(
    () => parseRequestHead(text("GET /websockify/desk-secret-42 extra HTTP/1.1\r\n\r\n")),
    (error: Error) => {
      assert.match(error.message, /^Bad request syntax \("GET \/websockify\/#[0-9a-f]{8} extra/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    },
  );
  // A malformed header line is quoted by its name only: its value may be a cookie or a token.
  assert.throws(
    () => parseRequestHead(text("GET / HTTP/1.1\r\nCookie : vnc_token=secret-42\r\n\r\n")),
    (error: Error) => {
      assert.equal(error.message, 'Bad header line (name "Cookie ")');
      return true;
    },
  );
});
