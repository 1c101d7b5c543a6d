// The README's commands as written: `deno task start` with the documented service options (syslog to a datagram
// socket under /dev), and a fresh machine that runs the proxy downloads only what the proxy needs.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { Opcode } from "../../lib/websocket/frames.ts";
import { ROOT } from "../helpers/paths.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { datagramReceiver, echoTarget } from "../helpers/targets.ts";
import { waitFor } from "../helpers/waits.ts";

const decoder = new TextDecoder();

/** The `start` task's deno flags, read from deno.json: `deno run <flags> main.ts`. */
function startTaskFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const words = (config.tasks.start as string).split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "run"]);
  assert.equal(words.at(-1), "main.ts");
  return words.slice(2, -1);
}

async function entries(dir: string): Promise<string[]> {
  const names = [];
  try {
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

function isRunning(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

Deno.test("the start task's permission flags are the executable's (build.sh) and let --syslog reach /dev paths", () => {
  const flags = startTaskFlags();
  // Deno grants paths under /dev (a syslog socket such as /dev/log) to --allow-all only; datagram sockets need
  // --unstable-net.
  assert.ok(
    flags.includes("--allow-all") || flags.includes("-A"),
    flags.join(" "),
  );
  assert.ok(flags.includes("--unstable-net"), flags.join(" "));
  const script = Deno.readTextFileSync(`${ROOT}build.sh`);
  const compile = script.slice(
    script.indexOf("deno compile"),
    script.indexOf("main.ts", script.indexOf("deno compile")),
  );
  for (const flag of flags) {
    assert.ok(compile.includes(flag), `build.sh compiles with ${flag}`);
  }
});

Deno.test("deno task start, as README's service example: -D, pid file, log file, syslog to a datagram socket under /dev; nothing left in TMPDIR", async () => {
  const dir = await Deno.makeTempDir();
  const tmp = `${dir}/tmp`;
  await Deno.mkdir(tmp);
  // /dev/log itself belongs to the system; /dev/shm is under /dev too, where Deno asks for --allow-all.
  let devDir = dir;
  try {
    devDir = await Deno.makeTempDir({
      dir: "/dev/shm",
      prefix: "websockify-test-",
    });
  } catch {
    console.warn(
      "setup_test: /dev/shm is not writable; the datagram socket goes to a temporary directory",
    );
  }
  const socket = `${devDir}/log`;
  const receiver = datagramReceiver(socket);
  const target = echoTarget();
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  let daemonPid = 0;
  try {
    await waitFor(
      () => receiver.text.includes("ready"),
      5000,
      "datagram receiver",
    );
    const launcher = new ProxyProcess([
      "-D",
      `--pid-file=${dir}/ws.pid`,
      `--log-file=${dir}/ws.log`,
      `--syslog=${socket}`,
      `127.0.0.1:${port}`,
      `127.0.0.1:${target.port}`,
    ], { task: "start", env: { TMPDIR: tmp } });
    assert.equal((await launcher.status(30000)).code, 0, launcher.stderr);
    assert.match(
      launcher.stderr,
      new RegExp(
        `daemon started: pid \\d+, listening on 127\\.0\\.0\\.1:${port}`,
      ),
    );
    daemonPid = Number((await Deno.readTextFile(`${dir}/ws.pid`)).trim());
    const client = await RawClient.open(port);
    await client.sendFrame(Opcode.Binary, "service");
    assert.equal(decoder.decode(await client.readData(7)), "service");
    client.close();
    // Facility daemon (3) with -D: <30> for info lines.
    await waitFor(
      () =>
        new RegExp(
          `<30>1 \\S+ \\S+ websockify ${daemonPid} - - WebSocket server settings:`,
        ).test(receiver.text),
      5000,
      "the daemon's banner in syslog",
    );
    Deno.kill(daemonPid, "SIGTERM");
    await waitFor(() => !isRunning(daemonPid), 10000, "daemon exit");
    daemonPid = 0;
    assert.match(
      await Deno.readTextFile(`${dir}/ws.log`),
      /SIGTERM received, shutting down/,
    );
    assert.deepEqual(
      await entries(tmp),
      [],
      "the daemon's temporary files are removed",
    );

    // In the foreground, stopped through deno task (it forwards SIGTERM): the same cleanup.
    const foreground = new ProxyProcess([
      "127.0.0.1:0",
      "127.0.0.1:1",
      `--syslog=${socket}`,
    ], {
      task: "start",
      env: { TMPDIR: tmp },
    });
    await foreground.port(30000);
    await waitFor(
      () => /<14>1 .* - - {3}- proxying from/.test(receiver.text),
      5000,
      "syslog lines",
    );
    assert.equal((await foreground.stop()).code, 0, foreground.stderr);
    assert.deepEqual(
      await entries(tmp),
      [],
      "no websockify-syslog-* folder left",
    );
  } finally {
    if (daemonPid) Deno.kill(daemonPid, "SIGKILL");
    await receiver.stop();
    await target.close();
    if (devDir !== dir) await Deno.remove(devDir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

/** Copies the project's sources (no node_modules, no .git) to `to`. */
async function copyProject(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (["node_modules", ".git", "dist", "results"].includes(entry.name)) {
      continue;
    }
    if (entry.isDirectory) {
      await copyProject(`${from}/${entry.name}`, `${to}/${entry.name}`);
    } else if (entry.isFile) {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

/** npm package names in a DENO_DIR's cache (`npm/<registry>/<name>`, scopes flattened) and a node_modules. */
async function npmPackages(
  denoDir: string,
  project: string,
): Promise<string[]> {
  const names = new Set<string>();
  for (const registry of await entries(`${denoDir}/npm`)) {
    for (const name of await entries(`${denoDir}/npm/${registry}`)) {
      if (!name.startsWith("@")) names.add(name);
      else {for (
          const sub of await entries(`${denoDir}/npm/${registry}/${name}`)
        ) names.add(`${name}/${sub}`);}
    }
  }
  for (const name of await entries(`${project}/node_modules`)) {
    if (!name.startsWith(".")) names.add(name);
  }
  for (const name of await entries(`${project}/node_modules/.deno`)) {
    if (name !== "node_modules" && !name.startsWith(".")) {
      names.add(name.replace(/@[^@]+$/, ""));
    }
  }
  return [...names].sort();
}

async function run(args: string[], cwd: string, denoDir: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { DENO_DIR: denoDir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("a fresh machine: deno task start downloads only what the proxy needs (no ws, no playwright-core); the test command still gets them", async () => {
  const dir = await Deno.makeTempDir();
  const project = `${dir}/project`;
  const denoDir = `${dir}/deno_dir`;
  try {
    await copyProject(ROOT.replace(/\/$/, ""), project);
    const locks = [
      await Deno.readTextFile(`${project}/deno.lock`),
      await Deno.readTextFile(`${project}/tests/deno.lock`),
    ];
    const start = await run(["task", "start", "--help"], project, denoDir);
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, /--unix-listen/);
    const proxyPackages = await npmPackages(denoDir, project);
    assert.ok(
      proxyPackages.includes("mime"),
      `the check sees downloads: ${proxyPackages}`,
    );
    assert.deepEqual(
      proxyPackages.filter((name) => name === "ws" || name === "playwright-core"),
      [],
      proxyPackages.join(" "),
    );

    // CI's install commands and the README's test command (type-checking the files that import the test-only
    // packages, running none) work from the same lock files, unchanged.
    for (
      const args of [["install", "--frozen"], [
        "install",
        "--frozen",
        "--config",
        "tests/deno.json",
      ]]
    ) {
      const install = await run(args, project, denoDir);
      assert.equal(install.code, 0, `${args.join(" ")}: ${install.stderr}`);
    }
    const test = await run(
      [
        "task",
        "test",
        "tests/e2e/proxy_test.ts",
        "tests/e2e/browser_test.ts",
        "--filter=no test has this name",
      ],
      project,
      denoDir,
    );
    assert.equal(test.code, 0, test.stderr + test.stdout);
    assert.match(test.stdout, /ok \| 0 passed \| 0 failed/);
    const testPackages = (await entries(`${project}/tests/node_modules`))
      .filter((n) => !n.startsWith("."));
    assert.deepEqual(testPackages, [
      "@novnc",
      "@peculiar",
      "@xterm",
      "jose",
      "mime",
      "playwright-core",
      "typescript",
      "ws",
    ]);
    assert.deepEqual(
      [
        await Deno.readTextFile(`${project}/deno.lock`),
        await Deno.readTextFile(`${project}/tests/deno.lock`),
      ],
      locks,
      "the lock files are unchanged",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task start from another folder: relative paths are the user's (INIT_CWD), not the project's", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tokens.cfg`, "vm1: 127.0.0.1:5900\n");
  // As a user's shell runs it: no INIT_CWD inherited from this test's own `deno task test`.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "--config",
      `${ROOT}deno.json`,
      "start",
      "127.0.0.1:0",
      "--token-plugin=TokenFile",
      "--token-source=tokens.cfg",
      "--pid-file=proxy.pid",
    ],
    cwd: dir,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
  })();
  try {
    await waitFor(
      () => /Listen on/.test(stderr) || /error/.test(stderr),
      15_000,
      "the banner or an error",
    );
    assert.doesNotMatch(stderr, /error/, stderr);
    await waitFor(() => existsSync(`${dir}/proxy.pid`), 5000, "the pid file in the user's folder");
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* it already exited (with the error above) */ }
    await child.status;
    await reading;
    await Deno.remove(dir, { recursive: true });
  }
});
