// The single executable: what build.sh embeds is what the program reads (rebind.so, the built-in pages), and
// (where denort can be had) the built executable runs, wrap mode and built-in pages included.
import assert from "node:assert/strict";
import { BUILTIN_FILES, loadBuiltin } from "../../lib/builtin.ts";
import { REBIND_SO } from "../../lib/wrap.ts";
import { Opcode } from "../../lib/websocket/frames.ts";
import { PEERS, ROOT } from "../helpers/paths.ts";
import { ProxyProcess } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw_client.ts";

Deno.test("build.sh embeds rebind.so at the path lib/wrap.ts reads it from", () => {
  const script = Deno.readTextFileSync(`${ROOT}build.sh`);
  assert.match(script, /--include rebind\/rebind\.so/);
  assert.equal(decodeURIComponent(REBIND_SO.pathname), `${ROOT}rebind/rebind.so`);
  assert.match(script, /deno compile --frozen/);
  // --allow-all: LD_PRELOAD needs unscoped --allow-run, paths under /dev (--syslog=/dev/log) need all.
  assert.match(script, /--allow-all/);
});

/** A piece of the file that can only come from it: 200 characters of its longest line (from its middle). */
function fingerprint(body: Uint8Array): string {
  const longest = new TextDecoder().decode(body).split("\n").reduce((a, b) =>
    b.length > a.length ? b : a
  );
  const start = Math.max(0, Math.floor(longest.length / 2) - 100);
  return longest.slice(start, start + 200);
}

Deno.test("deno compile embeds every built-in page and module (this deno as a stand-in runtime base)", async () => {
  // build.sh's compile of main.ts, minus the runtime check: with this deno as the base the output does not run
  // as websockify (only denort does), but it carries the same embedded files.
  const dir = await Deno.makeTempDir();
  try {
    const output = `${dir}/websockify`;
    const compile = await new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "--frozen",
        "--no-check",
        "--allow-all",
        "--unstable-net",
        "--output",
        output,
        "main.ts",
      ],
      cwd: ROOT,
      env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const report = new TextDecoder().decode(compile.stdout) +
      new TextDecoder().decode(compile.stderr);
    assert.ok(compile.success, report);
    // The report lists the files of web/ by name; npm files are inside node_modules/*.
    for (const name of ["index.html", "wstelnet.html", "wsecho.html", "websock.js", "telnet.js"]) {
      assert.match(report, new RegExp(`\\b${name.replace(".", "\\.")}\\b`), report);
    }
    for (const name of BUILTIN_FILES.keys()) {
      const piece = fingerprint((await loadBuiltin(name)!).body);
      const grep = await new Deno.Command("grep", {
        args: ["-c", "-a", "-F", "-e", piece, output],
        stdout: "piped",
      }).output();
      assert.ok(grep.success, `/websockify/${name} is not in the executable`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const DENORT_BIN = Deno.env.get("DENORT_BIN");
if (!DENORT_BIN) {
  console.warn(
    "SKIP executable_test 'build.sh builds a working executable': deno compile needs denort, which cannot be " +
      "downloaded here; set DENORT_BIN=/path/to/denort to run it",
  );
}

Deno.test({
  name: "build.sh builds a working executable that carries rebind.so (needs DENORT_BIN)",
  ignore: !DENORT_BIN,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const output = `${dir}/websockify`;
      const build = await new Deno.Command(`${ROOT}build.sh`, {
        args: ["--output", output],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(build.success, new TextDecoder().decode(build.stderr));
      const help = await new Deno.Command(output, { args: ["--help"], stdout: "piped" }).output();
      assert.match(new TextDecoder().decode(help.stdout), /--wrap-mode=MODE/);
      // Wrap mode from the executable, far from the source tree: rebind.so comes from inside it.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const proxy = new ProxyProcess([], {
        shell:
          `cd / && exec ${output} ${port} -- python3 ${PEERS}wrapped_server.py echo ${port}; #`,
      });
      try {
        await proxy.port();
        const client = await RawClient.open(port);
        await client.sendFrame(Opcode.Binary, "from the executable");
        assert.equal(new TextDecoder().decode(await client.readData(19)), "from the executable");
        client.close();
        // The built-in pages and xterm.js come from inside the executable too.
        for (const name of ["wstelnet.html", "websock.js", "xterm/xterm.mjs"]) {
          const curl = await new Deno.Command("curl", {
            args: ["-s", "-f", `http://127.0.0.1:${port}/websockify/${name}`],
            stdout: "piped",
          }).output();
          assert.ok(curl.success, `/websockify/${name} from the executable`);
          assert.deepEqual(curl.stdout, (await loadBuiltin(name)!).body);
        }
      } finally {
        await proxy.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
