// --record's format (lib/record.ts): payload escaping, checked against Python's own escaping.
import assert from "node:assert/strict";
import { escapeRecordPayload } from "../../lib/record.ts";

Deno.test("record escaping matches Python's unicode_escape (+ quote) for every byte value", async () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const python = await new Deno.Command("python3", {
    args: [
      "-c",
      "import sys; sys.stdout.write(bytes(range(256)).decode('latin-1').encode('unicode_escape').decode('ascii').replace(\"'\", \"\\\\'\"))",
    ],
    stdout: "piped",
  }).output();
  assert.equal(escapeRecordPayload(all), new TextDecoder().decode(python.stdout));
});
