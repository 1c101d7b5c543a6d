// Startup catches mistakes: each bad path or address stops the real process before it listens, with the option
// and the path in the message and a non-zero exit, in the foreground and through the -D launcher.
import assert from "node:assert/strict";
import { DAEMON_ENV } from "../../lib/daemon.ts";
import { escapeRegExp } from "../helpers/bytes.ts";
import { ProxyProcess } from "../helpers/proxy.ts";

interface Case {
  what: string;
  args: string[];
  message: RegExp;
}

/** Runs each case as a real process (a few at a time): exit 1, the message on stderr, no banner. */
async function expectRefusals(
  cases: Case[],
  env: Record<string, string> = {},
): Promise<void> {
  for (let i = 0; i < cases.length; i += 4) {
    await Promise.all(
      cases.slice(i, i + 4).map(async ({ what, args, message }) => {
        const proxy = new ProxyProcess(["127.0.0.1:0", ...args], { env });
        const status = await proxy.status(20000);
        assert.equal(status.code, 1, `${what}: exit code\n${proxy.stderr}`);
        assert.match(proxy.stderr, message, what);
        assert.doesNotMatch(
          proxy.stderr,
          /Listen on|internal error/,
          `${what}: it must not start`,
        );
      }),
    );
  }
}

Deno.test("startup: a bad --pid-file, --log-file, --record, --token-source, --syslog stops the start, naming option and path", async () => {
  const dir = await Deno.makeTempDir();
  const missing = `${dir}/missing`;
  const file = `${dir}/file`;
  await Deno.writeTextFile(file, "not a directory\n");
  await Deno.writeTextFile(`${dir}/tokens`, "vm1: 127.0.0.1:5900\n");
  try {
    const cases: Case[] = [
      {
        what: "pid file in a missing directory",
        args: ["127.0.0.1:1", `--pid-file=${missing}/ws.pid`],
        message: new RegExp(
          `websockify: error: --pid-file '${
            escapeRegExp(missing)
          }/ws\\.pid': No such file or directory`,
        ),
      },
      {
        what: "log file under a regular file",
        args: ["127.0.0.1:1", `--log-file=${file}/ws.log`],
        message: new RegExp(
          `--log-file '${escapeRegExp(file)}/ws\\.log': Not a directory`,
        ),
      },
      {
        what: "record directory missing",
        args: ["127.0.0.1:1", `--record=${missing}/session`],
        message: new RegExp(
          `--record '${escapeRegExp(missing)}/session': cannot create files in '${
            escapeRegExp(missing)
          }': No such file`,
        ),
      },
      {
        what: "record directory is a file",
        args: ["127.0.0.1:1", `--record=${file}/session`],
        message: new RegExp(
          `--record '${escapeRegExp(file)}/session': .*Not a directory`,
        ),
      },
      ...[
        "TokenFile",
        "ReadOnlyTokenFile",
        "TokenFileName",
        "UnixDomainSocketDirectory",
      ].map((
        plugin,
      ) => ({
        what: `${plugin} source missing`,
        args: [`--token-plugin=${plugin}`, `--token-source=${missing}/tokens`],
        message: new RegExp(
          `--token-source '${escapeRegExp(missing)}/tokens': No such file or directory`,
        ),
      })),
      {
        what: "--target-config missing",
        args: [`--target-config=${missing}/tokens`],
        message: new RegExp(
          `--target-config '${escapeRegExp(missing)}/tokens': No such file`,
        ),
      },
      {
        what: "TokenFileName given a file",
        args: ["--token-plugin=TokenFileName", `--token-source=${dir}/tokens`],
        message: new RegExp(
          `--token-source '${escapeRegExp(dir)}/tokens': not a directory`,
        ),
      },
      {
        what: "syslog host that cannot resolve (.invalid never does, RFC 6761)",
        args: ["127.0.0.1:1", "--syslog=no-such-host.invalid:514"],
        message: /--syslog 'no-such-host\.invalid:514': cannot resolve 'no-such-host\.invalid'/,
      },
      {
        what: "syslog socket missing",
        args: ["127.0.0.1:1", `--syslog=${missing}/log`],
        message: new RegExp(
          `--syslog '${escapeRegExp(missing)}/log': No such file or directory`,
        ),
      },
      {
        what: "syslog path not a socket",
        args: ["127.0.0.1:1", `--syslog=${file}`],
        message: new RegExp(`--syslog '${escapeRegExp(file)}': not a socket`),
      },
      {
        what: "syslog bad port",
        args: ["127.0.0.1:1", "--syslog=[::1]:70000"],
        message: /--syslog '\[::1\]:70000': bad port/,
      },
    ];
    if (Deno.uid() !== 0) {
      // Root writes anywhere; others can be refused by the mode bits.
      await Deno.mkdir(`${dir}/readonly`, { mode: 0o500 });
      cases.push({
        what: "record directory not writable",
        args: ["127.0.0.1:1", `--record=${dir}/readonly/session`],
        message: new RegExp(
          `--record '${escapeRegExp(dir)}/readonly/session': .*Permission denied`,
        ),
      });
    }
    await expectRefusals(cases);
    // What a probe created is gone: the checks leave the directory as they found it.
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assert.deepEqual(left.sort(), [
      "file",
      "tokens",
      ...(Deno.uid() !== 0 ? ["readonly"] : []),
    ]);
  } finally {
    await Deno.chmod(`${dir}`, 0o700);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup: good paths pass the checks, which leave nothing behind; the pid file holds the pid until exit", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tokens`, "vm1: 127.0.0.1:5900\n");
  await Deno.mkdir(`${dir}/sockets`);
  const proxy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=UnixDomainSocketDirectory",
    `--token-source=${dir}/sockets`,
    `--pid-file=${dir}/ws.pid`,
    `--log-file=${dir}/ws.log`,
    `--record=${dir}/session`,
    "--syslog=localhost:9",
  ]);
  try {
    await proxy.port();
    assert.equal(
      Number((await Deno.readTextFile(`${dir}/ws.pid`)).trim()),
      proxy.child.pid,
    );
    const status = await proxy.stop();
    assert.equal(status.code, 0, proxy.stderr);
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assert.deepEqual(
      left.sort(),
      ["sockets", "tokens", "ws.log"],
      "pid file removed, no probe left",
    );
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup: 'Address already in use' names the address (TCP, every interface, unix socket)", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [listen, address] of [
        [`127.0.0.1:${port}`, `127.0.0.1:${port}`],
        [`${port}`, `[::]:${port}`],
      ]
    ) {
      const proxy = new ProxyProcess([listen, "127.0.0.1:1"]);
      assert.equal((await proxy.status()).code, 1);
      assert.match(
        proxy.stderr,
        new RegExp(
          `Opening socket failed: cannot listen on ${
            escapeRegExp(address)
          }: Address already in use`,
        ),
      );
    }
    const unix = new ProxyProcess([
      `--unix-listen=${dir}/missing/ws.sock`,
      "127.0.0.1:1",
    ]);
    assert.equal((await unix.status()).code, 1);
    assert.match(
      unix.stderr,
      new RegExp(
        `Opening socket failed: cannot listen on unix socket ${
          escapeRegExp(dir)
        }/missing/ws\\.sock: `,
      ),
    );
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup under -D: the launcher exits 1 with the reason, whether the launcher or the daemon found it", async () => {
  const dir = await Deno.makeTempDir();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    // Found by the launcher's own checks, before it detaches.
    const pidFile = new ProxyProcess([
      "-D",
      "127.0.0.1:0",
      "127.0.0.1:1",
      `--pid-file=${dir}/no/ws.pid`,
    ]);
    assert.equal((await pidFile.status(20000)).code, 1);
    assert.match(
      pidFile.stderr,
      new RegExp(
        `--pid-file '${escapeRegExp(dir)}/no/ws\\.pid': No such file or directory`,
      ),
    );
    // Found by the daemon (the port is taken): the launcher hears it through the status file.
    const inUse = new ProxyProcess(["-D", `127.0.0.1:${port}`, "127.0.0.1:1"]);
    assert.equal((await inUse.status(20000)).code, 1);
    assert.match(
      inUse.stderr,
      new RegExp(
        `daemon failed to start: Opening socket failed: cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`,
      ),
    );
    // The daemon's side of every check: run as the daemon runs, each reason reaches the status file.
    for (
      const [args, reason] of [
        [[`--record=${dir}/no/session`], `--record '${dir}/no/session'`],
        [[`--syslog=${dir}/no/log`], `--syslog '${dir}/no/log'`],
        [[`--log-file=${dir}/no/ws.log`], `--log-file '${dir}/no/ws.log'`],
      ] as const
    ) {
      const status = `${dir}/status`;
      const daemon = new ProxyProcess(["127.0.0.1:0", "127.0.0.1:1", ...args], {
        env: { [DAEMON_ENV]: status },
      });
      assert.equal((await daemon.status()).code, 1, daemon.stderr);
      const report = (await Deno.readTextFile(status)).trim();
      assert.ok(report.startsWith(`error: ${reason}: `), report);
      await Deno.remove(status);
    }
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});
