// Token and auth plugins as modules (--token-plugin ./x.ts, file:, npm:) end to end: real Deno WebSocket clients
// and raw clients through the proxy to a real TCP echo target; the README's examples are the modules loaded.
import assert from "node:assert/strict";
import { relative } from "node:path";
import { pathToFileURL } from "node:url";
import { tokenHash } from "../../lib/secrets.ts";
import { ROOT } from "../helpers/paths.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { RawClient, upgradeRequest } from "../helpers/raw_client.ts";
import { echoTarget } from "../helpers/targets.ts";
import { deadline, waitFor } from "../helpers/waits.ts";

const EXAMPLES = `${ROOT}examples/plugins/`;
const FIXTURES = `${ROOT}tests/plugins/`;

/**
 * Deno's WebSocket with request headers (a Deno extension). Typed by hand: the type check of tests/ also sees
 * web/websock.ts, whose DOM types declare a WebSocket without this constructor form.
 */
const DenoWebSocket = WebSocket as unknown as new (
  url: string,
  options: { headers: Record<string, string> },
) => WebSocket;

/** A session through a Deno WebSocket: sends `text`, returns what comes back. */
async function echoThrough(url: string, text: string, headers: Record<string, string> = {}) {
  const ws = new DenoWebSocket(url, { headers });
  ws.binaryType = "arraybuffer"; // the proxy sends the target's bytes as binary messages
  try {
    const reply = new Promise<string>((resolve, reject) => {
      ws.onopen = () => ws.send(text);
      ws.onmessage = (event) => resolve(new TextDecoder().decode(event.data as ArrayBuffer));
      ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    });
    return await deadline(reply, 5000, `echo through ${url}`);
  } finally {
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await deadline(closed, 5000, "WebSocket close");
  }
}

/** A Deno WebSocket the proxy refuses: it never opens; resolves when it has closed. */
async function refused(url: string, headers: Record<string, string> = {}) {
  const ws = new DenoWebSocket(url, { headers });
  let opened = false;
  ws.onopen = () => opened = true;
  ws.onerror = () => {};
  await deadline(new Promise((resolve) => ws.onclose = resolve), 5000, `refusal of ${url}`);
  assert.equal(opened, false, `${url} opened`);
}

Deno.test("a token plugin module (the README's example) picks targets end to end; an unknown token is logged by its hash, answers that are no target refuse the session", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  const targets = `${dir}/targets.json`;
  await Deno.writeTextFile(
    targets,
    JSON.stringify({
      vm1: `127.0.0.1:${target.port}`,
      vm2: { host: "[::ffff:127.0.0.1]", port: target.port },
      number: 42,
      big: "127.0.0.1:70000",
      object: { name: "vm3" },
    }),
  );
  const plugin = `${EXAMPLES}token_from_map.ts`;
  const proxy = await startProxy(["--token-plugin", plugin, "--token-source", targets]);
  try {
    assert.equal(await echoThrough(`${proxy.url}websockify?token=vm1`, "one"), "one");
    assert.equal(await echoThrough(`${proxy.url}websockify?token=vm2`, "two"), "two");
    const secret = "s3cret-token-that-must-not-be-logged";
    await refused(`${proxy.url}websockify?token=${secret}`);
    for (const token of ["number", "big", "object"]) await refused(`${proxy.url}?token=${token}`);
    await waitFor(() => proxy.log.has(/answered \{"name"/), 3000, "the last refusal's log line");
    assert.ok(proxy.log.has(new RegExp(`127\\.0\\.0\\.1: Token ${tokenHash(secret)} not found`)));
    assert.ok(!proxy.log.lines.some((line) => line.includes(secret)), "the token is never logged");
    assert.ok(
      proxy.log.has(
        /token lookup failed: \S+token_from_map\.ts answered 42: not a target \("host:port", \{ host, port \} or \{ unixSocket \}\)/,
      ),
    );
    assert.ok(
      proxy.log.has(
        /answered "127\.0\.0\.1:70000": not "host:port", "\[v6\]:port" or "unix_socket/,
      ),
    );
    assert.ok(proxy.log.has(/answered \{"name":"vm3"\}: neither host and port nor unixSocket/));
    // The proxy serves on after each of them.
    assert.equal(await echoThrough(`${proxy.url}?token=vm1`, "still"), "still");
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a token plugin module that throws, hangs or answers garbage refuses that session with a log line; others are served meanwhile; it sees the source, the client and the request", async () => {
  const target = echoTarget();
  const proxy = await startProxy(
    ["--token-plugin", `${FIXTURES}token_behaviours.ts`, "--token-source", "the source"],
    { plugin: 500 },
  );
  const context = { "X-Target-Port": String(target.port), SSL_CLIENT_S_DN_CN: "forged" };
  try {
    const started = performance.now();
    const hanging = await RawClient.connect(proxy.port);
    await hanging.send(new TextEncoder().encode(upgradeRequest({}, "/?token=hang")));
    // While that lookup hangs, another session is served.
    assert.equal(
      await echoThrough(`${proxy.url}websockify?token=context`, "meanwhile", context),
      "meanwhile",
    );
    assert.equal((await hanging.readRest(5000)).length, 0, "closed without an answer");
    const waited = performance.now() - started;
    hanging.close();
    assert.ok(waited >= 450 && waited < 4000, `refused after ${waited} ms`);
    assert.ok(proxy.log.has(/127\.0\.0\.1: token lookup failed: no answer within 0\.5 s/));

    for (const token of ["throw", "number", "no-host", "port-big", "port-zero", "null"]) {
      await refused(`${proxy.url}?token=${token}`);
    }
    await waitFor(() => proxy.log.has(/Token #\w{8} not found/), 3000, "the null's log line");
    const path = `${FIXTURES}token_behaviours.ts`.replaceAll(".", "\\.");
    for (
      const line of [
        `token lookup failed: ${path}: backend down second line`,
        `${path} answered 42: not a target`,
        `${path} answered \\{"port":5900\\}: host is not a string`,
        `answered \\{"host":"127\\.0\\.0\\.1","port":70000\\}: port is not a whole number from 1 to 65535`,
        `answered "127\\.0\\.0\\.1:0": not "host:port"`,
        `Token ${tokenHash("null")} not found`,
      ]
    ) {
      assert.ok(proxy.log.has(new RegExp(line)), `no log line like ${line}:\n${proxy.log.lines}`);
    }
    assert.equal(
      await echoThrough(`${proxy.url}websockify?token=context`, "after", context),
      "after",
    );
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("an auth plugin module (the README's example) allows the right bearer token, refuses others with 401 and its challenge", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  await Deno.writeTextFile(`${dir}/bearer`, "let-me-in\n");
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin",
    `${EXAMPLES}auth_bearer.ts`,
    "--auth-source",
    `@${dir}/bearer`,
  ]);
  try {
    assert.equal(
      await echoThrough(proxy.url, "allowed", { Authorization: "Bearer let-me-in" }),
      "allowed",
    );
    const anonymous = await RawClient.connect(proxy.port);
    const head = await anonymous.request(upgradeRequest());
    assert.match(head, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assert.match(head, /\r\nWWW-Authenticate: Bearer realm="websockify"\r\n/);
    assert.equal((await anonymous.readRest()).length, 0, "no body");
    anonymous.close();
    const wrong = await RawClient.connect(proxy.port);
    assert.match(
      await wrong.request(upgradeRequest({ Authorization: "Bearer let-me-out" })),
      /^HTTP\/1\.1 401 Unauthorized\r\n(.*\r\n)*WWW-Authenticate: Bearer realm="websockify", error="invalid_token"\r\n/,
    );
    wrong.close();
    await refused(proxy.url, { Authorization: "Bearer nope" });
    assert.ok(proxy.log.has(/authentication failed: 401 no bearer token/));
    assert.ok(proxy.log.has(/authentication failed: 401 wrong bearer token/));
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an auth plugin module's answers: false is 403, a refusal's status and headers are sent, a bad status, a throw or garbage is a 403 plugin error, a hang closes; it sees target, source and client", async () => {
  const target = echoTarget();
  const proxy = await startProxy([
    `127.0.0.1:${target.port}`,
    "--auth-plugin",
    `${FIXTURES}auth_behaviours.ts`,
    "--auth-source",
    "auth source",
  ], { plugin: 500 });
  const answer = async (behaviour: string) => {
    const client = await RawClient.connect(proxy.port);
    try {
      return await client.request(upgradeRequest({ "X-Behaviour": behaviour }));
    } finally {
      client.close();
    }
  };
  try {
    assert.equal(await echoThrough(proxy.url, "undefined allows"), "undefined allows");
    assert.equal(
      await echoThrough(proxy.url, "true allows", { "X-Behaviour": "true" }),
      "true allows",
    );
    assert.match(await answer("false"), /^HTTP\/1\.1 403 Forbidden\r\n/);
    const teapot = await answer("teapot");
    assert.match(teapot, /^HTTP\/1\.1 418 I'm a teapot\r\n/);
    assert.match(teapot, /\r\nX-Why: tea only\r\n/);
    for (const behaviour of ["bad-status", "bad-header", "throw", "garbage", "show"]) {
      assert.match(await answer(behaviour), /^HTTP\/1\.1 403 Forbidden\r\n/, behaviour);
    }
    const hanging = await RawClient.connect(proxy.port);
    await hanging.send(new TextEncoder().encode(upgradeRequest({ "X-Behaviour": "hang" })));
    assert.equal((await hanging.readRest(5000)).length, 0, "closed without an answer");
    hanging.close();
    const module = `${FIXTURES}auth_behaviours.ts`.replaceAll(".", "\\.");
    for (
      const line of [
        `authentication failed: 403 refused by ${module}`,
        "authentication failed: 418 no coffee",
        `403 plugin error: ${module} answered status 200: a refusal is 400 to 599`,
        `403 plugin error: ${module} answered a header name that is not a token \\("Bad Name"\\)`,
        `403 plugin error: ${module} threw: directory unreachable`,
        `403 plugin error: ${module} answered 42: undefined or true allow`,
        `403 \\{"target":\\{"host":"127\\.0\\.0\\.1","port":${target.port}\\},"source":"auth source","address":"127\\.0\\.0\\.1"\\}`,
        `auth plugin ${module}: no answer within 0\\.5 s`,
      ]
    ) {
      assert.ok(proxy.log.has(new RegExp(line)), `no log line like ${line}:\n${proxy.log.lines}`);
    }
    assert.equal(await echoThrough(proxy.url, "still served"), "still served");
  } finally {
    await proxy.stop();
    await target.close();
  }
});

Deno.test("the proxy as a process: a relative plugin path resolves against the start directory, a file: URL works, sources are handed over verbatim", async () => {
  const dir = await Deno.makeTempDir();
  const target = echoTarget();
  await Deno.writeTextFile(
    `${dir}/targets.json`,
    JSON.stringify({ vm1: { host: "127.0.0.1", port: target.port } }),
  );
  await Deno.writeTextFile(`${dir}/bearer`, "process-secret\n");
  const tokenPlugin = relative(dir, `${EXAMPLES}token_from_map.ts`);
  assert.match(tokenPlugin, /^\.\.\//);
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin",
    tokenPlugin,
    "--token-source",
    "targets.json",
    "--auth-plugin",
    pathToFileURL(`${EXAMPLES}auth_bearer.ts`).href,
    "--auth-source",
    "@bearer",
  ], { shell: `cd '${dir}' &&` });
  try {
    const port = await proxy.port();
    assert.equal(
      await echoThrough(`ws://127.0.0.1:${port}/websockify?token=vm1`, "through", {
        Authorization: "Bearer process-secret",
      }),
      "through",
    );
    assert.match(proxy.stderr, /targets generated by \.\.\/\S*token_from_map\.ts/);
  } finally {
    await proxy.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a plugin module that cannot be used stops the start: missing file, syntax error, init failure, no lookup or auth function (npm: too); the message names it, no stack trace", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/broken.ts`,
    'export function lookup(token: string) { return "a: ; }\n',
  );
  await Deno.writeTextFile(`${dir}/not_an_object.json`, "[1, 2]");
  const cases: [string[], RegExp][] = [
    [
      ["--token-plugin", "./no_such_plugin.ts"],
      /error: --token-plugin \.\/no_such_plugin\.ts: cannot load it: Module not found "file:\/\/\/\S*\/no_such_plugin\.ts"/,
    ],
    [
      ["--token-plugin", `${dir}/broken.ts`],
      /--token-plugin \S*broken\.ts: cannot load it: .*(Unterminated|Expected).* \(at file:\/\/\/\S*broken\.ts:1:\d+\)/,
    ],
    [
      ["--token-plugin", `${EXAMPLES}token_from_map.ts`],
      /--token-plugin \S*token_from_map\.ts: init failed: needs --token-source FILE/,
    ],
    [
      [
        "--token-plugin",
        `${EXAMPLES}token_from_map.ts`,
        "--token-source",
        `${dir}/not_an_object.json`,
      ],
      /init failed: \S*not_an_object\.json: not a JSON object/,
    ],
    [
      ["--token-plugin", `${EXAMPLES}auth_bearer.ts`],
      /exports no lookup function \(it exports auth: use it with --auth-plugin\)/,
    ],
    [
      ["127.0.0.1:1", "--auth-plugin", `${EXAMPLES}token_from_map.ts`, "--auth-source", "x"],
      /--auth-plugin \S*token_from_map\.ts: exports no auth function \(it exports lookup: use it with --token-plugin\)/,
    ],
    [
      ["--token-plugin", "npm:mime@4.1.2"],
      /--token-plugin npm:mime@4\.1\.2: exports no lookup function \(a token plugin exports function lookup/,
    ],
    [["--token-plugin", "my.module.Class"], /--token-plugin my\.module\.Class: not available/],
  ];
  try {
    await Promise.all(cases.map(async ([args, message]) => {
      const proxy = new ProxyProcess(["127.0.0.1:0", ...args]);
      const status = await proxy.status();
      assert.equal(status.code, 2, `${args.join(" ")}: ${proxy.stderr}`);
      assert.match(proxy.stderr, message);
      assert.doesNotMatch(proxy.stderr, /\n\s+at /, "no stack trace");
      assert.doesNotMatch(proxy.stderr, /Listen on/);
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the README shows the example plugins as they are", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  for (const name of ["token_from_map.ts", "auth_bearer.ts"]) {
    const source = await Deno.readTextFile(`${EXAMPLES}${name}`);
    assert.ok(readme.includes("```ts\n" + source + "```\n"), `README.md does not show ${name}`);
  }
});
