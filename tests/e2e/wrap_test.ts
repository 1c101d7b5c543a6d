// Wrap mode with real programs: rebind.so moves their bind() to a free loopback port, and the proxy forwards.
import assert from "node:assert/strict";
import { Opcode } from "../../lib/websocket/frames.ts";
import { PEERS, ROOT } from "../helpers/paths.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const SERVER = `${PEERS}wrapped_server.py`;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Opens a session through the proxy and checks the wrapped program answers. */
async function echoThrough(port: number, text: string): Promise<void> {
  const client = await RawClient.open(port);
  try {
    await client.sendFrame(Opcode.Binary, text);
    assert.equal(new TextDecoder().decode(await client.readData(text.length)), text);
  } finally {
    client.close();
  }
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/\) Z /.test(stat); // a zombie is dead
  } catch {
    return false;
  }
}

async function reportOf(path: string): Promise<string> {
  await waitFor(
    () => {
      try {
        return Deno.readTextFileSync(path).includes("pid=");
      } catch {
        return false;
      }
    },
    10000,
    "the wrapped program's report",
  );
  return Deno.readTextFileSync(path);
}

Deno.test("python http.server bound to the wrapped port answers an HTTP request sent through a WebSocket", async () => {
  const port = freePort();
  const proxy = new ProxyProcess([
    String(port),
    "--",
    "python3",
    "-u",
    "-m",
    "http.server",
    String(port),
    "--bind",
    "0.0.0.0",
  ]);
  try {
    await proxy.port();
    const match = proxy.stderr.match(
      /proxying from :\d+ to 'python3 -u -m http\.server \d+ --bind 0\.0\.0\.0' \(port (\d+)\)/,
    );
    assert.ok(match, proxy.stderr);
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "GET / HTTP/1.0\r\n\r\n");
    const response = new TextDecoder().decode(await client.readData(15));
    assert.match(response, /^HTTP\/1\.0 200/);
    client.close();
    await waitFor(
      () => /Serving HTTP on 127\.0\.0\.1 port/.test(proxy.stdout),
      5000,
      "http.server's banner",
    );
    assert.match(proxy.stderr, new RegExp(`connecting to command: .* \\(port ${match[1]}\\)`));
  } finally {
    await proxy.stop();
  }
});

Deno.test("an IPv6 bind is moved to [::1] and served", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const proxy = new ProxyProcess(
    [String(port), "--", "python3", SERVER, "echo", String(port), "6"],
    {
      env: { WRAPPED_REPORT: `${dir}/report` },
    },
  );
  try {
    await proxy.port();
    assert.match(await reportOf(`${dir}/report`), /bound=::1:\d+/);
    await echoThrough(port, "over IPv6");
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a session that arrives before the program listens waits for it", async () => {
  const port = freePort();
  const proxy = new ProxyProcess([
    String(port),
    "--",
    "sh",
    "-c",
    `sleep 1.5; exec python3 ${SERVER} echo ${port}`,
  ]);
  try {
    await proxy.port();
    const started = performance.now();
    await echoThrough(port, "early"); // connects at once; the program binds 1.5 s later
    assert.ok(performance.now() - started >= 1000, "the session really waited");
  } finally {
    await proxy.stop();
  }
});

Deno.test("exit mode: the proxy stops when the program exits, with the program's exit code", async () => {
  const port = freePort();
  const proxy = new ProxyProcess([String(port), "--", "sh", "-c", "sleep 0.5; exit 3"]);
  const status = await proxy.status(15000);
  assert.equal(status.code, 3);
  assert.match(proxy.stderr, /Starting 'sh -c sleep 0\.5; exit 3'/);
  assert.match(proxy.stderr, /exited with 3; stopping/);
});

Deno.test("respawn mode: a program that exits after each connection serves the next one too", async () => {
  const port = freePort();
  const proxy = new ProxyProcess([
    String(port),
    "--wrap-mode=respawn",
    "--",
    "python3",
    SERVER,
    "one-shot",
    String(port),
  ]);
  try {
    await proxy.port();
    const starts = () => proxy.stderr.match(/Starting '/g)?.length ?? 0;
    for (const [i, text] of ["first", "second", "third"].entries()) {
      // A session that arrives while the old program is still exiting would meet its dying listener.
      await waitFor(() => starts() === i + 1, 5000, `start ${i + 1}`);
      await echoThrough(port, text);
    }
    // The third exit would be a fourth start within 10 s: throttled.
    await waitFor(() => /Command respawning too fast/.test(proxy.stderr), 5000, "throttle line");
  } finally {
    await proxy.stop();
  }
});

Deno.test("respawn mode: at most 3 starts in 10 s, with a log line when throttled", async () => {
  const port = freePort();
  const proxy = new ProxyProcess([String(port), "--wrap-mode=respawn", "--", "sh", "-c", "exit 0"]);
  try {
    await proxy.port();
    await waitFor(() => /Command respawning too fast/.test(proxy.stderr), 5000, "throttle line");
    await sleep(1000);
    assert.equal(proxy.stderr.match(/Starting '/g)?.length, 3, "no fourth start within the window");
    assert.ok(!proxy.exited);
  } finally {
    await proxy.stop();
  }
});

Deno.test("ignore mode: a program that forks into the background keeps being served", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const proxy = new ProxyProcess(
    [
      String(port),
      "--wrap-mode=ignore",
      "--",
      "sh",
      "-c",
      `python3 ${SERVER} echo ${port} & exit 0`,
    ],
    { env: { WRAPPED_REPORT: `${dir}/report` } },
  );
  let daemonPid = 0;
  try {
    await proxy.port();
    daemonPid = Number((await reportOf(`${dir}/report`)).match(/pid=(\d+)/)![1]);
    await sleep(300); // the launching shell has exited by now
    await echoThrough(port, "daemonized");
    assert.ok(!proxy.exited, "the proxy keeps running");
  } finally {
    if (daemonPid) Deno.kill(daemonPid, "SIGKILL");
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stopping the proxy: SIGTERM to the program, SIGKILL if it ignores it; exit 0", async () => {
  const dir = await Deno.makeTempDir();
  for (const mode of ["echo", "stubborn"]) {
    const port = freePort();
    const report = `${dir}/${mode}`;
    const proxy = new ProxyProcess([String(port), "--", "python3", SERVER, mode, String(port)], {
      env: { WRAPPED_REPORT: report },
    });
    await proxy.port();
    const pid = Number((await reportOf(report)).match(/pid=(\d+)/)![1]);
    await echoThrough(port, mode);
    const status = await proxy.stop();
    assert.equal(status.code, 0, proxy.stderr);
    await waitFor(() => !alive(pid), 2000, `${mode} program gone`);
    if (mode === "stubborn") assert.match(proxy.stderr, /ignored SIGTERM; killing it/);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("rebind.so is a private temporary copy, appended to an existing LD_PRELOAD, removed at exit", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const existing = `${dir}/existing.so`;
  // A harmless library to preload for the proxy's own process: an empty shared object.
  const built = await new Deno.Command("cc", {
    args: ["-shared", "-fPIC", "-o", existing, "-x", "c", "/dev/null"],
  }).output();
  assert.ok(built.success, new TextDecoder().decode(built.stderr));
  const proxy = new ProxyProcess([String(port), "--", "python3", SERVER, "echo", String(port)], {
    env: { WRAPPED_REPORT: `${dir}/report`, LD_PRELOAD: existing },
  });
  try {
    await proxy.port();
    const preload = (await reportOf(`${dir}/report`)).match(/preload=(\S+)/)![1];
    const [first, copy] = preload.split(":");
    assert.equal(first, existing);
    assert.match(copy, /\/websockify-rebind-[^/]+\/rebind\.so$/);
    assert.ok(!copy.startsWith(ROOT), "not the file in the source tree");
    assert.equal((await Deno.stat(copy.replace(/\/rebind\.so$/, ""))).mode! & 0o777, 0o700);
    await echoThrough(port, "private copy");
    await proxy.stop();
    await assert.rejects(Deno.stat(copy), Deno.errors.NotFound);
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the rebind helper script sets the variable names the library reads", async () => {
  const make = await new Deno.Command("make", { args: ["-s", "-C", `${ROOT}rebind`] }).output();
  assert.ok(make.success, new TextDecoder().decode(make.stderr));
  const output = await new Deno.Command(`${ROOT}rebind/rebind`, {
    args: [
      "17123",
      "17124",
      "python3",
      "-c",
      [
        "import socket",
        "s = socket.socket(); s.bind(('0.0.0.0', 17123)); print(s.getsockname())",
        "o = socket.socket(); o.bind(('0.0.0.0', 0)); print(o.getsockname()[0])",
      ].join("\n"),
    ],
    stdout: "piped",
  }).output();
  assert.ok(output.success);
  assert.equal(new TextDecoder().decode(output.stdout), "('127.0.0.1', 17124)\n0.0.0.0\n");
});

/** A copy of the project's runtime files without rebind.so, to run wrap mode from. */
async function treeWithoutLibrary(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/rebind`);
  await Deno.copyFile(`${ROOT}rebind/rebind.c`, `${dir}/rebind/rebind.c`);
  for (const file of ["main.ts", "deno.json", "deno.lock"]) {
    await Deno.copyFile(`${ROOT}${file}`, `${dir}/${file}`);
  }
  await Deno.mkdir(`${dir}/lib/websocket`, { recursive: true });
  for (const entry of Deno.readDirSync(`${ROOT}lib`)) {
    if (entry.isFile) await Deno.copyFile(`${ROOT}lib/${entry.name}`, `${dir}/lib/${entry.name}`);
  }
  for (const entry of Deno.readDirSync(`${ROOT}lib/websocket`)) {
    await Deno.copyFile(`${ROOT}lib/websocket/${entry.name}`, `${dir}/lib/websocket/${entry.name}`);
  }
  return dir;
}

Deno.test("without rebind.so: built on demand with a C compiler, else a clear error", async () => {
  const dir = await treeWithoutLibrary();
  try {
    const port = freePort();
    const run = (env: Record<string, string>) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-lock",
          `${dir}/main.ts`,
          String(port),
          "--",
          "sh",
          "-c",
          "exit 7",
        ],
        env: { NO_COLOR: "1", ...env },
        stdout: "null",
        stderr: "piped",
        signal: AbortSignal.timeout(30000),
      }).output();
    const built = await run({});
    assert.equal(built.code, 7, new TextDecoder().decode(built.stderr));
    const noCompiler = await run({ PATH: "/nonexistent" });
    assert.equal(noCompiler.code, 1);
    assert.match(
      new TextDecoder().decode(noCompiler.stderr),
      /rebind\.so not found and no C compiler to build it; build it with `make -C rebind`/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wrap mode command-line checks", async () => {
  for (
    const [args, pattern] of [
      [["6080", "--"], /no command to wrap/],
      [["127.0.0.1:0", "--", "true"], /needs a TCP listen port/],
      [["6080", "--wrap-mode=sometimes", "--", "true"], /invalid choice: 'sometimes'/],
    ] as const
  ) {
    const proxy = new ProxyProcess([...args]);
    assert.equal((await deadline(proxy.status(), 15000, "exit")).code, 2);
    assert.match(proxy.stderr, pattern);
  }
});
