// The browser modules the proxy serves (web/*.js and web/*.d.ts) are what `deno task build:web` makes from their
// TypeScript sources: a source edited without running the task fails here.
import assert from "node:assert/strict";
import { buildAll, buildOne, WEB_DIR } from "../tools/build_web.ts";

Deno.test("web/*.js and web/*.d.ts are up to date with web/*.ts (else: deno task build:web)", async () => {
  for (const output of await buildAll()) {
    const current = await Deno.readTextFile(new URL(output.name, WEB_DIR));
    assert.ok(
      current === output.text,
      `web/${output.name} is out of date: run deno task build:web`,
    );
  }
});

Deno.test("build:web: types stripped, comments kept, the types beside; a source it cannot declare is refused", async () => {
  const source =
    `/** Adds. */\nexport function add(a: number, b: number): number {\n  return a + b;\n}\n`;
  const [js, dts] = await buildOne("add.ts", source);
  assert.equal(js.name, "add.js");
  assert.match(js.text, /\/\*\* Adds\. \*\/\nexport function add\(a, b\) \{/);
  assert.match(js.text, /@ts-self-types="\.\/add\.d\.ts"/);
  assert.equal(dts.name, "add.d.ts");
  assert.match(dts.text, /export declare function add\(a: number, b: number\): number;/);
  // Declarations come from one file without type checking: every export's type must be written out.
  await assert.rejects(
    () => buildOne("bad.ts", "export function f(x: number) {\n  return x;\n}\n"),
    /web\/bad\.ts: .*explicit return type/i,
  );
});
