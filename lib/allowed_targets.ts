/**
 * `--allowed-targets`: which targets a token plugin may send a session to. Pure parsing and matching.
 *
 *     const rules = parseAllowedTargets("vnc.internal:5900-5999, 10.20.0.0/16:*, [fd00::/8]:5900, unix:/run/vnc/*");
 *     targetAllowed(rules, { kind: "tcp", hostname: "10.20.3.4", port: 5901 });  // true
 *     targetAllowed(rules, { kind: "tcp", hostname: "10.21.0.1", port: 5901 });  // false
 *
 * Rules, comma-separated:
 * - `host:PORTS`: a host name, matched literally (case-insensitive, a trailing dot ignored). Names are never
 *   resolved here: a name only matches a name rule, so what a name resolves to at connect time cannot slip past
 *   the check (DNS answers change between a check and a connect).
 * - `a.b.c.d:PORTS`, `a.b.c.d/N:PORTS`, `[v6]:PORTS`, `[v6/N]:PORTS`: an address or a network (CIDR); they
 *   match targets written as IP addresses only (an IPv4-mapped IPv6 target, `::ffff:a.b.c.d`, as its IPv4
 *   address). An address with a zone (`fe80::1%eth0`) is no address here, so only a name rule could match it,
 *   and none can (`%` is not allowed in one).
 * - PORTS: `5900`, `5900-5999` (inclusive) or `*` (any).
 * - `unix:/path` (that socket) or `unix:/dir/*` (any socket under /dir, at any depth): unix socket targets,
 *   compared after `.` and `..` are resolved (symlinks are not followed: name a directory only trusted users
 *   can write to).
 *
 * @module
 */

import { normalize, resolve } from "node:path";
import { parsePort } from "./hostport.ts";
import { parseIpv4, parseIpv6 } from "./proxy_protocol.ts";
import type { TargetSpec } from "./settings.ts";

/** An inclusive range of ports. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** One allowed-targets rule; `text` is the rule as written (for messages). */
export type TargetRule =
  | {
    readonly kind: "host";
    readonly text: string;
    readonly host: string;
    readonly ports: PortRange;
  }
  | {
    readonly kind: "network";
    readonly text: string;
    /** 4 bytes (IPv4) or 16 (IPv6). */
    readonly address: Uint8Array;
    /** How many leading bits must match. */
    readonly prefix: number;
    readonly ports: PortRange;
  }
  | {
    readonly kind: "unix";
    readonly text: string;
    /** Absolute, normalized; ends with `/` when `under`. */
    readonly path: string;
    /** Any socket under the directory `path`, rather than that one socket. */
    readonly under: boolean;
  };

/**
 * Parses a comma-separated list of rules (blanks around each allowed). Throws an Error naming the rule and what
 * is wrong with it.
 */
export function parseAllowedTargets(text: string): TargetRule[] {
  const entries = text.split(",").map((entry) => entry.trim());
  if (entries.every((entry) => entry === "")) throw new Error("an empty list allows no target");
  return entries.filter((entry) => entry !== "").map((entry) => {
    try {
      return parseRule(entry);
    } catch (error) {
      throw new Error(`'${entry}': ${(error as Error).message}`);
    }
  });
}

function parseRule(text: string): TargetRule {
  if (text.startsWith("unix:")) return parseUnixRule(text, text.slice("unix:".length));
  let hostPart: string;
  let portPart: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") {
      throw new Error("expected [IPv6 address or network]:PORTS, e.g. [fd00::/8]:5900-5999");
    }
    hostPart = text.slice(1, close);
    portPart = text.slice(close + 2);
    const ports = parsePorts(portPart);
    const { address, prefix } = parseNetwork(hostPart, 6);
    return { kind: "network", text, address, prefix, ports };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw new Error("expected HOST:PORTS, e.g. vnc.internal:5900 or 10.0.0.0/8:*");
  hostPart = text.slice(0, colon);
  portPart = text.slice(colon + 1);
  if (hostPart.includes(":")) {
    throw new Error("an IPv6 address goes in brackets: [fd00::1]:5900, [fd00::/8]:5900-5999");
  }
  const ports = parsePorts(portPart);
  if (hostPart.includes("/") || /^[0-9.]+$/.test(hostPart)) {
    const { address, prefix } = parseNetwork(hostPart, 4);
    return { kind: "network", text, address, prefix, ports };
  }
  if (!/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/.test(hostPart) || hostPart.includes("..")) {
    throw new Error(
      `'${hostPart}' is not a host name (letters, digits, '-', '_' and dots; no wildcards)`,
    );
  }
  return { kind: "host", text, host: canonicalName(hostPart), ports };
}

function parseUnixRule(text: string, path: string): TargetRule {
  const under = path.endsWith("/*");
  const base = under ? path.slice(0, -1) : path;
  if (!base.startsWith("/")) {
    throw new Error("a unix socket rule is an absolute path: unix:/run/vnc/*");
  }
  if (base.includes("*")) throw new Error("'*' may only end a unix rule, as /*");
  const normalized = normalize(base);
  return {
    kind: "unix",
    text,
    path: under && !normalized.endsWith("/") ? `${normalized}/` : normalized,
    under,
  };
}

/** `ADDRESS` or `ADDRESS/BITS` of one family; throws with the reason. */
function parseNetwork(text: string, family: 4 | 6): { address: Uint8Array; prefix: number } {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const width = family === 4 ? 32 : 128;
  const address = family === 4 ? parseIpv4(addressText) : parseIpv6(addressText);
  if (!address) {
    throw new Error(
      family === 4
        ? `'${addressText}' is not an IPv4 address (four numbers 0-255)`
        : `'${addressText}' is not an IPv6 address`,
    );
  }
  let prefix = width;
  if (slash >= 0) {
    const bits = text.slice(slash + 1);
    prefix = /^[0-9]{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (!(prefix <= width)) throw new Error(`'/${bits}': a prefix length is 0 to ${width}`);
  }
  // An IPv4-mapped network ([::ffff:10.0.0.0/104]) is the IPv4 network it maps.
  if (family === 6 && isMappedIpv4(address) && prefix >= 96) {
    return { address: address.slice(12), prefix: prefix - 96 };
  }
  return { address, prefix };
}

/** `*`, `PORT` or `LOW-HIGH`; throws with the reason. */
function parsePorts(text: string): PortRange {
  if (text === "*") return { from: 1, to: 65535 };
  const dash = text.indexOf("-");
  const from = parsePort(dash < 0 ? text : text.slice(0, dash));
  const to = dash < 0 ? from : parsePort(text.slice(dash + 1));
  if (from === undefined || to === undefined) {
    throw new Error(`'${text}' is not a port (1-65535), a range LOW-HIGH, or *`);
  }
  if (from > to) throw new Error(`the range '${text}' is empty (LOW must not exceed HIGH)`);
  return { from, to };
}

function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function isMappedIpv4(bytes: Uint8Array): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The target host as an address (4 or 16 bytes; IPv4-mapped as IPv4), or undefined for a name. */
function targetAddress(hostname: string): Uint8Array | undefined {
  const v4 = parseIpv4(hostname);
  if (v4) return v4;
  const v6 = parseIpv6(hostname.replace(/^\[(.*)\]$/, "$1"));
  if (!v6) return undefined;
  return isMappedIpv4(v6) ? v6.slice(12) : v6;
}

function inNetwork(address: Uint8Array, network: Uint8Array, prefix: number): boolean {
  if (address.length !== network.length) return false;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== network[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (address[whole] & mask) === (network[whole] & mask);
}

/**
 * Whether `target` matches one of `rules`. TCP targets match host or network rules by their host and port; unix
 * targets match unix rules by their path (a relative one taken from the working directory, as it is connected);
 * any other kind of target matches nothing.
 */
export function targetAllowed(rules: readonly TargetRule[], target: TargetSpec): boolean {
  if (target.kind === "unix") {
    const path = resolve(target.path);
    return rules.some((rule) =>
      rule.kind === "unix" && (rule.under ? path.startsWith(rule.path) : path === rule.path)
    );
  }
  if (target.kind !== "tcp") return false;
  const { port } = target;
  const address = targetAddress(target.hostname);
  const name = address ? undefined : canonicalName(target.hostname);
  return rules.some((rule) => {
    if (rule.kind === "unix" || port < rule.ports.from || port > rule.ports.to) return false;
    if (rule.kind === "host") return rule.host === name;
    return address !== undefined && inNetwork(address, rule.address, rule.prefix);
  });
}
