// host:port text: the one reader behind the listen and target arguments, token files and --syslog.
import assert from "node:assert/strict";
import {
  formatHostPort,
  parsePort,
  splitHostOptionalPort,
  splitHostPort,
} from "../../lib/hostport.ts";
import { parseSyslogHost } from "../../lib/logsinks.ts";
import { parseTokenTarget } from "../../lib/plugins.ts";

Deno.test("splitHostPort: the last colon splits; brackets leave the host", () => {
  assert.deepEqual(splitHostPort("h:1"), { host: "h", port: "1" });
  assert.deepEqual(splitHostPort("[::1]:5900"), { host: "::1", port: "5900" });
  assert.deepEqual(splitHostPort("::1:5900"), { host: "::1", port: "5900" });
  assert.deepEqual(splitHostPort(":5900"), { host: "", port: "5900" });
  assert.deepEqual(splitHostPort("h:"), { host: "h", port: "" });
  assert.equal(splitHostPort("6080"), undefined);
});

Deno.test("splitHostOptionalPort: a host alone, [v6] alone, or a bare IPv6 address have no port", () => {
  assert.deepEqual(splitHostOptionalPort("logs.example"), { host: "logs.example" });
  assert.deepEqual(splitHostOptionalPort("[::1]"), { host: "::1" });
  assert.deepEqual(splitHostOptionalPort("fe80::1"), { host: "fe80::1" });
  assert.deepEqual(splitHostOptionalPort("[::1]:1514"), { host: "::1", port: "1514" });
  assert.deepEqual(splitHostOptionalPort("logs.example:1514"), {
    host: "logs.example",
    port: "1514",
  });
});

Deno.test("parsePort: decimal 1..65535, 0 only when allowed", () => {
  assert.equal(parsePort("5900"), 5900);
  assert.equal(parsePort("65535"), 65535);
  assert.equal(parsePort("0"), undefined);
  assert.equal(parsePort("0", true), 0);
  for (const bad of ["65536", "", "x", "0x10", "1e3", "+80", " 80", "80.0", "123456"]) {
    assert.equal(parsePort(bad), undefined, bad);
  }
});

Deno.test("formatHostPort brackets IPv6 literals only", () => {
  assert.equal(formatHostPort("::1", 80), "[::1]:80");
  assert.equal(formatHostPort("127.0.0.1", 80), "127.0.0.1:80");
  assert.equal(formatHostPort("vnc.example", 5900), "vnc.example:5900");
});

Deno.test("token file targets and --syslog read ports as the command line does", () => {
  assert.deepEqual(parseTokenTarget("[::1]:5900"), { kind: "tcp", hostname: "::1", port: 5900 });
  assert.deepEqual(parseTokenTarget("host: 5900"), { kind: "tcp", hostname: "host", port: 5900 });
  // Number() used to read these; the command line never did.
  for (const bad of ["host:0x10", "host:1e3", "host:+80", "host:80.0", ":5900", "host"]) {
    assert.equal(parseTokenTarget(bad), undefined, bad);
  }
  assert.deepEqual(parseSyslogHost("[::1]:1514"), { host: "::1", port: 1514 });
  assert.throws(() => parseSyslogHost("logs.example:0x10"), /bad port/);
});
