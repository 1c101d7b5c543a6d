/**
 * A token plugin for the --trusted-proxy tests: every lookup appends the client it was told about to the file
 * named by --token-source (`<address> <port or ->` per line); the target is 127.0.0.1 and the port of the
 * X-Target-Port header.
 */
import type { LookupContext, Target } from "../../lib/plugin_api.ts";

let file = "";

export function init(source?: string): void {
  if (!source) throw new Error("--token-source: the file to record clients in");
  file = source;
}

export function lookup(_token: string, context: LookupContext): Target | undefined {
  const { address, port } = context.client;
  Deno.writeTextFileSync(file, `${address} ${port ?? "-"}\n`, { append: true });
  const target = context.request.headers.get("x-target-port");
  return target ? `127.0.0.1:${target}` : undefined;
}
