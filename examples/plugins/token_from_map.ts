/**
 * A token plugin: the targets are a JSON object in the file named by --token-source, token -> target, read at
 * start and again on SIGHUP (`kill -HUP <pid>` after editing it). A target is "host:port", "[v6]:port", "unix_socket:/path", { "host": ..., "port": ... } or
 * { "unixSocket": ... }; the proxy checks each answer (a value that is none of these refuses that session).
 *
 *     echo '{"vm1": "10.0.0.11:5900", "vm2": {"host": "fd00::12", "port": 5900}}' > targets.json
 *     deno task start 6080 --token-plugin ./examples/plugins/token_from_map.ts --token-source targets.json
 */
import type { LookupContext, Target } from "../../lib/plugin_api.ts";

let targets = new Map<string, Target>();

/** Called once before the proxy listens; a throw stops the start with this message. */
export async function init(source?: string): Promise<void> {
  if (!source) throw new Error("needs --token-source FILE (a JSON object: token -> target)");
  const parsed: unknown = JSON.parse(await Deno.readTextFile(source));
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${source}: not a JSON object`);
  }
  targets = new Map(Object.entries(parsed as Record<string, Target>));
}

/** SIGHUP: the file again (a throw is logged, and the targets stay as they were). */
export const reload = init;

/** The token's target; undefined for an unknown token. */
export function lookup(token: string, _context: LookupContext): Target | undefined {
  return targets.get(token);
}
