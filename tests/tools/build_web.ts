/**
 * Builds the browser modules the proxy serves under /websockify/ from their TypeScript sources in web/: for each
 * `web/X.ts`, `web/X.js` (an ES module for browsers, types stripped, comments kept) and `web/X.d.ts` (its types,
 * for bundlers and editors). Both are checked in, so the proxy and the single executable need no compiler;
 * `tests/unit/web_build_test.ts` fails when they are not what this script makes from the sources.
 *
 *     deno task build:web           # rewrite web/*.js and web/*.d.ts
 *     deno task build:web --check   # only say which are out of date (exit 1)
 *
 * It uses npm `typescript` (a test-only dependency: tests/deno.json), one file at a time
 * (`transpileModule`, `transpileDeclaration`: no type checking here, `deno task check` does that), then
 * `deno fmt` so the output reads like the rest of the code.
 *
 * @module
 */

import ts from "typescript";

/** The sources, relative to web/. */
export const WEB_SOURCES = ["websock.ts", "telnet.ts", "wstest_records.ts"] as const;

/** The folder of the browser sources. */
export const WEB_DIR = new URL("../../web/", import.meta.url);

const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  newLine: ts.NewLineKind.LineFeed,
};
/** Declarations need every exported type written out (they are made from one file, without checking). */
const DECLARATION_OPTIONS: ts.CompilerOptions = {
  ...COMPILER_OPTIONS,
  declaration: true,
  isolatedDeclarations: true,
};

/** One output file: its name in web/ and its text. */
export interface WebOutput {
  name: string;
  text: string;
}

/** The JavaScript and the declarations made from one source (`name` relative to web/). */
export async function buildOne(name: string, source: string): Promise<WebOutput[]> {
  const base = name.replace(/\.ts$/, "");
  const header =
    `// Generated from web/${name} by \`deno task build:web\`: edit that file, then run the task.\n`;
  const js = ts.transpileModule(source, {
    compilerOptions: COMPILER_OPTIONS,
    fileName: name,
    reportDiagnostics: true,
  });
  const dts = ts.transpileDeclaration(source, {
    compilerOptions: DECLARATION_OPTIONS,
    fileName: name,
    reportDiagnostics: true,
  });
  const problems = [...(js.diagnostics ?? []), ...(dts.diagnostics ?? [])];
  if (problems.length > 0) {
    throw new Error(
      `web/${name}: ${
        problems.map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n")).join("; ")
      }`,
    );
  }
  // Deno (and JSR) take the types of the JavaScript from this directive; the DOM reference, which declaration
  // emit drops, says where Event and CloseEvent come from.
  const selfTypes = `/* @ts-self-types="./${base}.d.ts" */\n`;
  const dom = /^\/\/\/ <reference lib="dom" \/>/m.test(source)
    ? `/// <reference lib="dom" />\n`
    : "";
  return [
    { name: `${base}.js`, text: await format(header + selfTypes + js.outputText, "js") },
    { name: `${base}.d.ts`, text: await format(header + dom + dts.outputText, "ts") },
  ];
}

/** Every output, from the sources as they are on disk. */
export async function buildAll(): Promise<WebOutput[]> {
  const outputs: WebOutput[] = [];
  for (const name of WEB_SOURCES) {
    outputs.push(...await buildOne(name, await Deno.readTextFile(new URL(name, WEB_DIR))));
  }
  return outputs;
}

/** `deno fmt` of a text, with the project's line width. */
async function format(text: string, ext: "js" | "ts"): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--line-width=100", `--ext=${ext}`, "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  if (!output.success) {
    throw new Error(`deno fmt failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  let stale = 0;
  for (const output of await buildAll()) {
    const url = new URL(output.name, WEB_DIR);
    const current = await Deno.readTextFile(url).catch(() => undefined);
    if (current === output.text) continue;
    if (check) {
      console.error(`web/${output.name} is out of date: run deno task build:web`);
      stale++;
    } else {
      await Deno.writeTextFile(url, output.text);
      console.log(`wrote web/${output.name}`);
    }
  }
  if (stale > 0) Deno.exit(1);
}
