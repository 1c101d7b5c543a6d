// Log sinks' pure parts (lib/logsinks.ts): syslog message formats, the --syslog address.
import assert from "node:assert/strict";
import type { Level } from "../../lib/log.ts";
import { FACILITY, formatSyslog, parseSyslogHost } from "../../lib/logsinks.ts";

Deno.test("syslog framing: RFC 5424 and legacy headers, facility by daemon mode, newlines folded, BOM for UTF-8", () => {
  const at = new Date("2026-11-23T01:02:03.456Z");
  const format = { facility: 1, legacy: false, hostname: "box", pid: 42 };
  assert.equal(
    new TextDecoder().decode(formatSyslog("hello\nworld", "info", format, at)),
    "<14>1 2026-11-23T01:02:03Z box websockify 42 - - hello world",
  );
  assert.equal(
    new TextDecoder().decode(
      formatSyslog("oops", "error", { ...format, facility: 3, legacy: true }, at),
    ),
    "<27>websockify[42]: oops",
  );
  const utf8 = formatSyslog("héllo", "debug", format, at);
  assert.equal(
    new TextDecoder("utf-8", { ignoreBOM: true }).decode(utf8),
    "<15>1 2026-11-23T01:02:03Z box websockify 42 - - \ufeffhéllo",
  );
});

Deno.test("formatSyslog: priority is facility * 8 + severity at every level; CR/LF runs fold to one space; whole seconds", () => {
  const decode = (bytes: Uint8Array) => new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes);
  const at = new Date("2026-01-02T03:04:05.999Z");
  const severities: Record<Level, number> = { error: 3, warning: 4, info: 6, debug: 7 };
  for (const facility of [FACILITY.user, FACILITY.daemon]) {
    for (const [level, severity] of Object.entries(severities) as [Level, number][]) {
      const format = { facility, legacy: false, hostname: "h", pid: 1 };
      assert.equal(
        decode(formatSyslog("m", level, format, at)),
        `<${facility * 8 + severity}>1 2026-01-02T03:04:05Z h websockify 1 - - m`,
      );
      assert.equal(
        decode(formatSyslog("m", level, { ...format, legacy: true }, at)),
        `<${facility * 8 + severity}>websockify[1]: m`,
      );
    }
  }
  const format = { facility: FACILITY.user, legacy: false, hostname: "h", pid: 1 };
  assert.equal(
    decode(formatSyslog("a\r\n\r\nb\rc\n", "info", format, at)),
    "<14>1 2026-01-02T03:04:05Z h websockify 1 - - a b c ",
  );
  assert.equal(
    decode(formatSyslog("héllo", "info", { ...format, legacy: true }, at)),
    "<14>websockify[1]: héllo",
    "the legacy format carries no BOM",
  );
});

Deno.test("parseSyslogHost reads every address form", () => {
  assert.deepEqual(parseSyslogHost("logs.example"), {
    host: "logs.example",
    port: 514,
  });
  assert.deepEqual(parseSyslogHost("logs.example:1514"), {
    host: "logs.example",
    port: 1514,
  });
  assert.deepEqual(parseSyslogHost("[::1]"), { host: "::1", port: 514 });
  assert.deepEqual(parseSyslogHost("[::1]:1514"), { host: "::1", port: 1514 });
  assert.deepEqual(parseSyslogHost("fe80::1"), { host: "fe80::1", port: 514 });
  assert.throws(() => parseSyslogHost("host:0"), /--syslog 'host:0': bad port/);
  assert.throws(() => parseSyslogHost("host:x"), /bad port/);
  assert.throws(() => parseSyslogHost(":514"), /no host/);
});
