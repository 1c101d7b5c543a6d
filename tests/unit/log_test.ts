// The logger's two formats (lib/log.ts): text lines exactly as before, JSON lines with stable keys.
import assert from "node:assert/strict";
import { formatJsonLine, type Level, Logger } from "../../lib/log.ts";

function capture(format: "text" | "json", verbose = true) {
  const lines: [string, Level][] = [];
  const log = new Logger([{ write: (line, level) => lines.push([line, level]) }]);
  log.verbose = verbose;
  log.format = format;
  return { log, lines };
}

Deno.test("text: fields change nothing, byte for byte", () => {
  const plain = capture("text");
  const withFields = capture("text");
  const fields = { client: "192.0.2.7", client_port: 5555, path: "/x", status: 405 };
  plain.log.info("server line");
  withFields.log.info("server line", fields);
  plain.log.request("192.0.2.7", "code 405, message Method Not Allowed");
  withFields.log.request("192.0.2.7", "code 405, message Method Not Allowed", "info", fields);
  plain.log.request("192.0.2.7", "a debug line", "debug");
  withFields.log.request("192.0.2.7", "a debug line", "debug", fields);
  plain.log.error("bad\nline\x1b[2J");
  withFields.log.error("bad\nline\x1b[2J", fields);
  assert.deepEqual(withFields.lines, plain.lines);
  assert.equal(plain.lines[0][0], "server line");
  assert.match(
    plain.lines[1][0],
    /^192\.0\.2\.7 - - \[\d\d\/\w{3}\/\d{4} \d\d:\d\d:\d\d\] code 405/,
  );
  assert.equal(plain.lines[3][0], "bad\\nline\\x1b[2J");
});

Deno.test("json: one object per line, time level msg first, then the fields in a stable order", () => {
  const { log, lines } = capture("json");
  log.info("WebSocket server settings:");
  log.request("192.0.2.7", "code 405, message Method Not Allowed", "info", {
    status: 405,
    path: "/websockify?token=#1a2b3c4d",
    client_port: 5555,
  });
  log.request("192.0.2.7", "session ended", "info", {
    close_code: 1000,
    duration_ms: 1234,
    bytes_down: 20,
    bytes_up: 10,
    target: "127.0.0.1:5900",
    token_hash: "#1a2b3c4d",
    closed_by: "client",
    client_port: undefined,
  });
  log.warning("careful");
  log.debug("details");
  const objects = lines.map(([line]) => JSON.parse(line));
  assert.deepEqual(Object.keys(objects[0]), ["time", "level", "msg"]);
  assert.match(objects[0].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(objects[0].time) - Date.now()) < 5000);
  assert.equal(objects[0].level, "info");
  assert.equal(objects[0].msg, "WebSocket server settings:");
  assert.deepEqual(Object.keys(objects[1]), [
    "time",
    "level",
    "msg",
    "client",
    "client_port",
    "path",
    "status",
  ]);
  assert.equal(objects[1].msg, "code 405, message Method Not Allowed"); // no text prefix
  assert.equal(objects[1].client, "192.0.2.7");
  assert.equal(objects[1].client_port, 5555);
  assert.equal(objects[1].status, 405);
  assert.deepEqual(Object.keys(objects[2]).slice(3), [
    "client",
    "target",
    "token_hash",
    "bytes_up",
    "bytes_down",
    "duration_ms",
    "close_code",
    "closed_by",
  ]);
  assert.deepEqual(lines.map(([, level]) => level), ["info", "info", "info", "warning", "debug"]);
  assert.deepEqual(objects.map((object) => object.level), lines.map(([, level]) => level));
});

Deno.test("json: debug lines only with -v; control characters escaped as in text, then as JSON", () => {
  const { log, lines } = capture("json", false);
  log.debug("hidden");
  log.request("192.0.2.7", "hidden too", "debug", { status: 101 });
  assert.equal(lines.length, 0);
  const line = formatJsonLine("info", 'GET /\x1b[2J\n"quoted"\u2028\u202e', {
    path: "/a\r\nb",
    client: "x\u0085y",
  });
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]/.test(line), line);
  const object = JSON.parse(line);
  assert.equal(object.msg, 'GET /\\x1b[2J\\n"quoted"\\u2028\\u202e');
  assert.equal(object.path, "/a\\r\\nb");
  assert.equal(object.client, "x\\x85y");
  assert.equal(line.includes("\n"), false);
});
