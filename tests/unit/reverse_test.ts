// Reverse connections, the pure parts: the ID header, the source address, and what the command line accepts.
import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../../lib/cli.ts";
import {
  formatReverseSource,
  ID_HEADER_LENGTH,
  parseIdHeader,
  parseReverseSource,
} from "../../lib/reverse.ts";

function header(text: string, fill = 0): Uint8Array {
  const bytes = new Uint8Array(ID_HEADER_LENGTH).fill(fill);
  bytes.set(new TextEncoder().encode(text));
  return bytes;
}

Deno.test("parseIdHeader: UltraVNC's ID:<name>, NUL padded to 250 bytes", () => {
  assert.deepEqual(parseIdHeader(header("ID:abc123")), { id: "abc123" });
  assert.deepEqual(parseIdHeader(header("ID:1234")), { id: "1234" });
  // Printable ASCII of any kind: the token a URL carries (percent-decoded) may be any of it.
  assert.deepEqual(parseIdHeader(header("ID:a-b_c.d~e:f/g?h=")), { id: "a-b_c.d~e:f/g?h=" });
  // The longest: 246 characters, then one NUL.
  const longest = "x".repeat(ID_HEADER_LENGTH - 4);
  assert.deepEqual(parseIdHeader(header(`ID:${longest}`)), { id: longest });
  // After the first NUL, nothing counts (a server that did not clear its buffer).
  const dirty = header("ID:desk");
  dirty.set([0, 0x41, 0x42, 0x43], 7);
  assert.deepEqual(parseIdHeader(dirty), { id: "desk" });
});

Deno.test("parseIdHeader: what is refused, and why", () => {
  const refused = (bytes: Uint8Array, pattern: RegExp) => {
    const result = parseIdHeader(bytes);
    assert.ok("refused" in result, JSON.stringify(result));
    assert.match(result.refused, pattern);
  };
  refused(header("GET / HTTP/1.1\r\n"), /not an ID header/);
  refused(header("id:abc"), /not an ID header/); // the prefix is as UltraVNC writes it
  refused(header("RFB 003.008\n"), /not an ID header/);
  refused(header("ID:"), /empty ID/);
  refused(header("ID:two words"), /printable ASCII/);
  refused(header("ID:tab\there"), /printable ASCII/);
  refused(header("ID:caf\u00e9"), /printable ASCII/);
  refused(header("ID:" + "x".repeat(ID_HEADER_LENGTH - 3)), /without its NUL padding/);
  refused(header("ID:abc").subarray(0, 100), /not a 250-byte ID header/);
  refused(header("ID:abc", 0x20), /printable ASCII|NUL padding/);
});

Deno.test("parseReverseSource: [HOST:]PORT, a bare port on every interface", () => {
  assert.deepEqual(parseReverseSource("5500"), { hostname: "", port: 5500 });
  assert.deepEqual(parseReverseSource("127.0.0.1:5500"), { hostname: "127.0.0.1", port: 5500 });
  assert.deepEqual(parseReverseSource("[::1]:5500"), { hostname: "::1", port: 5500 });
  assert.deepEqual(parseReverseSource("example.net:0"), { hostname: "example.net", port: 0 });
  for (const bad of ["", "x", "host:", "host:65536", "host:-1", "a b:5500", "[::1:5500"]) {
    assert.equal(parseReverseSource(bad), undefined, bad);
  }
  assert.equal(formatReverseSource({ hostname: "", port: 5500 }), ":5500");
  assert.equal(formatReverseSource({ hostname: "::1", port: 5500 }), "[::1]:5500");
  assert.deepEqual(parseReverseSource(":5500"), { hostname: "", port: 5500 });
});

Deno.test("command line: --token-plugin ReverseConnection takes an address, not a path, and no --workers", () => {
  const run = (argv: string[]) => {
    const command = parseCommandLine(argv, "/start");
    if (command.kind !== "run") throw new Error("not a run");
    return command.settings;
  };
  const target = run(["6080", "--token-plugin", "ReverseConnection", "--token-source", "5500"])
    .target;
  assert.deepEqual(target, {
    kind: "token",
    plugin: "ReverseConnection",
    source: ":5500",
    tokenFrom: [{ kind: "query" }],
  });
  const spelled = run([
    "6080",
    "--token-plugin=websockify.token_plugins.ReverseConnection",
    "--token-source=[::1]:5500",
  ]).target;
  assert.equal(spelled.kind === "token" && spelled.source, "[::1]:5500");
  const usage = (argv: string[], pattern: RegExp) =>
    assert.throws(() => parseCommandLine(argv, "/start"), (error: unknown) => {
      assert.ok(error instanceof UsageError, String(error));
      assert.match(error.message, pattern);
      return true;
    });
  usage(
    ["6080", "--token-plugin", "ReverseConnection", "--token-source", "/tmp/x"],
    /--token-source '\/tmp\/x': ReverseConnection takes \[HOST:\]PORT/,
  );
  usage(["6080", "--token-plugin", "ReverseConnection"], /needs --token-source/);
  usage(
    ["6080", "--token-plugin", "ReverseConnection", "--token-source", "5500", "--workers", "2"],
    /--workers cannot be used with --token-plugin ReverseConnection/,
  );
});
