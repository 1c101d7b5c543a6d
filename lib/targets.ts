/**
 * Connecting a session to its target: TCP (IPv4, IPv6, names: every resolved address is tried) or a unix socket.
 *
 * @module
 */

import type { TargetSpec } from "./cli.ts";
import { formatHostPort } from "./log.ts";

/** `host:port`, the socket path, or `'cmd args' (port N)`, as log lines show a target. */
export function describeTarget(target: TargetSpec): string {
  switch (target.kind) {
    case "tcp":
      return formatHostPort(target.hostname, target.port);
    case "unix":
      return target.path;
    case "command":
      return `'${target.command.join(" ")}' (port ${target.port})`;
  }
}

/** How long a session waits for a wrapped program that is not listening yet (it may still be starting). */
export const WRAPPED_CONNECT_PATIENCE_MS = 5000;

/** Opens the connection to the target, with TCP_NODELAY for TCP (interactive protocols such as VNC). */
export async function connectTarget(target: TargetSpec): Promise<Deno.Conn | Deno.TlsConn> {
  switch (target.kind) {
    case "unix":
      return await Deno.connect({ transport: "unix", path: target.path });
    case "tcp": {
      if (target.tls) {
        // Verified against the system roots plus the optional CA file; SNI is sent for host names.
        const caCerts = target.tls.cafile
          ? [await Deno.readTextFile(target.tls.cafile)]
          : undefined;
        const conn = await Deno.connectTls({
          hostname: target.hostname,
          port: target.port,
          caCerts,
        });
        await conn.handshake();
        return conn;
      }
      const conn = await Deno.connect({ hostname: target.hostname, port: target.port });
      conn.setNoDelay(true);
      return conn;
    }
    case "command":
      return await connectWrapped(target.port);
  }
}

/**
 * A wrapped program's port is on 127.0.0.1 (IPv4 binds) or ::1 (IPv6 binds). Until it listens, retry briefly.
 */
async function connectWrapped(port: number): Promise<Deno.Conn> {
  const giveUp = performance.now() + WRAPPED_CONNECT_PATIENCE_MS;
  while (true) {
    for (const hostname of ["127.0.0.1", "::1"]) {
      try {
        const conn = await Deno.connect({ hostname, port });
        conn.setNoDelay(true);
        return conn;
      } catch (error) {
        const refused = error instanceof Deno.errors.ConnectionRefused ||
          error instanceof Deno.errors.AddrNotAvailable;
        if (!refused || (hostname === "::1" && performance.now() >= giveUp)) throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The message of a connect failure, as in `Failed to connect to H:P: <message>`. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
