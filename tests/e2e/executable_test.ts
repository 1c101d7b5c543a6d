// The single executable: what build.sh embeds is what the program reads, and (where denort can be had) the
// built executable runs, wrap mode included.
import assert from "node:assert/strict";
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
      } finally {
        await proxy.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
