/**
 * The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2) as pure code: the header a load
 * balancer puts before a connection's first byte, parsed from bytes (`parseProxyHeader`), and the header the
 * proxy puts before a target connection's first byte (`encodeProxyHeader`). No sockets here: bytes in, a header
 * or a reason out.
 *
 *     const parsed = parseProxyHeader(bytes);
 *     if (parsed.kind === "header") {
 *       const rest = bytes.subarray(parsed.length); // the client's first bytes (a TLS hello, a request)
 *       parsed.header.addresses?.source;            // { family: "ipv4", address: "192.168.0.1", port: 56324 }
 *     }
 *     encodeProxyHeader("v1", source, destination); // "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
 *
 * The receiving side follows the specification's rules strictly (a header that is not exactly right is
 * refused, never guessed at): v1 is one line of printable ASCII ending in CRLF within 107 bytes, fields
 * separated by exactly one space, IPv4 addresses and ports without leading zeros; v2 has its 12-byte signature,
 * version 2, the LOCAL or PROXY command, a known family and transport, an address block as long as the family
 * needs, well-formed TLVs within the announced length, and a CRC32C TLV, when present, that matches. TLVs are
 * skipped otherwise; the header is bounded (`V2_MAX_PAYLOAD`). A prefix that can still become a valid header is
 * `incomplete`; anything else is `invalid` as soon as the first wrong byte is seen.
 *
 * @module
 */

/** The 12 bytes every v2 header starts with. */
export const V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);

/** The longest v1 line the specification allows, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses). */
export const V1_MAX_LENGTH = 107;

/**
 * The most bytes of addresses and TLVs accepted after v2's 16-byte header. The format allows 65,535; what
 * senders put there (216 bytes of unix addresses at most, then TLVs: an ALPN, a host name, a 128-byte unique
 * ID, TLS details, a cloud's endpoint ID) fits well within this.
 */
export const V2_MAX_PAYLOAD = 4096;

/** One end of the proxied connection: an IP address and port, or a unix socket path. */
export type ProxyAddress =
  | {
    readonly family: "ipv4" | "ipv6";
    /** Canonical text: dotted decimal, or RFC 5952 IPv6 (`::ffff:1.2.3.4` for an IPv4-mapped address). */
    readonly address: string;
    readonly port: number;
  }
  | {
    readonly family: "unix";
    /** The socket path (`@name` for a Linux abstract socket); may be empty (an unnamed client socket). */
    readonly path: string;
  };

/** A v2 type-length-value field. */
export interface ProxyTlv {
  readonly type: number;
  readonly value: Uint8Array;
}

/** The addresses of the connection the load balancer relays. */
export interface ProxyAddresses {
  /** v1 is always `stream` (TCP); v2 says `stream` (TCP, unix stream) or `dgram` (UDP, unix datagram). */
  readonly transport: "stream" | "dgram";
  /** The client. */
  readonly source: ProxyAddress;
  /** What the client connected to (the load balancer's address). */
  readonly destination: ProxyAddress;
}

/** A valid header. */
export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * `proxy`: a relayed connection; `local`: the load balancer's own connection (v2 LOCAL: a health check), whose
   * endpoints are the real ones.
   */
  readonly command: "proxy" | "local";
  /**
   * The relayed connection's addresses; undefined when the sender could not give them (v1 `UNKNOWN`, v2
   * `AF_UNSPEC` or an unspecified transport) or for LOCAL: the connection's own endpoints are then the ones to
   * use.
   */
  readonly addresses?: ProxyAddresses;
  /** v2's TLVs after the addresses, in order (none for v1, LOCAL and unspecified families). */
  readonly tlvs: readonly ProxyTlv[];
}

/** What the bytes so far are: a header (and how many bytes it takes), not yet one, or never one. */
export type ProxyParse =
  | { readonly kind: "header"; readonly header: ProxyHeader; readonly length: number }
  | { readonly kind: "incomplete" }
  | { readonly kind: "invalid"; readonly reason: string };

/** v2's TLV types this module reads. */
export const PP2_TYPE_CRC32C = 0x03;

const V1_PREFIX = "PROXY ";
const CR = 0x0d;
const LF = 0x0a;
const ascii = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/**
 * Reads a PROXY protocol header (v1 or v2) at the start of `bytes`. `length` counts the header's bytes: the
 * connection's own bytes follow. `incomplete` means the bytes so far are a prefix of a valid header.
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyParse {
  if (bytes.length === 0) return { kind: "incomplete" };
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  if (bytes[0] === V1_PREFIX.charCodeAt(0)) return parseV1(bytes);
  return notAHeader(bytes);
}

/** The reason for bytes that start no header: what they look like instead. */
function notAHeader(bytes: Uint8Array): ProxyParse {
  let looks: string;
  if (bytes[0] === 0x16 || bytes[0] === 0x80) {
    looks = "a TLS ClientHello";
  } else {
    const start = bytes.subarray(0, 32);
    const end = start.indexOf(CR);
    const text = ascii.decode(end > 0 ? start.subarray(0, end) : start);
    looks = JSON.stringify(text) + (end <= 0 && bytes.length > 32 ? "…" : "");
  }
  return {
    kind: "invalid",
    reason: `no PROXY protocol header: the connection starts with ${looks}`,
  };
}

function invalid(reason: string): ProxyParse {
  return { kind: "invalid", reason };
}

// ---- version 1: one text line --------------------------------------------------------------------------

function parseV1(bytes: Uint8Array): ProxyParse {
  for (let i = 0; i < Math.min(bytes.length, V1_PREFIX.length); i++) {
    if (bytes[i] !== V1_PREFIX.charCodeAt(i)) return notAHeader(bytes);
  }
  let end = -1;
  for (let i = 0; i < Math.min(bytes.length, V1_MAX_LENGTH); i++) {
    const byte = bytes[i];
    if (byte === CR) {
      if (i + 2 > V1_MAX_LENGTH) break;
      if (i + 1 === bytes.length) return { kind: "incomplete" };
      if (bytes[i + 1] !== LF) return invalid("v1 header: a CR not followed by LF");
      end = i;
      break;
    }
    if (byte === LF) return invalid("v1 header: a LF without CR before it");
    if (byte < 0x20 || byte > 0x7e) {
      return invalid(`v1 header: byte 0x${hex2(byte)} is not printable ASCII`);
    }
  }
  if (end < 0) {
    return bytes.length >= V1_MAX_LENGTH
      ? invalid(`v1 header: no CRLF within ${V1_MAX_LENGTH} bytes`)
      : { kind: "incomplete" };
  }
  const length = end + 2;
  const fields = ascii.decode(bytes.subarray(0, end)).split(" ");
  const protocol = fields[1];
  if (protocol === "UNKNOWN") {
    // The sender could not give addresses; whatever follows on the line is to be ignored.
    return { kind: "header", header: { version: 1, command: "proxy", tlvs: [] }, length };
  }
  if (protocol !== "TCP4" && protocol !== "TCP6") {
    return invalid(
      `v1 header: unknown protocol ${JSON.stringify(protocol)} (TCP4, TCP6 or UNKNOWN)`,
    );
  }
  if (fields.includes("")) {
    return invalid("v1 header: fields must be separated by exactly one space");
  }
  if (fields.length !== 6) {
    return invalid(
      `v1 header: ${protocol} needs 4 fields (addresses and ports), found ${fields.length - 2}`,
    );
  }
  const family = protocol === "TCP4" ? "ipv4" : "ipv6";
  const parseAddress = family === "ipv4" ? parseIpv4 : parseIpv6;
  const [sourceText, destinationText, sourcePortText, destinationPortText] = fields.slice(2);
  const source = parseAddress(sourceText);
  if (!source) return invalid(`v1 header: source ${JSON.stringify(sourceText)} is not ${family}`);
  const destination = parseAddress(destinationText);
  if (!destination) {
    return invalid(`v1 header: destination ${JSON.stringify(destinationText)} is not ${family}`);
  }
  const sourcePort = parseV1Port(sourcePortText);
  if (sourcePort === undefined) {
    return invalid(`v1 header: source port ${JSON.stringify(sourcePortText)} is not 0-65535`);
  }
  const destinationPort = parseV1Port(destinationPortText);
  if (destinationPort === undefined) {
    return invalid(
      `v1 header: destination port ${JSON.stringify(destinationPortText)} is not 0-65535`,
    );
  }
  const addresses: ProxyAddresses = {
    transport: "stream",
    source: { family, address: formatIp(source), port: sourcePort },
    destination: { family, address: formatIp(destination), port: destinationPort },
  };
  return { kind: "header", header: { version: 1, command: "proxy", addresses, tlvs: [] }, length };
}

/** A decimal port 0-65535 without leading zeros (they could be read as octal). */
function parseV1Port(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

// ---- version 2: binary ---------------------------------------------------------------------------------

const FAMILIES = ["unspec", "ipv4", "ipv6", "unix"] as const;
/** The address block each family needs (after the 16-byte header). */
const BLOCK_SIZE = { unspec: 0, ipv4: 12, ipv6: 36, unix: 216 } as const;
const UNIX_PATH_SIZE = 108;

function parseV2(bytes: Uint8Array): ProxyParse {
  for (let i = 0; i < Math.min(bytes.length, V2_SIGNATURE.length); i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) return notAHeader(bytes);
  }
  if (bytes.length < 13) return { kind: "incomplete" };
  const version = bytes[12] >> 4;
  if (version !== 2) return invalid(`v2 header: version ${version} (only 2 exists)`);
  const commandCode = bytes[12] & 0x0f;
  if (commandCode > 1) {
    return invalid(`v2 header: unknown command ${commandCode} (0 LOCAL, 1 PROXY)`);
  }
  if (bytes.length < 14) return { kind: "incomplete" };
  const familyCode = bytes[13] >> 4;
  const transportCode = bytes[13] & 0x0f;
  if (familyCode > 3) return invalid(`v2 header: unknown address family ${familyCode}`);
  if (transportCode > 2) return invalid(`v2 header: unknown transport protocol ${transportCode}`);
  if (bytes.length < 16) return { kind: "incomplete" };
  const payload = (bytes[14] << 8) | bytes[15];
  if (payload > V2_MAX_PAYLOAD) {
    return invalid(
      `v2 header: ${payload} bytes of addresses and TLVs announced (at most ${V2_MAX_PAYLOAD} accepted)`,
    );
  }
  const length = 16 + payload;
  if (bytes.length < length) return { kind: "incomplete" };
  const command = commandCode === 0 ? "local" : "proxy";
  const family = FAMILIES[familyCode];
  // LOCAL: the connection's own endpoints count, whatever the block holds; so do unspecified families and
  // transports. The block is skipped (its length was checked).
  if (command === "local" || family === "unspec" || transportCode === 0) {
    return { kind: "header", header: { version: 2, command, tlvs: [] }, length };
  }
  const size = BLOCK_SIZE[family];
  if (payload < size) {
    return invalid(`v2 header: ${payload} bytes of addresses, ${family} needs ${size}`);
  }
  const block = bytes.subarray(16, 16 + size);
  const transport = transportCode === 1 ? "stream" : "dgram";
  let addresses: ProxyAddresses;
  if (family === "unix") {
    addresses = {
      transport,
      source: { family, path: unixPath(block.subarray(0, UNIX_PATH_SIZE)) },
      destination: { family, path: unixPath(block.subarray(UNIX_PATH_SIZE)) },
    };
  } else {
    const width = family === "ipv4" ? 4 : 16;
    const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
    addresses = {
      transport,
      source: {
        family,
        address: formatIp(block.subarray(0, width)),
        port: view.getUint16(2 * width),
      },
      destination: {
        family,
        address: formatIp(block.subarray(width, 2 * width)),
        port: view.getUint16(2 * width + 2),
      },
    };
  }
  const tlvs = parseTlvs(bytes.subarray(16 + size, length));
  if (typeof tlvs === "string") return invalid(`v2 header: ${tlvs}`);
  const crc = tlvs.find((tlv) => tlv.type === PP2_TYPE_CRC32C);
  if (crc) {
    const problem = checkCrc(bytes.subarray(0, length), crc);
    if (problem) return invalid(`v2 header: ${problem}`);
  }
  return { kind: "header", header: { version: 2, command, addresses, tlvs }, length };
}

/** A sockaddr_un path: up to its first NUL; a Linux abstract name (leading NUL) as `@name`. */
function unixPath(field: Uint8Array): string {
  if (field[0] === 0) {
    let end = field.length;
    while (end > 1 && field[end - 1] === 0) end--;
    return end > 1 ? "@" + utf8.decode(field.subarray(1, end)) : "";
  }
  const nul = field.indexOf(0);
  return utf8.decode(nul < 0 ? field : field.subarray(0, nul));
}

/** The TLVs of `area` (exactly filling it), or why they are malformed. */
function parseTlvs(area: Uint8Array): ProxyTlv[] | string {
  const tlvs: ProxyTlv[] = [];
  let offset = 0;
  while (offset < area.length) {
    if (area.length - offset < 3) return `a truncated TLV (${area.length - offset} bytes left)`;
    const type = area[offset];
    const size = (area[offset + 1] << 8) | area[offset + 2];
    if (offset + 3 + size > area.length) {
      return `TLV type 0x${hex2(type)} of ${size} bytes runs past the header's end`;
    }
    tlvs.push({ type, value: area.slice(offset + 3, offset + 3 + size) });
    offset += 3 + size;
  }
  return tlvs;
}

/** The CRC32C TLV must hold the checksum of the whole header computed with its own value as zeros. */
function checkCrc(header: Uint8Array, tlv: ProxyTlv): string | undefined {
  if (tlv.value.length !== 4) return `a CRC32C TLV of ${tlv.value.length} bytes (4 expected)`;
  const zeroed = header.slice();
  const at = findTlvValue(zeroed, PP2_TYPE_CRC32C);
  zeroed.fill(0, at, at + 4);
  const expected = new DataView(tlv.value.buffer, tlv.value.byteOffset, 4).getUint32(0);
  const actual = crc32c(zeroed);
  return expected === actual
    ? undefined
    : `CRC32C mismatch (header says 0x${hex8(expected)}, bytes give 0x${hex8(actual)})`;
}

/** Where the value of the first TLV of `type` starts in a complete v2 header with addresses. */
function findTlvValue(header: Uint8Array, type: number): number {
  let offset = 16 + BLOCK_SIZE[FAMILIES[header[13] >> 4]];
  while (header[offset] !== type) offset += 3 + ((header[offset + 1] << 8) | header[offset + 2]);
  return offset + 3;
}

let crcTable: Uint32Array | undefined;

/** CRC-32C (Castagnoli, as in RFC 4960 appendix B and iSCSI): `crc32c("123456789") === 0xe3069283`. */
export function crc32c(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ---- sending: the header before a target connection's first byte -----------------------------------------

/**
 * The header that tells a target who the client is: `source` the client, `destination` what it connected to.
 * Two IPv4 addresses (or IPv4-mapped IPv6 ones) give TCP4 / AF_INET, other IP pairs TCP6 / AF_INET6 (an IPv4
 * address then mapped); two unix sockets give AF_UNIX in v2. Anything else (an unknown end, a unix socket in v1,
 * mixed kinds) gives `PROXY UNKNOWN` in v1 and the PROXY command with AF_UNSPEC in v2, so the target uses the
 * connection's own endpoints.
 */
export function encodeProxyHeader(
  version: "v1" | "v2",
  source: ProxyAddress | undefined,
  destination: ProxyAddress | undefined,
): Uint8Array {
  const pair = source && destination ? ipPair(source, destination) : undefined;
  if (version === "v1") {
    const line = pair
      ? `PROXY ${pair.width === 4 ? "TCP4" : "TCP6"} ${formatIp(pair.source)} ${
        formatIp(pair.destination)
      } ${pair.sourcePort} ${pair.destinationPort}\r\n`
      : "PROXY UNKNOWN\r\n";
    return new TextEncoder().encode(line);
  }
  if (pair) {
    const block = new Uint8Array(pair.width * 2 + 4);
    block.set(pair.source, 0);
    block.set(pair.destination, pair.width);
    const view = new DataView(block.buffer);
    view.setUint16(pair.width * 2, pair.sourcePort);
    view.setUint16(pair.width * 2 + 2, pair.destinationPort);
    return v2Header(0x21, pair.width === 4 ? 0x11 : 0x21, block);
  }
  if (source?.family === "unix" && destination?.family === "unix") {
    const encoder = new TextEncoder();
    const sourcePath = encoder.encode(source.path);
    const destinationPath = encoder.encode(destination.path);
    // A path must leave room for its NUL in sockaddr_un's 108 bytes.
    if (sourcePath.length < UNIX_PATH_SIZE && destinationPath.length < UNIX_PATH_SIZE) {
      const block = new Uint8Array(2 * UNIX_PATH_SIZE);
      block.set(sourcePath, 0);
      block.set(destinationPath, UNIX_PATH_SIZE);
      return v2Header(0x21, 0x31, block);
    }
  }
  return v2Header(0x21, 0x00, new Uint8Array(0));
}

function v2Header(versionCommand: number, familyTransport: number, block: Uint8Array): Uint8Array {
  const header = new Uint8Array(16 + block.length);
  header.set(V2_SIGNATURE);
  header[12] = versionCommand;
  header[13] = familyTransport;
  new DataView(header.buffer).setUint16(14, block.length);
  header.set(block, 16);
  return header;
}

/** Two IP ends in one width: both IPv4 when they can be, else both IPv6. */
function ipPair(source: ProxyAddress, destination: ProxyAddress) {
  if (source.family === "unix" || destination.family === "unix") return undefined;
  const a = ipBytes(source.address);
  const b = ipBytes(destination.address);
  if (!a || !b) return undefined;
  const a4 = asIpv4(a);
  const b4 = asIpv4(b);
  const both4 = a4 && b4;
  return {
    width: both4 ? 4 : 16,
    source: both4 ? a4 : toIpv6(a),
    destination: both4 ? b4 : toIpv6(b),
    sourcePort: source.port,
    destinationPort: destination.port,
  };
}

function ipBytes(text: string): Uint8Array | undefined {
  return parseIpv4(text) ?? parseIpv6(text.replace(/%.*$/, ""));
}

/** The IPv4 address of 4 bytes or of an IPv4-mapped IPv6 address. */
function asIpv4(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length === 4) return bytes;
  return isMappedIpv4(bytes) ? bytes.slice(12) : undefined;
}

function toIpv6(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const mapped = new Uint8Array(16);
  mapped[10] = mapped[11] = 0xff;
  mapped.set(bytes, 12);
  return mapped;
}

/**
 * A Deno address as a PROXY protocol end (a TCP address's zone index dropped; a name that is no IP address
 * gives undefined).
 */
export function fromDenoAddr(addr: Deno.Addr | undefined): ProxyAddress | undefined {
  if (!addr) return undefined;
  if (addr.transport === "tcp" || addr.transport === "udp") {
    const host = addr.hostname.replace(/%.*$/, "");
    if (parseIpv4(host)) return { family: "ipv4", address: host, port: addr.port };
    const v6 = parseIpv6(host);
    return v6 ? { family: "ipv6", address: formatIp(v6), port: addr.port } : undefined;
  }
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return { family: "unix", path: addr.path };
  }
  return undefined;
}

/** A PROXY protocol end as a Deno address (what log lines and plugins are given). */
export function toDenoAddr(address: ProxyAddress): Deno.Addr {
  return address.family === "unix"
    ? { transport: "unix", path: address.path }
    : { transport: "tcp", hostname: address.address, port: address.port };
}

// ---- IP address text -----------------------------------------------------------------------------------

/** Dotted decimal, exactly 4 numbers 0-255 without leading zeros; else undefined. */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return undefined;
    const value = Number(parts[i]);
    if (value > 255) return undefined;
    bytes[i] = value;
  }
  return bytes;
}

/**
 * IPv6 text as `inet_pton` reads it: eight groups of 1-4 hex digits, one `::` for one or more zero groups, an
 * IPv4 address as the last 32 bits; else undefined.
 */
export function parseIpv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = groups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1], true) : [];
  if (!head || !tail) return undefined;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const all = [...head, ...new Array(8 - count).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/** The 16-bit groups of one side of `::` (an IPv4 address allowed last where `v4Last`). */
function groups(part: string, v4Last: boolean): number[] | undefined {
  if (part === "") return [];
  const pieces = part.split(":");
  const out: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (v4Last && i === pieces.length - 1 && piece.includes(".")) {
      const v4 = parseIpv4(piece);
      if (!v4) return undefined;
      out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
      out.push(parseInt(piece, 16));
    } else {
      return undefined;
    }
  }
  return out;
}

function isMappedIpv4(bytes: Uint8Array): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * 4 bytes as dotted decimal; 16 bytes as RFC 5952 text (lower case, the longest run of two or more zero groups
 * as `::`, the first of equal runs), an IPv4-mapped address as `::ffff:a.b.c.d`.
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (isMappedIpv4(bytes)) return `::ffff:${bytes.subarray(12).join(".")}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]) => list.map((word) => word.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, "0");
}

// ---- receiving: the reads a header takes ---------------------------------------------------------------

/** A connection's start with --proxy-protocol: the header and the bytes after it, why it is refused, or EOF. */
export type ProxyReceived =
  | { readonly kind: "header"; readonly header: ProxyHeader; readonly rest: Uint8Array }
  | { readonly kind: "invalid"; readonly reason: string }
  | { readonly kind: "closed"; readonly received: number };

/**
 * Reads the header at the start of a connection: `first` (the bytes read so far), then `more()` for as long as
 * they are a prefix of a header (`more` gives undefined at EOF, and bounds its own wait). The bytes after the
 * header are handed back untouched. At most `16 + V2_MAX_PAYLOAD` bytes are ever collected: every read either
 * completes the header, refuses it, or adds bytes to a prefix that cannot grow past that.
 */
export async function receiveProxyHeader(
  first: Uint8Array,
  more: () => Promise<Uint8Array | undefined>,
): Promise<ProxyReceived> {
  let bytes = first;
  while (true) {
    const parsed = parseProxyHeader(bytes);
    if (parsed.kind === "header") {
      return { kind: "header", header: parsed.header, rest: bytes.slice(parsed.length) };
    }
    if (parsed.kind === "invalid") return parsed;
    const next = await more();
    if (!next) return { kind: "closed", received: bytes.length };
    const joined = new Uint8Array(bytes.length + next.length);
    joined.set(bytes);
    joined.set(next, bytes.length);
    bytes = joined;
  }
}

/** How a log line shows an accepted header: `PROXY v2 from 192.0.2.7:51234 to 10.0.0.1:443`. */
export function describeProxyHeader(header: ProxyHeader): string {
  const kind = `PROXY v${header.version}`;
  if (header.command === "local") return `${kind} LOCAL (the load balancer's own connection)`;
  if (!header.addresses) {
    return `${kind} without addresses (${header.version === 1 ? "UNKNOWN" : "AF_UNSPEC"})`;
  }
  const { source, destination, transport } = header.addresses;
  const end = (address: ProxyAddress) =>
    address.family === "unix"
      ? `unix:${address.path || "(unnamed)"}`
      : address.family === "ipv6"
      ? `[${address.address}]:${address.port}`
      : `${address.address}:${address.port}`;
  return `${kind} from ${end(source)} to ${end(destination)}${
    transport === "dgram" ? " (datagram)" : ""
  }`;
}
