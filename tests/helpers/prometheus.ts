/** Prometheus text exposition, read back for the tests (every line checked against the format). */

import assert from "node:assert/strict";

/** The samples of an exposition: `name{labels}` -> value; every line is checked against the format. */
export function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  assert.ok(text.endsWith("\n"));
  for (const line of text.trimEnd().split("\n")) {
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) {
      assert.match(line, /^# (HELP|TYPE) [a-z_]+ \S/);
      continue;
    }
    const match = line.match(
      /^([a-z_]+(?:\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})?) (\S+)$/,
    );
    assert.ok(match, `not a sample line: ${line}`);
    samples.set(match[1], Number(match[2]));
  }
  return samples;
}
