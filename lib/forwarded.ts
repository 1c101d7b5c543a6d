/**
 * `--trusted-proxy`: which peers may name the client in their request head, and which address they name. Pure
 * code.
 *
 *     const trusted = parseTrustedProxies(["10.0.0.0/8", "::1"]);
 *     isTrusted(trusted, "10.1.2.3");                                  // true
 *     forwardedClient(new Map([["x-forwarded-for", "6.6.6.6, 192.0.2.7, 10.0.0.9"]]), trusted);
 *     // { address: "192.0.2.7", port: undefined, header: "X-Forwarded-For" }
 *
 * The headers are read in this order, the first one present deciding: RFC 7239 `Forwarded` (its `for=`
 * parameters), `X-Forwarded-For`, `X-Real-IP`. A list is read from the right (the hop nearest to us) to the
 * left: trusted addresses are our own proxies and are passed over, as are entries that name no address
 * (`unknown`, an obfuscated `_name`, garbage); the first address that is not trusted is the client. When every
 * address is trusted, the leftmost one is. Whatever a client writes can only be to the left of the address its
 * first trusted proxy appends, so it is never chosen.
 *
 * @module
 */

import { formatIp, parseIpv4, parseIpv6 } from "./proxy_protocol.ts";

/** An address range: `bytes` (4 for IPv4, 16 for IPv6) whose first `prefix` bits must match. */
export interface IpRange {
  /** As a log or message shows it: `10.0.0.0/8`, `::1/128`. */
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

/** The client a trusted proxy named, and the header that named it. */
export interface ForwardedClient {
  /** IPv4 dotted, IPv6 in RFC 5952 form (an IPv4-mapped address as IPv4). */
  readonly address: string;
  /** The port, when the header gave one. */
  readonly port: number | undefined;
  readonly header: "Forwarded" | "X-Forwarded-For" | "X-Real-IP";
}

/** One hop of a header: an address (and maybe its port), or an entry that names none. */
export type ForwardedNode =
  | { readonly kind: "address"; readonly bytes: Uint8Array; readonly port: number | undefined }
  | { readonly kind: "unknown" | "obfuscated" | "invalid" };

/**
 * An address as bytes: 4 for IPv4 (an IPv4-mapped IPv6 address included), 16 for IPv6; undefined for anything
 * else (a zone index `%eth0` included).
 */
export function parseIp(text: string): Uint8Array | undefined {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  if (!text.includes(":")) return undefined;
  const v6 = parseIpv6(text);
  if (!v6) return undefined;
  return isMapped(v6) ? v6.slice(12) : v6;
}

function isMapped(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * `--trusted-proxy` values: each a list of `ADDRESS[/PREFIX]` separated by commas (IPv4 or IPv6, brackets
 * allowed around IPv6; a bare address is one host). Throws an Error naming the entry at fault: not an
 * address, a prefix out of range, or bits set after the prefix (`10.1.2.3/8`: did you mean `10.0.0.0/8`?).
 */
export function parseTrustedProxies(values: readonly string[]): IpRange[] {
  const ranges: IpRange[] = [];
  for (const value of values) {
    for (const raw of value.split(",")) {
      const entry = raw.trim();
      if (entry === "") continue;
      ranges.push(parseRange(entry));
    }
  }
  return ranges;
}

function parseRange(entry: string): IpRange {
  const slash = entry.indexOf("/");
  let addressText = slash === -1 ? entry : entry.slice(0, slash);
  if (addressText.startsWith("[") && addressText.endsWith("]")) {
    addressText = addressText.slice(1, -1);
  }
  const v4 = parseIpv4(addressText);
  const v6 = v4 ? undefined : addressText.includes(":") ? parseIpv6(addressText) : undefined;
  if (!v4 && !v6) {
    throw new Error(`--trusted-proxy '${entry}': not an IP address or CIDR range`);
  }
  const width = v4 ? 32 : 128;
  let prefix = width;
  if (slash !== -1) {
    const prefixText = entry.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > width) {
      throw new Error(`--trusted-proxy '${entry}': the prefix length must be 0 to ${width}`);
    }
    prefix = Number(prefixText);
  }
  let bytes = (v4 ?? v6)!;
  // An IPv4-mapped range is the IPv4 range it maps (peers and headers are compared as IPv4).
  if (v6 && isMapped(v6) && prefix >= 96) {
    bytes = v6.slice(12);
    prefix -= 96;
  }
  const network = masked(bytes, prefix);
  const text = `${formatIp(network)}/${prefix}`;
  if (!network.every((byte, i) => byte === bytes[i])) {
    throw new Error(
      `--trusted-proxy '${entry}': bits set after the prefix (did you mean ${text}?)`,
    );
  }
  return { text, bytes: network, prefix };
}

/** `bytes` with every bit after the first `prefix` cleared. */
function masked(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] = bytes[i] & (0xff << (8 - bits)) & 0xff;
  }
  return out;
}

/** Whether the address (bytes as `parseIp` gives them) lies in one of the ranges. */
export function inRanges(ranges: readonly IpRange[], bytes: Uint8Array): boolean {
  return ranges.some((range) => {
    if (range.bytes.length !== bytes.length) return false;
    const whole = range.prefix >> 3;
    for (let i = 0; i < whole; i++) if (range.bytes[i] !== bytes[i]) return false;
    const rest = range.prefix & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    return (range.bytes[whole] & mask) === (bytes[whole] & mask);
  });
}

/**
 * Whether a peer's address text (as the socket gives it: IPv4, IPv6, IPv4-mapped, maybe with a zone index) lies
 * in one of the ranges. A name that is no address (a unix socket's path) never does.
 */
export function isTrusted(ranges: readonly IpRange[], hostname: string): boolean {
  if (ranges.length === 0) return false;
  const bytes = parseIp(hostname.replace(/%.*$/, ""));
  return bytes !== undefined && inRanges(ranges, bytes);
}

/**
 * One node of a header (RFC 7239 §6: `nodename [":" node-port]`, quotes already removed): `192.0.2.7`,
 * `192.0.2.7:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, a bare IPv6 address (as X-Forwarded-For writes it),
 * `unknown`, an obfuscated `_name` (its port ignored), else invalid. A port is 1 to 65535 or an obfuscated
 * `_port` (no port then).
 */
export function parseNode(text: string): ForwardedNode {
  const node = text.trim();
  if (node.toLowerCase() === "unknown") return { kind: "unknown" };
  if (/^_[A-Za-z0-9._-]+(:(_[A-Za-z0-9._-]+|[0-9]{1,5}))?$/.test(node)) {
    return { kind: "obfuscated" };
  }
  let host: string;
  let portText: string | undefined;
  if (node.startsWith("[")) {
    const close = node.indexOf("]");
    if (close === -1) return { kind: "invalid" };
    host = node.slice(1, close);
    const after = node.slice(close + 1);
    if (after !== "") {
      if (!after.startsWith(":")) return { kind: "invalid" };
      portText = after.slice(1);
    }
    if (!host.includes(":")) return { kind: "invalid" }; // brackets are for IPv6
  } else {
    const colons = node.split(":").length - 1;
    if (colons === 1) {
      [host, portText] = node.split(":");
    } else {
      host = node;
    }
  }
  const bytes = parseIp(host);
  if (!bytes) return { kind: "invalid" };
  if (portText === undefined || /^_[A-Za-z0-9._-]+$/.test(portText)) {
    return { kind: "address", bytes, port: undefined };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return { kind: "invalid" };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { kind: "invalid" };
  return { kind: "address", bytes, port };
}

/**
 * The `for=` nodes of a `Forwarded` value (repeated headers joined with commas), one per element in order: an
 * element without `for=` (or with two) gives an `unknown` node. Undefined when no element has a `for=` at all
 * (the header says nothing of clients). Parameter names are case-insensitive; values are tokens or quoted
 * strings (with `\` escapes); a `,` or `;` inside quotes is part of the value.
 */
export function parseForwardedFor(value: string): ForwardedNode[] | undefined {
  const nodes: ForwardedNode[] = [];
  let any = false;
  for (const element of splitElements(value)) {
    const found = element.filter(([name]) => name === "for");
    if (found.length === 1 && found[0][1] !== undefined) {
      any = true;
      nodes.push(parseNode(found[0][1]));
    } else {
      if (found.length > 0) any = true;
      nodes.push({ kind: found.length > 0 ? "invalid" : "unknown" });
    }
  }
  return any ? nodes : undefined;
}

/**
 * Splits a Forwarded value into elements (`,`) of pairs (`;`), outside quoted strings: each pair as its name
 * (lower case) and its value (unquoted; undefined when the quotes are not closed). Empty elements are dropped.
 */
function splitElements(value: string): [string, string | undefined][][] {
  const elements: [string, string | undefined][][] = [];
  let pairs: [string, string | undefined][] = [];
  let name = "";
  let text = "";
  /** `text` has more than whitespace (kept as a flag: trimming `text` at every quote is quadratic). */
  let textStarted = false;
  let inValue = false;
  let quoted: "no" | "open" | "closed" = "no";
  const endPair = () => {
    const trimmedName = name.trim().toLowerCase();
    if (inValue && trimmedName !== "") {
      pairs.push([
        trimmedName,
        quoted === "open" ? undefined : quoted === "no" ? text.trim() : text,
      ]);
    } else if (!inValue && name.trim() !== "") {
      pairs.push([trimmedName, undefined]);
    }
    name = "";
    text = "";
    textStarted = false;
    inValue = false;
    quoted = "no";
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted === "open") {
      if (c === "\\" && i + 1 < value.length) text += value[++i];
      else if (c === '"') quoted = "closed";
      else text += c;
      continue;
    }
    if (c === ";" || c === ",") {
      endPair();
      if (c === ",") {
        if (pairs.length > 0) elements.push(pairs);
        pairs = [];
      }
      continue;
    }
    if (!inValue) {
      if (c === "=") inValue = true;
      else name += c;
    } else if (c === '"' && quoted === "no" && !textStarted) {
      quoted = "open";
      text = "";
    } else if (quoted === "no") {
      text += c;
      if (!textStarted && c.trim() !== "") textStarted = true;
    }
    // (After a closing quote, anything up to the next separator is dropped.)
  }
  endPair();
  if (pairs.length > 0) elements.push(pairs);
  return elements;
}

/** The nodes of an `X-Forwarded-For` value (repeated headers joined with commas), left to right. */
export function parseXForwardedFor(value: string): ForwardedNode[] {
  return value.split(",").map((entry) => {
    const trimmed = entry.trim();
    const unquoted = trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')
      ? trimmed.slice(1, -1)
      : trimmed;
    return parseNode(unquoted);
  });
}

/**
 * The client a list names, read from the right: trusted addresses and entries without one are passed over;
 * the first untrusted address is the client; the leftmost address when all are trusted; undefined when the list
 * has no address at all.
 */
export function chooseFromList(
  nodes: readonly ForwardedNode[],
  trusted: readonly IpRange[],
): { bytes: Uint8Array; port: number | undefined } | undefined {
  let leftmost: { bytes: Uint8Array; port: number | undefined } | undefined;
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (node.kind !== "address") continue;
    if (!inRanges(trusted, node.bytes)) return node;
    leftmost = node;
  }
  return leftmost;
}

/**
 * The client a trusted proxy's request names (the caller has checked that the peer is trusted): from
 * `Forwarded` if it has a `for=`, else `X-Forwarded-For`, else `X-Real-IP` (the last one, if repeated).
 * Undefined when the header that decides names no address: the peer is then the client.
 */
export function forwardedClient(
  headers: ReadonlyMap<string, string>,
  trusted: readonly IpRange[],
): ForwardedClient | undefined {
  const forwarded = headers.get("forwarded");
  const forwardedNodes = forwarded === undefined ? undefined : parseForwardedFor(forwarded);
  let header: ForwardedClient["header"];
  let chosen: { bytes: Uint8Array; port: number | undefined } | undefined;
  if (forwardedNodes) {
    header = "Forwarded";
    chosen = chooseFromList(forwardedNodes, trusted);
  } else if (headers.get("x-forwarded-for")?.trim()) {
    header = "X-Forwarded-For";
    chosen = chooseFromList(parseXForwardedFor(headers.get("x-forwarded-for")!), trusted);
  } else if (headers.get("x-real-ip")?.trim()) {
    header = "X-Real-IP";
    const node = parseNode(headers.get("x-real-ip")!.split(",").at(-1)!);
    chosen = node.kind === "address" ? node : undefined;
  } else {
    return undefined;
  }
  return chosen && { address: formatIp(chosen.bytes), port: chosen.port, header };
}
