/**
 * `--allowed-origin`: which browser origins may open a WebSocket session. Pure code.
 *
 *     const allowed = ["https://novnc.example", "http://localhost:8080"].map(parseOrigin);
 *     originAllowed(allowed, "https://NoVNC.example:443");  // true (the same origin, serialized)
 *     originAllowed(allowed, undefined);                    // true: no Origin, no browser
 *
 * Origins are compared serialized, as browsers send them: scheme and host in lower case, the scheme's default
 * port dropped (`https://a.example:443` is `https://a.example`). `null` (sandboxed frames, `file:` pages) is an
 * origin like any other: allowed only when listed.
 *
 * A request without an Origin header passes: every browser sends one with a WebSocket handshake, and what the
 * check protects against is a page of another site opening a session with the browser's cookies or client
 * certificate (cross-site WebSocket hijacking). A client that is not a browser can send any Origin it likes, so
 * refusing the ones that send none would stop nobody, and would break command-line clients. To keep those out,
 * use an auth plugin, client certificates or a token.
 *
 * @module
 */

const SERIALIZED = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#\s]+)\/?$/;

/** An `--allowed-origin` value, serialized; throws an Error saying what an origin looks like. */
export function parseOrigin(text: string): string {
  if (text === "null") return text;
  const origin = serializeOrigin(text);
  if (origin === undefined) {
    throw new Error(
      `'${text}' is not an origin (scheme://host[:port], e.g. https://novnc.example, or null)`,
    );
  }
  return origin;
}

/**
 * `scheme://host[:port]` serialized (a trailing `/` dropped); undefined for anything else. http(s) and ws(s)
 * origins are serialized by the URL parser (IDN hosts as punycode, default ports dropped); other schemes'
 * are only lower-cased.
 */
export function serializeOrigin(text: string): string | undefined {
  const match = SERIALIZED.exec(text);
  if (!match) return undefined;
  const scheme = match[1].toLowerCase();
  if (!["http", "https", "ws", "wss"].includes(scheme)) {
    return `${scheme}://${match[2].toLowerCase()}`;
  }
  try {
    const url = new URL(`${scheme}://${match[2]}`);
    if (url.username || url.password) return undefined;
    return `${scheme}://${url.host}`;
  } catch {
    return undefined;
  }
}

/** Whether a request's Origin header (undefined: none) passes the allow-list (empty: any origin). */
export function originAllowed(allowed: readonly string[], origin: string | undefined): boolean {
  if (allowed.length === 0 || origin === undefined) return true;
  const serialized = origin === "null" ? origin : serializeOrigin(origin.trim());
  return serialized !== undefined && allowed.includes(serialized);
}
