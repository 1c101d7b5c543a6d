// Targets' pure parts (lib/targets.ts): the CA roots trusted toward a TLS target.
import assert from "node:assert/strict";
import { targetCaCerts } from "../../lib/targets.ts";

Deno.test("--ssl-target trusts the system CA bundle (as Python does) plus --ssl-target-cafile", async () => {
  const system = await Deno.readTextFile("/etc/ssl/certs/ca-certificates.crt").catch(() =>
    undefined
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/private.pem`, "PRIVATE CA");
    const roots = await targetCaCerts(`${dir}/private.pem`);
    assert.equal(roots.at(-1), "PRIVATE CA");
    if (system) assert.equal(roots[0], system);
    assert.deepEqual(await targetCaCerts(undefined), system ? [system] : []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
