/**
 * Connecting a session to its target: TCP (IPv4, IPv6, names: every resolved address is tried) or a unix socket.
 *
 * @module
 */

import type { TargetSpec } from "./cli.ts";
import { formatHostPort } from "./log.ts";

/** `host:port` or the socket path, as log lines show a target. */
export function describeTarget(target: TargetSpec): string {
  return target.kind === "tcp" ? formatHostPort(target.hostname, target.port) : target.path;
}

/** Opens the connection to the target, with TCP_NODELAY for TCP (interactive protocols such as VNC). */
export async function connectTarget(target: TargetSpec): Promise<Deno.Conn> {
  if (target.kind === "unix") {
    return await Deno.connect({ transport: "unix", path: target.path });
  }
  const conn = await Deno.connect({ hostname: target.hostname, port: target.port });
  conn.setNoDelay(true);
  return conn;
}

/** The message of a connect failure, as in `Failed to connect to H:P: <message>`. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
