// Plugin modules (lib/plugin_modules.ts): which values name a module, a plugin's answer as a target or a
// verdict, import failures as one line, init's time limit; and the log's token hash (lib/secrets.ts).
import assert from "node:assert/strict";
import { parseCommandLine } from "../../lib/cli.ts";
import {
  authVerdict,
  importFailure,
  loadAuthModule,
  loadTokenModule,
  parsePluginModule,
  pluginTarget,
  standaloneHint,
} from "../../lib/plugin_modules.ts";
import { tokenHash } from "../../lib/secrets.ts";

Deno.test("a plugin's answer as a target: token-file strings, { host, port }, { unixSocket }", () => {
  assert.deepEqual(pluginTarget("10.0.0.11:5900"), {
    kind: "tcp",
    hostname: "10.0.0.11",
    port: 5900,
  });
  assert.deepEqual(pluginTarget("[fd00::12]:5901"), {
    kind: "tcp",
    hostname: "fd00::12",
    port: 5901,
  });
  assert.deepEqual(pluginTarget("unix_socket:/run/vnc.sock"), {
    kind: "unix",
    path: "/run/vnc.sock",
  });
  assert.deepEqual(pluginTarget({ host: "vnc.example", port: 5902 }), {
    kind: "tcp",
    hostname: "vnc.example",
    port: 5902,
  });
  assert.deepEqual(pluginTarget({ host: "[::1]", port: 1 }), {
    kind: "tcp",
    hostname: "::1",
    port: 1,
  });
  assert.deepEqual(pluginTarget({ host: "::1", port: 65535 }), {
    kind: "tcp",
    hostname: "::1",
    port: 65535,
  });
  assert.deepEqual(pluginTarget({ unixSocket: "/run/a.sock" }), {
    kind: "unix",
    path: "/run/a.sock",
  });
});

Deno.test("a plugin's answer that is no target: each says why", () => {
  const cases: [unknown, RegExp][] = [
    [42, /not a target/],
    [true, /not a target/],
    [["127.0.0.1", 5900], /not a target/],
    [() => "x", /not a target/],
    ["", /not "host:port"/],
    ["127.0.0.1", /not "host:port"/],
    ["127.0.0.1:0", /not "host:port"/],
    ["127.0.0.1:70000", /not "host:port"/],
    ["host name:5900", /host is not a name or an address/],
    ["unix_socket:", /not "host:port"/],
    [{}, /neither host and port nor unixSocket/],
    [{ name: "vm1" }, /neither host and port nor unixSocket/],
    [{ port: 5900 }, /host is not a string/],
    [{ host: "", port: 5900 }, /host is not a name or an address/],
    [{ host: "a\nb", port: 5900 }, /host is not a name or an address/],
    [{ host: "h" }, /port is not a whole number from 1 to 65535/],
    [{ host: "h", port: 0 }, /port is not/],
    [{ host: "h", port: 70000 }, /port is not/],
    [{ host: "h", port: 59.5 }, /port is not/],
    [{ host: "h", port: "5900" }, /port is not/],
    [{ host: "h", port: 5900, unixSocket: "/x" }, /both host and unixSocket/],
    [{ unixSocket: "" }, /unixSocket is not a path/],
    [{ unixSocket: 5 }, /unixSocket is not a path/],
  ];
  for (const [value, reason] of cases) {
    assert.throws(() => pluginTarget(value), reason, JSON.stringify(value));
  }
});

Deno.test("an auth plugin's answer: undefined and true allow, false and refusals refuse, anything else is a plugin error", () => {
  assert.equal(authVerdict(undefined, "./a.ts"), undefined);
  assert.equal(authVerdict(true, "./a.ts"), undefined);
  assert.deepEqual(authVerdict(false, "./a.ts"), {
    status: 403,
    message: "Forbidden",
    headers: [],
    log: "refused by ./a.ts",
  });
  assert.deepEqual(
    authVerdict({ status: 401, headers: { "WWW-Authenticate": "Bearer" } }, "./a.ts"),
    {
      status: 401,
      message: "Unauthorized",
      headers: [["WWW-Authenticate", "Bearer"]],
      log: "refused by ./a.ts",
    },
  );
  assert.deepEqual(
    authVerdict({ status: 599, message: "Go away", headers: [["X-A", "1"]], log: "a\nb" }, "m"),
    { status: 599, message: "Go away", headers: [["X-A", "1"]], log: "a b" },
  );
  const errors: [unknown, RegExp][] = [
    [null, /answered null: undefined or true allow/],
    [0, /answered 0:/],
    ["no", /answered "no":/],
    [[403], /answered \[403\]:/],
    [{}, /answered status undefined: a refusal is 400 to 599/],
    [{ status: 200 }, /answered status 200: a refusal is 400 to 599/],
    [{ status: 399 }, /status 399/],
    [{ status: 600 }, /status 600/],
    [{ status: 401.5 }, /status 401\.5/],
    [{ status: "401" }, /status "401"/],
    [{ status: 401, message: 5 }, /a message that is not a string/],
    [{ status: 401, log: {} }, /a log that is not a string/],
    [{ status: 401, headers: "x" }, /headers that are neither pairs nor a record/],
    [{ status: 401, headers: [["a"]] }, /a header that is not a \[name, value\] pair/],
    [{ status: 401, headers: { "Bad Name": "x" } }, /header name that is not a token/],
    [{ status: 401, headers: { "X\r\nInjected": "x" } }, /header name that is not a token/],
    [{ status: 401, headers: { "Content-Length": "5" } }, /the header Content-Length, which/],
    [{ status: 401, headers: { connection: "keep-alive" } }, /the header connection/],
    [{ status: 401, headers: { "X-A": 1 } }, /a value of X-A that is not a string/],
  ];
  for (const [value, log] of errors) {
    const refusal = authVerdict(value, "./a.ts");
    assert.equal(refusal?.status, 403, JSON.stringify(value));
    assert.match(refusal!.log, /^plugin error: \.\/a\.ts answered /);
    assert.match(refusal!.log, log, JSON.stringify(value));
  }
});

Deno.test("which --token-plugin / --auth-plugin values name a module, and what is imported", () => {
  const cwd = "/srv/websockify";
  assert.deepEqual(parsePluginModule("./my_plugin.ts", cwd), {
    given: "./my_plugin.ts",
    specifier: "file:///srv/websockify/my_plugin.ts",
  });
  assert.equal(parsePluginModule("../x.js", cwd)?.specifier, "file:///srv/x.js");
  assert.equal(parsePluginModule("/opt/p/a b.mjs", cwd)?.specifier, "file:///opt/p/a%20b.mjs");
  assert.equal(
    parsePluginModule("plugins/mine.ts", cwd)?.specifier,
    "file:///srv/websockify/plugins/mine.ts",
  );
  assert.equal(parsePluginModule("file:///opt/p.ts", cwd)?.specifier, "file:///opt/p.ts");
  assert.equal(parsePluginModule("npm:my-plugin@1.2.3", cwd)?.specifier, "npm:my-plugin@1.2.3");
  assert.equal(parsePluginModule("jsr:@me/plugin", cwd)?.specifier, "jsr:@me/plugin");
  assert.equal(
    parsePluginModule("https://h.example/p.ts", cwd)?.specifier,
    "https://h.example/p.ts",
  );
  for (const name of ["TokenRedis", "my.module.Class", "websockify.token_plugins.Nope", "x.py"]) {
    assert.equal(parsePluginModule(name, cwd), undefined, name);
  }
  assert.throws(() => parsePluginModule("file://x:y/z.ts", cwd), /not a valid file: URL/);
});

Deno.test("the command line: a module's source is optional and verbatim; built-in plugins are unchanged", () => {
  const run = (args: string[]) => {
    const command = parseCommandLine(args, "/start");
    assert.equal(command.kind, "run");
    return command.kind === "run" ? command.settings : undefined!;
  };
  const withSource = run(["6080", "--token-plugin", "./p.ts", "--token-source", "redis:6379:x"]);
  assert.deepEqual(withSource.target, {
    kind: "token",
    plugin: { given: "./p.ts", specifier: "file:///start/p.ts" },
    source: "redis:6379:x",
    tokenFrom: [{ kind: "query" }],
  });
  const bare = run(["6080", "--token-plugin=npm:p@1", "--host-token"]);
  assert.deepEqual(bare.target, {
    kind: "token",
    plugin: { given: "npm:p@1", specifier: "npm:p@1" },
    source: undefined,
    tokenFrom: [{ kind: "host" }],
  });
  const auth = run(["6080", "h:1", "--auth-plugin", "auth.js"]);
  assert.deepEqual(auth.auth, {
    plugin: { given: "auth.js", specifier: "file:///start/auth.js" },
    source: undefined,
  });
  assert.equal(run(["6080", "h:1", "--auth-plugin", "ExpectOrigin"]).auth?.plugin, "ExpectOrigin");
  assert.throws(
    () => parseCommandLine(["6080", "--token-plugin", "Nope"], "/start"),
    /--token-plugin Nope: not available \(built in: .*or a module: \.\/my_plugin\.ts, file:, npm:/,
  );
});

Deno.test("import failures are one line: no colours, no code frame, the place of a syntax error", () => {
  const syntax = new TypeError(
    'SyntaxError: Unterminated string constant\n  |\n1 | x = "\n  |     ~\n' +
      "    at file:///p/broken.ts:1:5\n\nSyntaxError: Expected '}'\n    at file:///p/broken.ts:1:9",
  );
  assert.equal(
    importFailure(syntax),
    "SyntaxError: Unterminated string constant (at file:///p/broken.ts:1:5)",
  );
  assert.equal(
    importFailure(new TypeError('Module not found "file:///\x1b[36mx.ts\x1b[0m".')),
    'Module not found "file:///x.ts".',
  );
  assert.match(
    importFailure(
      new TypeError("The lockfile is out of date. Run `deno install`.\nchanges:\n 7 | +x"),
    ),
    /^The lockfile is out of date\. Run `deno install`\. \(an npm: or jsr: plugin must be in the project's deno\.lock/,
  );
  assert.equal(importFailure("thrown text"), "thrown text");
  const npm = { given: "npm:p", specifier: "npm:p" };
  assert.match(
    standaloneHint(npm, true),
    /the single executable cannot fetch npm:, jsr: or http\(s\)/,
  );
  assert.equal(standaloneHint(npm, false), "");
  assert.equal(standaloneHint({ given: "./p.ts", specifier: "file:///p.ts" }, true), "");
});

/** A module from source text (a data: URL), as the loaders take it. */
function dataModule(source: string) {
  return {
    given: "./inline.ts",
    specifier: `data:application/typescript;base64,${btoa(source)}`,
  };
}

Deno.test("init: awaited once with the source; a throw or a hang (time limit) stops the load, naming the module", async () => {
  const seen = dataModule(
    "export const calls: unknown[] = []; export async function init(source?: string) { " +
      "await new Promise((r) => setTimeout(r, 10)); calls.push(source); }\n" +
      "export function lookup() { return calls.length === 1 && calls[0] === 'src' ? 'h:1' : 'x'; }",
  );
  const plugin = await loadTokenModule(seen, "src");
  const caller = {
    request: { method: "GET", target: "/", version: "HTTP/1.1", headers: new Map() },
    client: { address: "127.0.0.1", port: 5 },
    clientCertCN: undefined,
  };
  assert.deepEqual(await plugin.lookup("t", caller), { kind: "tcp", hostname: "h", port: 1 });
  await assert.rejects(
    loadTokenModule(
      dataModule(
        "export function lookup() {} export function init() { throw new Error('no db'); }",
      ),
      undefined,
    ),
    /^Error: --token-plugin \.\/inline\.ts: init failed: no db$/,
  );
  const started = performance.now();
  await assert.rejects(
    loadAuthModule(
      dataModule(
        "export function auth() {} export function init() { return new Promise(() => {}); }",
      ),
      undefined,
      { initTimeoutMs: 200 },
    ),
    /--auth-plugin \.\/inline\.ts: init failed: not finished within 0\.2 s/,
  );
  assert.ok(performance.now() - started < 2000);
  // A CommonJS-style module: the functions on its default export.
  const cjs = await loadAuthModule(
    dataModule("export default { auth() { return false; } };"),
    undefined,
  );
  const refusal = await cjs.authenticate({
    request: caller.request,
    target: { kind: "tcp", hostname: "h", port: 1 },
    clientCertCN: undefined,
  });
  assert.equal(refusal?.status, 403);
});

Deno.test("tokens are logged as the first 8 hex digits of their SHA-256", () => {
  assert.equal(tokenHash("abc"), "#ba7816bf");
  assert.equal(tokenHash(""), "#e3b0c442");
});
