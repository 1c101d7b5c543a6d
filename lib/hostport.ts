/**
 * `host:port` text, both ways: the one reader of the listen and target arguments, token file targets and
 * `--syslog host[:port]`, and the one writer of addresses in log lines.
 *
 *     splitHostPort("[::1]:5900");  // { host: "::1", port: "5900" }
 *     parsePort("5900");            // 5900
 *     formatHostPort("::1", 5900);  // "[::1]:5900"
 *
 * @module
 */

/**
 * Splits `host:port`, `[v6]:port` or `v6:port` (a bare IPv6 address, then the port) at the last colon, brackets
 * removed from the host; undefined without a colon.
 */
export function splitHostPort(text: string): { host: string; port: string } | undefined {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return undefined;
  const host = text.slice(0, colon).replace(/^\[/, "").replace(/\]$/, "");
  return { host, port: text.slice(colon + 1) };
}

/**
 * `host[:port]`, where the port may be left out (`--syslog`): `host`, `[v6]` and a bare IPv6 address (several
 * colons, no brackets) are a host alone; anything else is split as `splitHostPort` does.
 */
export function splitHostOptionalPort(text: string): { host: string; port?: string } {
  const bracketed = /^\[([^\]]*)\]$/.exec(text);
  if (bracketed) return { host: bracketed[1] };
  const bareIpv6 = !text.startsWith("[") && text.indexOf(":") !== text.lastIndexOf(":");
  if (bareIpv6) return { host: text };
  return splitHostPort(text) ?? { host: text };
}

/** A decimal port, 1 to 65535 (0 too with `allowZero`); undefined for anything else. */
export function parsePort(text: string, allowZero = false): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 && (allowZero || port > 0) ? port : undefined;
}

/** `host:port`, with brackets around IPv6 literals. */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}
