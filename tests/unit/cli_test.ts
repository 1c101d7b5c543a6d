// The command line: optparse habits and websockify's argument rules.
import assert from "node:assert/strict";
import { helpText, OPTIONS, parseCommandLine, UsageError } from "../../lib/cli.ts";
import { parseArgs } from "../../lib/optparse.ts";

function settings(argv: string[]) {
  const command = parseCommandLine(argv, "/start");
  if (command.kind !== "run") throw new assert.AssertionError({ message: `not a run: ${argv}` });
  return command.settings;
}

function usageError(argv: string[], pattern: RegExp): void {
  assert.throws(() => parseCommandLine(argv, "/start"), (error: unknown) => {
    assert.ok(error instanceof UsageError, String(error));
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("listen and target forms", () => {
  assert.deepEqual(settings(["6080", "localhost:5900"]).listen, {
    kind: "tcp",
    hostname: "",
    port: 6080,
  });
  assert.deepEqual(settings(["127.0.0.1:6080", "h:1"]).listen, {
    kind: "tcp",
    hostname: "127.0.0.1",
    port: 6080,
  });
  assert.deepEqual(settings(["[::1]:6080", "h:1"]).listen, {
    kind: "tcp",
    hostname: "::1",
    port: 6080,
  });
  assert.deepEqual(settings(["::1:6080", "h:1"]).listen, {
    kind: "tcp",
    hostname: "::1",
    port: 6080,
  });
  assert.deepEqual(settings(["6080", "[::1]:5900"]).target, {
    kind: "tcp",
    hostname: "::1",
    port: 5900,
  });
  assert.deepEqual(settings(["6080", "::1:5900"]).target, {
    kind: "tcp",
    hostname: "::1",
    port: 5900,
  });
  assert.deepEqual(settings(["6080", "--unix-target=sock"]).target, {
    kind: "unix",
    path: "/start/sock",
  });
  assert.deepEqual(settings(["--unix-listen", "/tmp/l.sock", "h:5900"]).listen, {
    kind: "unix",
    path: "/tmp/l.sock",
    mode: 0o600,
  });
  assert.deepEqual(settings(["--unix-listen=/tmp/l", "--unix-listen-mode=0660", "h:1"]).listen, {
    kind: "unix",
    path: "/tmp/l",
    mode: 0o660,
  });
});

Deno.test("optparse habits: options after positionals, prefixes, =, combined short flags", () => {
  const s = settings(["6080", "h:5900", "--verb", "-6"]);
  assert.equal(s.verbose, true);
  assert.deepEqual(s, settings(["6080", "h:5900", "-v"]), "-6 is accepted and changes nothing");
  assert.equal(settings(["-v6", "6080", "h:1"]).verbose, true);
  assert.deepEqual(settings(["6080", "--unix-t", "/s"]).target, { kind: "unix", path: "/s" });
  const parsed = parseArgs(["-ab", "x", "--long=v=w", "pos", "-cvalue", "--", "a", "--b"], [
    { long: "alpha", short: "a", takesValue: false },
    { long: "beta", short: "b", takesValue: true },
    { long: "long", takesValue: true },
    { long: "cee", short: "c", takesValue: true },
  ]);
  assert.deepEqual(parsed.values.get("beta"), ["x"]);
  assert.deepEqual(parsed.values.get("long"), ["v=w"]);
  assert.deepEqual(parsed.values.get("cee"), ["value"]);
  assert.deepEqual(parsed.positionals, ["pos"]);
  assert.deepEqual(parsed.afterTerminator, ["a", "--b"]);
});

Deno.test("usage errors name the problem", () => {
  usageError([], /Too few arguments/);
  usageError(["6080"], /Too few arguments/);
  usageError(["6080", "h:1", "extra"], /Too many arguments/);
  usageError(["6080", "--unix-target=/s", "h:1"], /Too many arguments/);
  usageError(["x6080", "h:1"], /Error parsing listen port/);
  usageError(["6080", "nohost"], /Error parsing target/);
  usageError(["6080", "h:port"], /Error parsing target port/);
  usageError(["6080", "h:70000"], /Error parsing target port/);
  usageError(["6080", "h:1", "--bogus"], /no such option: --bogus/);
  usageError(["6080", "h:1", "--s"], /ambiguous option: --s/);
  usageError(["6080", "h:1", "-q"], /no such option: -q/);
  usageError(["6080", "h:1", "--unix-listen-mode"], /requires an argument/);
  usageError(["--unix-listen=/x", "--unix-listen-mode=999", "h:1"], /unix socket mode/);
  usageError(["--verbose=yes", "6080", "h:1"], /does not take a value/);
  usageError(
    ["6080", "h:1", "--ssl-version=tlsv1_0"],
    /invalid choice: 'tlsv1_0' \(choose from 'default',/,
  );
  usageError(["6080", "h:1", "--ssl-version=toString"], /invalid choice: 'toString'/);
});

Deno.test("TokenRedis: the source keeps its fields, with a relative @FILE password made absolute", () => {
  const target = settings([
    "6080",
    "--token-plugin=websockify.token_plugins.TokenRedis",
    '--token-source=redis.internal::3:@conf/redis.pw:"vdi:desks":yes',
  ]).target;
  assert.deepEqual(target, {
    kind: "token",
    plugin: "TokenRedis",
    source: 'redis.internal:6379:3:@/start/conf/redis.pw:"vdi:desks":ssl',
    tokenFrom: [{ kind: "query" }],
  });
});

Deno.test("plugin and option combinations that cannot work fail clearly", () => {
  usageError(
    ["6080", "--token-plugin=websockify.token_plugins.TokenMemcached"],
    /not available \(built in: /,
  );
  usageError(
    ["6080", "--token-plugin=TokenRedis", "--token-source=redis:port"],
    /--token-source 'redis:port': bad port 'port' \(expected host\[:port\[:db/,
  );
  usageError(
    ["6080", "h:1", "--auth-plugin", "my.module.Auth"],
    /--auth-plugin my\.module\.Auth: not available/,
  );
  usageError(["6080", "--token-plugin=TokenFile"], /needs --token-source/);
  usageError(["6080", "h:1", "--token-source=x"], /require --token-plugin/);
  usageError(["6080", "h:1", "--auth-source=x"], /requires --auth-plugin/);
  usageError(["6080", "h:1", "--web-auth", "--auth-plugin=ExpectOrigin"], /--web-auth requires/);
  usageError(["6080", "h:1", "--timeout=soon"], /option --timeout: invalid integer value: 'soon'/);
  usageError(["6080", "h:1", "--legacy-syslog"], /--legacy-syslog requires --syslog/);
  usageError(["--inetd", "--unix-listen=/x", "h:1"], /cannot be used together/);
});

Deno.test("wrap mode: positionals after the listen address and after -- form the command", () => {
  const wrapped = settings([
    "5901",
    "--wrap-mode=ignore",
    "--",
    "vncserver",
    "-geometry",
    "1024x768",
    ":1",
  ]);
  assert.deepEqual(wrapped.target, {
    kind: "command",
    command: ["vncserver", "-geometry", "1024x768", ":1"],
    port: 0,
  });
  assert.equal(wrapped.wrapMode, "ignore");
  assert.equal(settings(["5901", "--", "prog"]).wrapMode, "exit");
  // As in Python: with --, every positional after the listen address belongs to the command.
  assert.deepEqual(settings(["5901", "telnetd", "--", "-debug"]).target, {
    kind: "command",
    command: ["telnetd", "-debug"],
    port: 0,
  });
  usageError(["5901", "--"], /no command to wrap/);
  usageError(["--unix-listen=/s", "--", "prog"], /needs a TCP listen port/);
  usageError(["5901", "--wrap-mode=x", "--", "prog"], /invalid choice: 'x'/);
});

Deno.test("--inetd takes no listen argument", () => {
  assert.deepEqual(settings(["--inetd", "h:5900"]).listen, { kind: "inetd" });
  assert.deepEqual(settings(["--inetd", "h:5900"]).target, {
    kind: "tcp",
    hostname: "h",
    port: 5900,
  });
});

Deno.test("--help lists every option with its default", () => {
  assert.deepEqual(parseCommandLine(["--help"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["6080", "-h"]), { kind: "help" });
  const help = helpText();
  for (const option of OPTIONS) assert.ok(help.includes(`--${option.long}`), option.long);
  assert.match(help, /--unix-listen-mode=MODE\s+.*\(default: 0600\)/);
  // A name of exactly the column's width (26) goes on its own line, never glued to its help text.
  assert.match(help, /^ {2}--metrics-listen=HOST:PORT\n {28}serve \/metrics/m);
  const lines = help.split("\n");
  lines.forEach((line, i) => {
    if (!line.startsWith("  -")) return;
    assert.ok(line[27] === " " || lines[i + 1].startsWith(" ".repeat(28)), line);
  });
});

Deno.test("plugin names as Python launch scripts spell them name the built-in ones; a token service URL stays a URL", () => {
  const token = parseCommandLine([
    "6080",
    "--token-plugin=websockify.token_plugins.JSONTokenApi",
    "--token-source=http://127.0.0.1:8080/t/%s",
    "--auth-plugin=websockify.auth_plugins.BasicHTTPAuth",
    "--auth-source=u:p",
  ]);
  assert.equal(token.kind, "run");
  if (token.kind !== "run") return;
  assert.deepEqual(token.settings.target, {
    kind: "token",
    plugin: "JSONTokenApi",
    source: "http://127.0.0.1:8080/t/%s",
    tokenFrom: [{ kind: "query" }],
  });
  assert.equal(token.settings.auth?.plugin, "BasicHTTPAuth");
  assert.throws(
    () =>
      parseCommandLine([
        "6080",
        "--token-plugin=websockify.token_plugins.Nope",
        "--token-source=x",
      ]),
    /not available \(built in: .*also as websockify\.token_plugins\.<name>/,
  );
});

Deno.test("built-in pages: on by default, off with --no-builtin-pages (also abbreviated); --help says so", () => {
  assert.equal(settings(["6080", "h:1"]).builtinPages, true);
  assert.equal(settings(["6080", "h:1", "--no-builtin-pages"]).builtinPages, false);
  assert.equal(settings(["6080", "h:1", "--no"]).builtinPages, false);
  usageError(["6080", "h:1", "--no-builtin-pages=yes"], /does not take a value/);
  assert.match(
    helpText(),
    /--no-builtin-pages +do not serve the built-in pages under \/websockify\//,
  );
});

Deno.test("--trusted-proxy: repeatable and comma-separated, IPv4 and IPv6; mistakes are usage errors", () => {
  assert.deepEqual(settings(["6080", "h:1"]).trustedProxies, []);
  const ranges = settings([
    "--trusted-proxy",
    "10.0.0.0/8,192.0.2.1",
    "--trusted-proxy=::1",
    "--trusted-proxy",
    "fd00::/8",
    "6080",
    "h:1",
  ]).trustedProxies;
  assert.deepEqual(ranges.map((range) => range.text), [
    "10.0.0.0/8",
    "192.0.2.1/32",
    "::1/128",
    "fd00::/8",
  ]);
  usageError(["--trusted-proxy", "10.1.0.0/8", "6080", "h:1"], /did you mean 10\.0\.0\.0\/8/);
  usageError(["--trusted-proxy", "nginx", "6080", "h:1"], /'nginx': not an IP address/);
  usageError(["--trusted-proxy", "10.0.0.0/40", "6080", "h:1"], /prefix length/);
  assert.match(helpText(), /--trusted-proxy=CIDR/);
});

Deno.test("--subprotocol: repeatable and comma-separated names, checked; --log-format: text or json", () => {
  assert.deepEqual(settings(["6080", "h:1"]).subprotocols, []);
  assert.deepEqual(
    settings([
      "--subprotocol",
      "mqtt",
      "--subprotocol=sip, v12.stomp",
      "--subprotocol",
      "mqtt",
      "6080",
      "h:1",
    ])
      .subprotocols,
    ["mqtt", "sip", "v12.stomp"],
  );
  usageError(["--subprotocol", "a b", "6080", "h:1"], /'a b' is not a subprotocol name/);
  usageError(["--subprotocol", "", "6080", "h:1"], /an empty name/);
  usageError(["--subprotocol", "mqtt,", "6080", "h:1"], /an empty name/);
  usageError(["--subprotocol", "caf\u00e9", "6080", "h:1"], /not a subprotocol name/);
  assert.equal(settings(["6080", "h:1"]).logFormat, "text");
  assert.equal(settings(["--log-format", "json", "6080", "h:1"]).logFormat, "json");
  assert.equal(settings(["--log-format=text", "6080", "h:1"]).logFormat, "text");
  usageError(
    ["--log-format", "xml", "6080", "h:1"],
    /option --log-format: invalid choice: 'xml' \(choose from 'text', 'json'\)/,
  );
  // --log-file keeps its unambiguous abbreviations.
  assert.equal(settings(["--log-fi=/x.log", "6080", "h:1"]).logFile, "/x.log");
  assert.match(helpText(), /--log-format=FORMAT\s+.*\(default: text\)/);
  assert.match(helpText(), /--subprotocol=NAME/);
});

Deno.test("--token-from (--host-token is its alias), --allowed-targets, --allowed-origin, --max-message-size", () => {
  const token = ["6080", "--token-plugin=TokenFile", "--token-source=t"];
  const target = (argv: string[]) => settings([...token, ...argv]).target;
  assert.deepEqual(target([]), {
    kind: "token",
    plugin: "TokenFile",
    source: "/start/t",
    tokenFrom: [{ kind: "query" }],
  });
  const from = (argv: string[]) => {
    const chosen = target(argv);
    return chosen.kind === "token" ? chosen.tokenFrom : undefined;
  };
  assert.deepEqual(from(["--host-token"]), [{ kind: "host" }]);
  assert.deepEqual(from(["--token-from=cookie:vnc,path", "--token-from", "query"]), [
    { kind: "cookie", name: "vnc" },
    { kind: "path" },
    { kind: "query" },
  ]);
  usageError([...token, "--token-from=host", "--host-token"], /--host-token is --token-from host/);
  usageError([...token, "--token-from=nope"], /--token-from 'nope': not a token source/);
  usageError(["6080", "h:1", "--token-from=path"], /--token-from and --host-token require/);

  const defaults = settings(["6080", "h:1"]);
  assert.equal(defaults.allowedTargets, undefined);
  assert.deepEqual(defaults.allowedOrigins, []);
  assert.equal(defaults.maxMessageSize, 0);

  const rules = settings([...token, "--allowed-targets=a:1,10.0.0.0/8:*", "--allowed-targets=b:2"])
    .allowedTargets;
  assert.deepEqual(rules?.map((rule) => rule.text), ["a:1", "10.0.0.0/8:*", "b:2"]);
  usageError([...token, "--allowed-targets=a"], /--allowed-targets 'a': expected HOST:PORTS/);
  usageError(["6080", "h:1", "--allowed-targets=h:1"], /it needs --token-plugin/);

  assert.deepEqual(
    settings([
      "6080",
      "h:1",
      "--allowed-origin=HTTPS://NoVNC.example:443/",
      "--allowed-origin",
      "http://localhost:8080,null",
    ]).allowedOrigins,
    ["https://novnc.example", "http://localhost:8080", "null"],
  );
  usageError(
    ["6080", "h:1", "--allowed-origin=novnc.example"],
    /'novnc\.example' is not an origin/,
  );
  usageError(["6080", "h:1", "--allowed-origin=https://a/b"], /is not an origin/);

  assert.equal(settings(["6080", "h:1", "--max-message-size=16777216"]).maxMessageSize, 16777216);
  usageError(["6080", "h:1", "--max-message-size=16M"], /invalid number of bytes: '16M'/);
  usageError(["6080", "h:1", "--max-message-size=-1"], /invalid number of bytes/);
});

Deno.test("abbreviations keep Python's meaning when new options share their prefix; new options abbreviate too", () => {
  // Each was unique in Python websockify's option list, and now also starts an option added here.
  assert.equal(settings(["--d", "6080", "h:1"]).daemon, true);
  assert.equal(settings(["--log=/tmp/ws.log", "6080", "h:1"]).logFile, "/tmp/ws.log");
  assert.doesNotThrow(() => settings(["--pr", "6080", "h:1"])); // --prefer-ipv6, not --proxy-protocol
  assert.equal(
    settings(["--ta=/tmp/tokens", "6080"]).target.kind,
    "token",
    "--ta is --target-config",
  );
  // Between options that are new, or between Python's own, a shared prefix is still ambiguous.
  usageError(["--to=TokenFile", "6080"], /ambiguous option: --to/);
  usageError(["--max-s=1", "6080", "h:1"], /ambiguous option: --max-s/);
  assert.equal(settings(["--compr", "6080", "h:1"]).compress, true);
});
