// The PROXY protocol as pure code: HAProxy's specification (doc/proxy-protocol.txt) examples, every prefix of a
// header, malformed and truncated headers, and the headers the proxy sends.
import assert from "node:assert/strict";
import {
  crc32c,
  describeProxyHeader,
  encodeProxyHeader,
  formatIp,
  fromDenoAddr,
  parseIpv4,
  parseIpv6,
  parseProxyHeader,
  type ProxyAddress,
  type ProxyHeader,
  receiveProxyHeader,
  V1_MAX_LENGTH,
  V2_MAX_PAYLOAD,
  V2_SIGNATURE,
} from "../../lib/proxy_protocol.ts";

const text = (s: string) => new TextEncoder().encode(s);

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((part) => part instanceof Uint8Array ? part : Uint8Array.from(part));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const array of arrays) {
    out.set(array, at);
    at += array.length;
  }
  return out;
}

function header(bytes: Uint8Array): { header: ProxyHeader; length: number } {
  const parsed = parseProxyHeader(bytes);
  if (parsed.kind !== "header") {
    throw new assert.AssertionError({ message: JSON.stringify(parsed) });
  }
  return parsed;
}

function invalid(bytes: Uint8Array, pattern: RegExp): void {
  const parsed = parseProxyHeader(bytes);
  assert.equal(parsed.kind, "invalid", `${JSON.stringify(parsed)} for ${bytes}`);
  assert.match((parsed as { reason: string }).reason, pattern);
}

/** Every strict prefix of a valid header is incomplete; the whole is the header. */
function everyPrefixIncomplete(bytes: Uint8Array): void {
  for (let n = 0; n < bytes.length; n++) {
    assert.deepEqual(parseProxyHeader(bytes.subarray(0, n)), { kind: "incomplete" }, `prefix ${n}`);
  }
}

const ipv4 = (address: string, port: number): ProxyAddress => ({ family: "ipv4", address, port });
const ipv6 = (address: string, port: number): ProxyAddress => ({ family: "ipv6", address, port });

/** A v2 header: signature, version/command, family/transport, the block (length from it). */
function v2(versionCommand: number, familyTransport: number, block: number[] | Uint8Array) {
  const body = block instanceof Uint8Array ? block : Uint8Array.from(block);
  return concat(V2_SIGNATURE, [
    versionCommand,
    familyTransport,
    body.length >> 8,
    body.length & 0xff,
  ], body);
}

const IPV4_BLOCK = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb]; // 56324 -> 443

// ---- version 1 -----------------------------------------------------------------------------------------------

Deno.test("v1: the specification's TCP4 example before an HTTP request; the bytes after it are left", () => {
  const bytes = text(
    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n",
  );
  const { header: h, length } = header(bytes);
  assert.equal(length, 47);
  assert.deepEqual(h, {
    version: 1,
    command: "proxy",
    addresses: {
      transport: "stream",
      source: ipv4("192.168.0.1", 56324),
      destination: ipv4("192.168.0.11", 443),
    },
    tlvs: [],
  });
  assert.equal(new TextDecoder().decode(bytes.subarray(length, length + 3)), "GET");
  everyPrefixIncomplete(bytes.subarray(0, length));
});

Deno.test("v1: the longest lines (TCP4 56, TCP6 104, UNKNOWN worst case 107) and the 107-byte limit", () => {
  const tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  assert.equal(tcp4.length, 56);
  assert.equal(header(text(tcp4)).length, 56);
  const full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const tcp6 = `PROXY TCP6 ${full} ${full} 65535 65535\r\n`;
  assert.equal(tcp6.length, 104);
  assert.deepEqual(header(text(tcp6)).header.addresses?.source, ipv6(full, 65535));
  const worst = `PROXY UNKNOWN ${full} ${full} 65535 65535\r\n`;
  assert.equal(worst.length, V1_MAX_LENGTH);
  const unknown = header(text(worst + "rest"));
  assert.equal(unknown.length, 107);
  assert.deepEqual(unknown.header, { version: 1, command: "proxy", tlvs: [] });
  everyPrefixIncomplete(text(worst));
  // One byte more before the CRLF: no CRLF within 107 bytes, refused as soon as that is certain.
  const tooLong = `PROXY UNKNOWN ${full} ${full} 65535 655355\r\n`;
  invalid(text(tooLong), /no CRLF within 107 bytes/);
  invalid(text(tooLong.slice(0, 107)), /no CRLF within 107 bytes/);
  invalid(text("PROXY " + "x".repeat(200)), /no CRLF within 107 bytes/);
});

Deno.test("v1: UNKNOWN, short form and with anything before the CRLF", () => {
  assert.deepEqual(parseProxyHeader(text("PROXY UNKNOWN\r\n")), {
    kind: "header",
    header: { version: 1, command: "proxy", tlvs: [] },
    length: 15,
  });
  assert.equal(header(text("PROXY UNKNOWN whatever  it says\r\nGET")).length, 33);
});

Deno.test("v1: TCP6 forms as inet_ntop writes them, shown in RFC 5952 form", () => {
  const parsed = header(text("PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.7 1 65535\r\n")).header;
  assert.deepEqual(parsed.addresses?.source, ipv6("2001:db8::1", 1));
  assert.deepEqual(parsed.addresses?.destination, ipv6("::ffff:192.0.2.7", 65535));
  const zeros = header(text("PROXY TCP6 0:0:0:0:0:0:0:1 :: 0 0\r\n")).header;
  assert.deepEqual(zeros.addresses?.source, ipv6("::1", 0));
  assert.deepEqual(zeros.addresses?.destination, ipv6("::", 0));
});

Deno.test("v1: malformed lines are refused with the reason", () => {
  const cases: [string, RegExp][] = [
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", /LF without CR/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX", /CR not followed by LF/],
    ["PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n", /exactly one space/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n", /exactly one space/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n", /needs 4 fields.*found 3/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 80\r\n", /found 5/],
    ["PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n", /unknown protocol "TCP5"/],
    ["PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n", /unknown protocol "tcp4"/],
    ["PROXY\r\n", /no PROXY protocol header/],
    ["PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n", /source "192.168.0.01" is not ipv4/],
    ["PROXY TCP4 192.168.0.1 192.168.0.256 56324 443\r\n", /destination "192.168.0.256"/],
    ["PROXY TCP4 ::1 192.168.0.11 56324 443\r\n", /source "::1" is not ipv4/],
    ["PROXY TCP6 192.168.0.1 ::1 56324 443\r\n", /source "192.168.0.1" is not ipv6/],
    ["PROXY TCP6 1::2::3 ::1 56324 443\r\n", /not ipv6/],
    ["PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", /not ipv6/],
    ["PROXY TCP6 12345::1 ::1 1 2\r\n", /not ipv6/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n", /source port "056324"/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n", /destination port "65536"/],
    ["PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n", /source port "-1"/],
    ["PROXY TCP4 192.168.0.1\t192.168.0.11 56324 443\r\n", /byte 0x09 is not printable/],
    ["PROXY TCP4 192.168.0.\u00e9 1.1.1.1 1 1\r\n", /byte 0xe9 is not printable/],
  ];
  for (const [line, pattern] of cases) {
    invalid(new Uint8Array([...line].map((c) => c.charCodeAt(0))), pattern);
  }
});

Deno.test("no header: an HTTP request, a TLS hello, a lower-case proxy line are refused at once", () => {
  invalid(text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), /starts with "GET \/ HTTP\/1.1"$/);
  invalid(Uint8Array.of(0x16, 0x03, 0x01, 0x00), /starts with a TLS ClientHello/);
  invalid(text("proxy TCP4"), /no PROXY protocol header/);
  invalid(text("PROXX"), /no PROXY protocol header/);
  invalid(text("P" + "\x00"), /no PROXY protocol header/);
  // The first byte that cannot start a header decides: no wait for more.
  invalid(text("G"), /starts with "G"/);
  invalid(text("POST /x HTTP/1.1\r\n"), /starts with "POST \/x HTTP\/1.1"/);
  invalid(Uint8Array.of(0x0d, 0x0a, 0x47), /no PROXY protocol header/);
});

// ---- version 2 -----------------------------------------------------------------------------------------------

Deno.test("v2: PROXY over TCP/IPv4, the bytes after it left; every prefix incomplete", () => {
  const bytes = v2(0x21, 0x11, IPV4_BLOCK);
  assert.equal(bytes.length, 28);
  const withData = concat(bytes, text("GET /"));
  const { header: h, length } = header(withData);
  assert.equal(length, 28);
  assert.deepEqual(h, {
    version: 2,
    command: "proxy",
    addresses: {
      transport: "stream",
      source: ipv4("192.168.0.1", 56324),
      destination: ipv4("192.168.0.11", 443),
    },
    tlvs: [],
  });
  everyPrefixIncomplete(bytes);
});

Deno.test("v2: TCP/IPv6, UDP/IPv4, unix stream and abstract unix addresses", () => {
  const six = new Uint8Array(36);
  six.set(parseIpv6("2001:db8::7")!, 0);
  six.set(parseIpv6("::ffff:10.0.0.1")!, 16);
  six.set([0x30, 0x39, 0x00, 0x50], 32); // 12345 -> 80
  assert.deepEqual(header(v2(0x21, 0x21, six)).header.addresses, {
    transport: "stream",
    source: ipv6("2001:db8::7", 12345),
    destination: ipv6("::ffff:10.0.0.1", 80),
  });
  assert.equal(header(v2(0x21, 0x12, IPV4_BLOCK)).header.addresses?.transport, "dgram");
  const unix = new Uint8Array(216);
  unix.set(text("/run/client.sock"), 0);
  unix.set(text("\0abstract-name"), 108);
  assert.deepEqual(header(v2(0x21, 0x31, unix)).header.addresses, {
    transport: "stream",
    source: { family: "unix", path: "/run/client.sock" },
    destination: { family: "unix", path: "@abstract-name" },
  });
  assert.deepEqual(header(v2(0x21, 0x31, new Uint8Array(216))).header.addresses?.source, {
    family: "unix",
    path: "",
  });
});

Deno.test("v2: LOCAL (a health check) and AF_UNSPEC carry no addresses; their block is skipped", () => {
  assert.deepEqual(parseProxyHeader(v2(0x20, 0x00, [])), {
    kind: "header",
    header: { version: 2, command: "local", tlvs: [] },
    length: 16,
  });
  // LOCAL with addresses filled in anyway: ignored, and the length still counts.
  assert.deepEqual(parseProxyHeader(concat(v2(0x20, 0x11, IPV4_BLOCK), text("x"))), {
    kind: "header",
    header: { version: 2, command: "local", tlvs: [] },
    length: 28,
  });
  assert.deepEqual(header(v2(0x21, 0x00, [])).header, { version: 2, command: "proxy", tlvs: [] });
  // AF_INET with an unspecified transport: address information ignored.
  assert.deepEqual(header(v2(0x21, 0x10, IPV4_BLOCK)).header, {
    version: 2,
    command: "proxy",
    tlvs: [],
  });
});

Deno.test("v2: TLVs after the addresses are kept in order; NOOP and unknown types are fine", () => {
  const tlvs = [0x04, 0x00, 0x02, 0, 0, 0x02, 0x00, 0x03, 0x61, 0x62, 0x63, 0xe5, 0x00, 0x00];
  const parsed = header(v2(0x21, 0x11, [...IPV4_BLOCK, ...tlvs])).header;
  assert.deepEqual(parsed.tlvs.map((t) => [t.type, [...t.value]]), [
    [0x04, [0, 0]],
    [0x02, [0x61, 0x62, 0x63]],
    [0xe5, []],
  ]);
  assert.equal(parsed.addresses?.source.family, "ipv4");
});

Deno.test("v2: a CRC32C TLV is checked (HAProxy's proxy-v2-options crc32c)", () => {
  assert.equal(crc32c(text("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  const bytes = v2(0x21, 0x11, [...IPV4_BLOCK, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
  const sum = crc32c(bytes);
  new DataView(bytes.buffer).setUint32(bytes.length - 4, sum);
  assert.equal(header(bytes).header.tlvs[0].type, 0x03);
  bytes[bytes.length - 1] ^= 1;
  invalid(bytes, /CRC32C mismatch/);
  invalid(v2(0x21, 0x11, [...IPV4_BLOCK, 0x03, 0x00, 0x02, 0, 0]), /CRC32C TLV of 2 bytes/);
});

Deno.test("v2: malformed headers are refused with the reason", () => {
  invalid(v2(0x11, 0x11, IPV4_BLOCK), /version 1 \(only 2 exists\)/);
  invalid(v2(0x31, 0x11, IPV4_BLOCK), /version 3/);
  invalid(v2(0x22, 0x11, IPV4_BLOCK), /unknown command 2/);
  invalid(v2(0x21, 0x41, IPV4_BLOCK), /unknown address family 4/);
  invalid(v2(0x21, 0x13, IPV4_BLOCK), /unknown transport protocol 3/);
  invalid(v2(0x21, 0x11, IPV4_BLOCK.slice(0, 8)), /8 bytes of addresses, ipv4 needs 12/);
  invalid(v2(0x21, 0x21, IPV4_BLOCK), /12 bytes of addresses, ipv6 needs 36/);
  invalid(v2(0x21, 0x31, new Uint8Array(100)), /unix needs 216/);
  invalid(v2(0x21, 0x11, [...IPV4_BLOCK, 0x04, 0x00]), /truncated TLV/);
  invalid(
    v2(0x21, 0x11, [...IPV4_BLOCK, 0x04, 0x00, 0x05, 1, 2]),
    /TLV type 0x04 of 5 bytes runs past/,
  );
  // A wrong signature byte: refused at that byte, without waiting for more.
  const wrong = V2_SIGNATURE.slice(0, 7);
  wrong[6] = 0x0b;
  invalid(wrong, /no PROXY protocol header/);
});

Deno.test("v2: the announced length is bounded; a bounded one with TLVs up to it is read", () => {
  const big = v2(0x21, 0x11, [
    ...IPV4_BLOCK,
    0x04,
    0x0f,
    0xf1,
    ...new Uint8Array(V2_MAX_PAYLOAD - 15),
  ]);
  assert.equal(big.length, 16 + V2_MAX_PAYLOAD);
  assert.equal(header(big).length, 16 + V2_MAX_PAYLOAD);
  // Over the limit: refused from the 16-byte header alone, before any of the rest arrives.
  const over = concat(V2_SIGNATURE, [
    0x21,
    0x11,
    (V2_MAX_PAYLOAD + 1) >> 8,
    (V2_MAX_PAYLOAD + 1) & 0xff,
  ]);
  invalid(over, /4097 bytes of addresses and TLVs announced \(at most 4096/);
  invalid(concat(V2_SIGNATURE, [0x21, 0x11, 0xff, 0xff]), /65535 bytes/);
});

Deno.test("receiveProxyHeader: a header in pieces, the bytes after it untouched; EOF and garbage", async () => {
  const whole = concat(v2(0x21, 0x11, IPV4_BLOCK), Uint8Array.of(0x16, 0x03, 0x01));
  const pieces = [whole.subarray(3, 13), whole.subarray(13, 20), whole.subarray(20)];
  let reads = 0;
  const got = await receiveProxyHeader(whole.slice(0, 3), () => Promise.resolve(pieces[reads++]));
  assert.equal(reads, 3);
  assert.equal(got.kind, "header");
  assert.deepEqual([...(got as { rest: Uint8Array }).rest], [0x16, 0x03, 0x01]);
  const closed = await receiveProxyHeader(text("PROXY TCP4 1.2"), () => Promise.resolve(undefined));
  assert.deepEqual(closed, { kind: "closed", received: 14 });
  const garbage = await receiveProxyHeader(text("GET / HTTP/1.1\r\n"), () => {
    throw new Error("no read expected");
  });
  assert.equal(garbage.kind, "invalid");
  // A sender that trickles one byte at a time stops at 107 bytes of v1 without a CRLF.
  let count = 0;
  const trickled = await receiveProxyHeader(text("PROXY "), () => {
    count++;
    return Promise.resolve(text("x"));
  });
  assert.equal(trickled.kind, "invalid");
  assert.equal(count, 107 - 6);
});

// ---- sending -------------------------------------------------------------------------------------------------

Deno.test("encode v1: TCP4, TCP6, mixed families, IPv4-mapped, unix and missing ends", () => {
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(
    decode(encodeProxyHeader("v1", ipv4("192.168.0.1", 56324), ipv4("192.168.0.11", 443))),
    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
  );
  assert.equal(
    decode(encodeProxyHeader("v1", ipv6("2001:db8::1", 1), ipv6("::1", 2))),
    "PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
  );
  // A dual-stack listener sees IPv4 clients as IPv4-mapped: sent as TCP4.
  assert.equal(
    decode(encodeProxyHeader("v1", ipv6("::ffff:10.1.2.3", 5), ipv6("::ffff:127.0.0.1", 6080))),
    "PROXY TCP4 10.1.2.3 127.0.0.1 5 6080\r\n",
  );
  assert.equal(
    decode(encodeProxyHeader("v1", ipv4("10.1.2.3", 5), ipv6("::1", 6080))),
    "PROXY TCP6 ::ffff:10.1.2.3 ::1 5 6080\r\n",
  );
  const unix: ProxyAddress = { family: "unix", path: "/run/ws.sock" };
  assert.equal(decode(encodeProxyHeader("v1", unix, unix)), "PROXY UNKNOWN\r\n");
  assert.equal(decode(encodeProxyHeader("v1", ipv4("1.2.3.4", 1), undefined)), "PROXY UNKNOWN\r\n");
  // Every v1 header sent is one this module reads back the same.
  for (
    const [source, destination] of [
      [ipv4("0.0.0.0", 0), ipv4("255.255.255.255", 65535)],
      [ipv6("fe80::1", 1), ipv6("1:2:3:4:5:6:7:8", 2)],
    ]
  ) {
    assert.deepEqual(header(encodeProxyHeader("v1", source, destination)).header.addresses, {
      transport: "stream",
      source,
      destination,
    });
  }
});

Deno.test("encode v2: the exact bytes for a known address; IPv6, unix, and AF_UNSPEC", () => {
  assert.deepEqual(
    [...encodeProxyHeader("v2", ipv4("192.168.0.1", 56324), ipv4("192.168.0.11", 443))],
    [...V2_SIGNATURE, 0x21, 0x11, 0x00, 0x0c, ...IPV4_BLOCK],
  );
  const six = encodeProxyHeader("v2", ipv6("2001:db8::7", 12345), ipv4("10.0.0.1", 80));
  assert.equal(six.length, 16 + 36);
  assert.deepEqual([...six.subarray(12, 16)], [0x21, 0x21, 0x00, 0x24]);
  assert.deepEqual(header(six).header.addresses?.destination, ipv6("::ffff:10.0.0.1", 80));
  const unix = encodeProxyHeader(
    "v2",
    { family: "unix", path: "" },
    { family: "unix", path: "/run/ws.sock" },
  );
  assert.deepEqual([...unix.subarray(12, 16)], [0x21, 0x31, 0x00, 0xd8]);
  assert.deepEqual(header(unix).header.addresses?.destination, {
    family: "unix",
    path: "/run/ws.sock",
  });
  const unspec = encodeProxyHeader("v2", ipv4("1.2.3.4", 1), { family: "unix", path: "/x" });
  assert.deepEqual([...unspec], [...V2_SIGNATURE, 0x21, 0x00, 0x00, 0x00]);
  const longPath = { family: "unix" as const, path: "/".repeat(108) };
  assert.deepEqual([...encodeProxyHeader("v2", longPath, longPath).subarray(12)], [0x21, 0, 0, 0]);
});

Deno.test("addresses: strict IPv4, inet_pton IPv6, RFC 5952 text, Deno addresses", () => {
  assert.deepEqual([...parseIpv4("10.0.0.255")!], [10, 0, 0, 255]);
  for (
    const bad of [
      "10.0.0",
      "10.0.0.0.0",
      "010.0.0.1",
      "1.2.3.256",
      "1.2.3.",
      " 1.2.3.4",
      "1.2.3.+4",
    ]
  ) {
    assert.equal(parseIpv4(bad), undefined, bad);
  }
  const round = (s: string) => formatIp(parseIpv6(s)!);
  assert.equal(round("2001:0db8:0000:0000:0000:ff00:0042:8329"), "2001:db8::ff00:42:8329");
  assert.equal(round("1:0:0:2:0:0:0:3"), "1:0:0:2::3"); // the longest run
  assert.equal(round("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4"); // the first of equal runs
  assert.equal(round("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7"); // one zero group stays
  assert.equal(round("::"), "::");
  assert.equal(round("::1"), "::1");
  assert.equal(round("1::"), "1::");
  assert.equal(round("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
  assert.equal(round("64:ff9b::1.2.3.4"), "64:ff9b::102:304");
  for (
    const bad of [
      ":",
      ":::",
      "1:2",
      "1::2::3",
      ":1::",
      "1::2:",
      "1:2:3:4:5:6:7:8:9",
      "::g",
      "1.2.3.4::",
      "::1.2.3",
    ]
  ) {
    assert.equal(parseIpv6(bad), undefined, bad);
  }
  assert.equal(round("1:2:3:4:5:6:7::"), "1:2:3:4:5:6:7:0"); // "::" for one group, as inet_pton takes it
  assert.deepEqual(
    fromDenoAddr({ transport: "tcp", hostname: "::ffff:127.0.0.1", port: 5 }),
    ipv6("::ffff:127.0.0.1", 5),
  );
  assert.deepEqual(
    fromDenoAddr({ transport: "tcp", hostname: "fe80::1%eth0", port: 5 }),
    ipv6("fe80::1", 5),
  );
  assert.deepEqual(fromDenoAddr({ transport: "unix", path: "/s" }), { family: "unix", path: "/s" });
  assert.equal(fromDenoAddr({ transport: "tcp", hostname: "localhost", port: 5 }), undefined);
});

Deno.test("describeProxyHeader: what the log line says", () => {
  const said = (bytes: Uint8Array) => describeProxyHeader(header(bytes).header);
  assert.equal(
    said(v2(0x21, 0x11, IPV4_BLOCK)),
    "PROXY v2 from 192.168.0.1:56324 to 192.168.0.11:443",
  );
  assert.equal(said(text("PROXY TCP6 ::1 ::2 1 2\r\n")), "PROXY v1 from [::1]:1 to [::2]:2");
  assert.equal(said(text("PROXY UNKNOWN\r\n")), "PROXY v1 without addresses (UNKNOWN)");
  assert.equal(said(v2(0x20, 0x00, [])), "PROXY v2 LOCAL (the load balancer's own connection)");
});
