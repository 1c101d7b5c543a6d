// Startup's pure parts (lib/startup.ts): settings resolved into new ones, file-system errors shortened.
import assert from "node:assert/strict";
import { parseCommandLine } from "../../lib/cli.ts";
import { fsReason, resolveSettings } from "../../lib/startup.ts";
import { escapeRegExp } from "../helpers/bytes.ts";

Deno.test("fsReason drops Deno's trailing operation and path", () => {
  assert.equal(
    fsReason(
      new Deno.errors.NotFound(
        "No such file or directory (os error 2): open '/x/y'",
      ),
    ),
    "No such file or directory (os error 2)",
  );
  assert.equal(
    fsReason(
      new Deno.errors.NotFound(
        "No such file or directory (os error 2): tmpfile",
      ),
    ),
    "No such file or directory (os error 2)",
  );
});

Deno.test("resolveSettings returns new settings with the real --web root and leaves the given ones alone", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    const command = parseCommandLine(["6080", "h:1", "--web", "link", "--cert", "none.pem"], dir);
    if (command.kind !== "run") throw new Error("not a run command");
    const given = structuredClone(command.settings);
    const resolved = await resolveSettings(command.settings);
    if ("problem" in resolved) throw new Error(resolved.problem.message);
    assert.equal(resolved.settings.web?.root, `${dir}/real`);
    assert.deepEqual(command.settings, given, "the parsed settings are unchanged");
    assert.deepEqual({ ...resolved.settings, web: given.web }, given, "only web.root differs");

    const missing = parseCommandLine(["6080", "h:1", "--web", "gone", "--cert", "none.pem"], dir);
    if (missing.kind !== "run") throw new Error("not a run command");
    const refused = await resolveSettings(missing.settings);
    assert.ok("problem" in refused);
    assert.equal(refused.problem.exitCode, 2);
    assert.match(refused.problem.message, new RegExp(`^--web '${escapeRegExp(dir)}/gone': `));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
