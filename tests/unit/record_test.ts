// --record's format (lib/record.ts): payload escaping, checked against Python's own escaping; the file a
// SessionRecorder writes (a temporary directory, no socket).
import assert from "node:assert/strict";
import { escapeRecordPayload, SessionRecorder } from "../../lib/record.ts";

const text = (s: string) => new TextEncoder().encode(s);

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

Deno.test("SessionRecorder: FILE.<n> holds the array opening, one timed entry per direction in order, then 'EOF'", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recorder = SessionRecorder.open(`${dir}/session`, 3);
    assert.equal(recorder.path, `${dir}/session.3`);
    recorder.fromTarget(text("RFB 003.008\n"));
    recorder.fromClient(new Uint8Array([0x01, 0x27, 0x5c, 0xff]));
    recorder.fromTarget(new Uint8Array(0));
    recorder.close();
    recorder.fromClient(text("after the end")); // ignored
    recorder.close(); // once only
    const written = await Deno.readTextFile(`${dir}/session.3`);
    assert.match(
      written,
      /^var VNC_frame_data = \[\n'\{(\d+)\{RFB 003\.008\\n',\n'\}(\d+)\}\\x01\\'\\\\\\xff',\n'\{(\d+)\{',\n'EOF'\];\n$/,
    );
    const times = [...written.matchAll(/^'[{}](\d+)[{}]/gm)].map((m) => Number(m[1]));
    assert.deepEqual(
      times,
      times.toSorted((a, b) => a - b),
      "times in milliseconds, never going back",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SessionRecorder.open never overwrites a file nor follows a link, dangling or not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/session.1`, "kept");
    assert.throws(
      () => SessionRecorder.open(`${dir}/session`, 1),
      /'.*\/session\.1' already exists \(not overwritten, links not followed\)/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/session.1`), "kept");
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/session.2`);
    assert.throws(() => SessionRecorder.open(`${dir}/session`, 2), /already exists/);
    await assert.rejects(Deno.lstat(`${dir}/elsewhere`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
