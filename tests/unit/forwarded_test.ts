// --trusted-proxy (lib/forwarded.ts): ranges, header parsing and the choice of the client, without sockets.
import assert from "node:assert/strict";
import {
  forwardedClient,
  isTrusted,
  parseForwardedFor,
  parseNode,
  parseTrustedProxies,
  parseXForwardedFor,
} from "../../lib/forwarded.ts";

Deno.test("trusted ranges: IPv4, IPv6, bare addresses, lists, brackets, IPv4-mapped", () => {
  const ranges = parseTrustedProxies([
    "10.0.0.0/8, 192.168.1.1",
    "::1",
    "[fd00::]/8",
    "2001:db8::/32",
  ]);
  assert.deepEqual(ranges.map((range) => range.text), [
    "10.0.0.0/8",
    "192.168.1.1/32",
    "::1/128",
    "fd00::/8",
    "2001:db8::/32",
  ]);
  const inside = [
    "10.0.0.0",
    "10.255.255.255",
    "192.168.1.1",
    "::ffff:10.1.2.3", // an IPv4 client of a dual-stack socket
    "::ffff:192.168.1.1",
    "::1",
    "0:0:0:0:0:0:0:1",
    "fd12:3456::1",
    "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8:ffff::1",
    "fe80::1%eth0".replace("fe80::1", "fd00::1"), // a zone index is not part of the address
  ];
  for (const address of inside) assert.ok(isTrusted(ranges, address), address);
  const outside = [
    "11.0.0.0",
    "9.255.255.255",
    "192.168.1.2",
    "::2",
    "fc00::1",
    "fe00::1",
    "2001:db9::1",
    "::ffff:11.0.0.1",
    "/run/ws.sock",
    "localhost",
    "",
  ];
  for (const address of outside) assert.ok(!isTrusted(ranges, address), address);
  // An IPv4-mapped range is its IPv4 range.
  const mapped = parseTrustedProxies(["::ffff:127.0.0.0/104"]);
  assert.deepEqual(mapped.map((range) => range.text), ["127.0.0.0/8"]);
  assert.ok(isTrusted(mapped, "127.0.0.2"));
  assert.ok(isTrusted(mapped, "::ffff:127.9.9.9"));
  // /0 trusts a whole family, not the other one.
  const all4 = parseTrustedProxies(["0.0.0.0/0"]);
  assert.ok(isTrusted(all4, "203.0.113.9"));
  assert.ok(!isTrusted(all4, "2001:db8::1"));
  // Odd prefixes.
  const odd = parseTrustedProxies(["172.16.0.0/12", "2001:db8:8000::/33"]);
  assert.ok(isTrusted(odd, "172.31.255.255"));
  assert.ok(!isTrusted(odd, "172.32.0.0"));
  assert.ok(isTrusted(odd, "2001:db8:ffff::"));
  assert.ok(!isTrusted(odd, "2001:db8:7fff::"));
  assert.ok(!isTrusted([], "127.0.0.1"));
});

Deno.test("trusted ranges: mistakes are refused with the entry named", () => {
  const cases: [string, RegExp][] = [
    ["10.1.2.3/8", /'10\.1\.2\.3\/8': bits set after the prefix \(did you mean 10\.0\.0\.0\/8\?\)/],
    ["fd00::1/8", /did you mean fd00::\/8\?/],
    ["10.0.0.0/33", /prefix length must be 0 to 32/],
    ["::/129", /prefix length must be 0 to 128/],
    ["10.0.0.0/", /prefix length/],
    ["10.0.0.0/08", /prefix length/],
    ["10.0.0.0/-1", /prefix length/],
    ["localhost", /'localhost': not an IP address or CIDR range/],
    ["10.0.0", /not an IP address/],
    ["010.0.0.1", /not an IP address/],
    ["256.0.0.1", /not an IP address/],
    ["1.2.3.4:80", /not an IP address/],
    ["fe80::1%eth0", /not an IP address/],
    ["*", /not an IP address/],
  ];
  for (const [entry, message] of cases) {
    assert.throws(() => parseTrustedProxies([entry]), message, entry);
  }
  // Empty entries of a list are skipped; an empty value names nothing.
  assert.deepEqual(parseTrustedProxies(["10.0.0.1,,", ""]).map((r) => r.text), ["10.0.0.1/32"]);
});

Deno.test("nodes: addresses, ports, IPv6 in brackets, unknown, obfuscated, garbage", () => {
  const address = (text: string) => {
    const node = parseNode(text);
    return node.kind === "address"
      ? `${[...node.bytes].join(".")}${node.port ? `:${node.port}` : ""}`
      : node.kind;
  };
  assert.equal(address("192.0.2.60"), "192.0.2.60");
  assert.equal(address(" 192.0.2.60 "), "192.0.2.60");
  assert.equal(address("192.0.2.60:4711"), "192.0.2.60:4711");
  assert.equal(address("192.0.2.60:_hidden"), "192.0.2.60");
  assert.equal(address("[2001:db8::17]").split(".").length, 16);
  assert.equal(address("[2001:db8::17]:4711").endsWith(":4711"), true);
  assert.equal(address("2001:db8::17").split(".").length, 16); // X-Forwarded-For's bare IPv6
  assert.equal(address("[::ffff:192.0.2.1]:80"), "192.0.2.1:80");
  assert.equal(address("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(address("unknown"), "unknown");
  assert.equal(address("UNKNOWN"), "unknown");
  assert.equal(address("_hidden"), "obfuscated");
  assert.equal(address("_SEVKISEK:_port"), "obfuscated");
  for (
    const garbage of [
      "",
      "foo",
      "192.0.2.60:0",
      "192.0.2.60:65536",
      "192.0.2.60:80:80",
      "192.0.2.60:http",
      "[192.0.2.60]",
      "[2001:db8::17",
      "[2001:db8::17]4711",
      "2001:db8::17]:80",
      "fe80::1%eth0",
      "[fe80::1%25eth0]",
      "1.2.3",
      "01.2.3.4",
      "1.2.3.4/32",
      "_",
      "_a b",
      "1.2.3.4 5.6.7.8",
    ]
  ) {
    assert.equal(address(garbage), "invalid", JSON.stringify(garbage));
  }
});

Deno.test("Forwarded: elements, pairs, quotes, case, escapes; no for= at all is no answer", () => {
  const kinds = (value: string) =>
    parseForwardedFor(value)?.map((node) =>
      node.kind === "address" ? `${node.bytes.length}/${node.port ?? "-"}` : node.kind
    );
  assert.deepEqual(kinds("for=192.0.2.43"), ["4/-"]);
  assert.deepEqual(kinds('for="_gazonk"'), ["obfuscated"]);
  assert.deepEqual(kinds('For="[2001:db8:cafe::17]:4711"'), ["16/4711"]);
  assert.deepEqual(kinds("for=192.0.2.60;proto=http;by=203.0.113.43"), ["4/-"]);
  assert.deepEqual(kinds("for=192.0.2.43, for=198.51.100.17"), ["4/-", "4/-"]);
  assert.deepEqual(kinds("for=192.0.2.43,for=198.51.100.17;by=x"), ["4/-", "4/-"]);
  assert.deepEqual(kinds(' for = "192.0.2.43:80" ; proto=https '), ["4/80"]);
  assert.deepEqual(kinds("proto=https;for=unknown"), ["unknown"]);
  // A comma or semicolon inside quotes belongs to the value (which is then no address).
  assert.deepEqual(kinds('for="1.2.3.4, 5.6.7.8";by="a;b"'), ["invalid"]);
  // Escapes in quoted strings.
  assert.deepEqual(kinds('for="192.0.2.\\43"'), ["4/-"]);
  // An element without for= is a hop that names no client; two for= in one element are garbage.
  assert.deepEqual(kinds("proto=https, for=192.0.2.1"), ["unknown", "4/-"]);
  assert.deepEqual(kinds("for=1.2.3.4;for=5.6.7.8"), ["invalid"]);
  // Unclosed quotes, empty values, the unbracketed IPv6 some proxies write.
  assert.deepEqual(kinds('for="1.2.3.4'), ["invalid"]);
  assert.deepEqual(kinds("for="), ["invalid"]);
  assert.deepEqual(kinds("for=2001:db8::1"), ["16/-"]);
  assert.deepEqual(kinds("for"), ["invalid"]);
  // Empty elements are no hops.
  assert.deepEqual(kinds(",, for=1.2.3.4 ,"), ["4/-"]);
  // Nothing about clients: the header is not the one that decides.
  assert.equal(kinds("proto=https;by=10.0.0.1"), undefined);
  assert.equal(kinds(""), undefined);
  assert.equal(kinds("garbage"), undefined);
});

Deno.test("X-Forwarded-For: lists, spaces, ports, quotes, IPv6", () => {
  const kinds = (value: string) =>
    parseXForwardedFor(value).map((node) =>
      node.kind === "address" ? `${node.bytes.length}/${node.port ?? "-"}` : node.kind
    );
  assert.deepEqual(kinds("203.0.113.7"), ["4/-"]);
  assert.deepEqual(kinds("203.0.113.7,198.51.100.1 ,  10.0.0.1"), ["4/-", "4/-", "4/-"]);
  assert.deepEqual(kinds("203.0.113.7:51234, [2001:db8::1]:443, 2001:db8::2"), [
    "4/51234",
    "16/443",
    "16/-",
  ]);
  assert.deepEqual(kinds('"203.0.113.7", unknown, garbage, '), [
    "4/-",
    "unknown",
    "invalid",
    "invalid",
  ]);
});

Deno.test("the client: only trusted hops are passed over; forged entries stay on the left", () => {
  const trusted = parseTrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
  const client = (headers: Record<string, string>) => {
    const found = forwardedClient(new Map(Object.entries(headers)), trusted);
    return found ? `${found.header} ${found.address}${found.port ? ` ${found.port}` : ""}` : "peer";
  };
  const xff = (value: string) => client({ "x-forwarded-for": value });
  // One hop.
  assert.equal(xff("203.0.113.7"), "X-Forwarded-For 203.0.113.7");
  // A client's forged list: what it wrote is to the left of what our proxy appended.
  assert.equal(xff("6.6.6.6, 203.0.113.7"), "X-Forwarded-For 203.0.113.7");
  assert.equal(xff("6.6.6.6, 7.7.7.7, 203.0.113.7"), "X-Forwarded-For 203.0.113.7");
  // Our own proxies in the chain are passed over.
  assert.equal(xff("6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2"), "X-Forwarded-For 203.0.113.7");
  // A forged trusted address on the left changes nothing.
  assert.equal(xff("10.9.9.9, 203.0.113.7"), "X-Forwarded-For 203.0.113.7");
  // All trusted: the leftmost (a client inside the trusted network).
  assert.equal(xff("10.0.0.5, 10.0.0.1"), "X-Forwarded-For 10.0.0.5");
  // Garbage and unknown entries are passed over, never taken.
  assert.equal(xff("203.0.113.7, unknown"), "X-Forwarded-For 203.0.113.7");
  assert.equal(xff("203.0.113.7, not-an-ip, 10.0.0.1"), "X-Forwarded-For 203.0.113.7");
  assert.equal(xff("garbage"), "peer");
  assert.equal(xff("garbage, 10.0.0.1"), "X-Forwarded-For 10.0.0.1");
  // Ports, IPv6, IPv4-mapped (shown as IPv4), long spellings normalized (per-IP limits see one address).
  assert.equal(xff("203.0.113.7:5555"), "X-Forwarded-For 203.0.113.7 5555");
  assert.equal(xff("2001:DB8:0:0:0:0:0:1"), "X-Forwarded-For 2001:db8::1");
  assert.equal(xff("[2001:db8::1]:80, fd00::9"), "X-Forwarded-For 2001:db8::1 80");
  assert.equal(xff("::ffff:203.0.113.7"), "X-Forwarded-For 203.0.113.7");
  assert.equal(xff("::ffff:10.0.0.1"), "X-Forwarded-For 10.0.0.1");
  // Repeated headers arrive joined with ", " (lib/http.ts): one list, in order.
  assert.equal(xff("6.6.6.6, 203.0.113.7, 198.51.100.2"), "X-Forwarded-For 198.51.100.2");
  // Empty: the next header decides.
  assert.equal(
    client({ "x-forwarded-for": " ", "x-real-ip": "203.0.113.9" }),
    "X-Real-IP 203.0.113.9",
  );

  // Forwarded first, when it has a for=.
  assert.equal(
    client({ forwarded: 'for="[2001:db8:cafe::17]:4711"', "x-forwarded-for": "6.6.6.6" }),
    "Forwarded 2001:db8:cafe::17 4711",
  );
  assert.equal(
    client({ forwarded: "for=6.6.6.6, for=203.0.113.7;proto=https, for=10.0.0.2" }),
    "Forwarded 203.0.113.7",
  );
  assert.equal(client({ forwarded: "for=203.0.113.7, for=_hidden" }), "Forwarded 203.0.113.7");
  assert.equal(client({ forwarded: "for=unknown" }), "peer");
  assert.equal(
    client({ forwarded: "proto=https", "x-forwarded-for": "203.0.113.7" }),
    "X-Forwarded-For 203.0.113.7",
  );
  // X-Real-IP last; the last one if repeated; nothing usable: the peer.
  assert.equal(client({ "x-real-ip": "203.0.113.9" }), "X-Real-IP 203.0.113.9");
  assert.equal(client({ "x-real-ip": "6.6.6.6, 203.0.113.9" }), "X-Real-IP 203.0.113.9");
  assert.equal(client({ "x-real-ip": "10.0.0.3" }), "X-Real-IP 10.0.0.3");
  assert.equal(client({ "x-real-ip": "nonsense" }), "peer");
  assert.equal(client({}), "peer");
  assert.equal(client({ "x-forwarded-host": "example.com" }), "peer");
});

Deno.test("the client: a header full of entries is read in linear time", () => {
  const trusted = parseTrustedProxies(["10.0.0.0/8"]);
  const long = Array.from({ length: 5000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(", ");
  const started = performance.now();
  const found = forwardedClient(new Map([["x-forwarded-for", `203.0.113.1, ${long}`]]), trusted);
  assert.equal(found?.address, "203.0.113.1");
  const quotes = '"'.repeat(30000);
  assert.equal(forwardedClient(new Map([["forwarded", `for=${quotes}`]]), trusted), undefined);
  assert.ok(performance.now() - started < 2000);
});

Deno.test("Forwarded: a value followed by quote after quote is read in linear time", () => {
  const trusted = parseTrustedProxies(["10.0.0.0/8"]);
  // Each quote after the value's first character used to trim the whole value so far: 150,000 of them took
  // seconds; read once, they take milliseconds.
  const quotes = '"'.repeat(150_000);
  const started = performance.now();
  for (const value of [`for=a${quotes}`, `for=${' "'.repeat(75_000)}`, `for= \u00a0x${quotes}`]) {
    assert.equal(forwardedClient(new Map([["forwarded", value]]), trusted), undefined);
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 1000, `${elapsed.toFixed(0)} ms`);
  // What the quotes mean is unchanged: one opening a value only where nothing but spaces came before it.
  assert.equal(
    forwardedClient(new Map([["forwarded", 'for= \t"192.0.2.7:4711"']]), trusted)?.address,
    "192.0.2.7",
  );
  assert.equal(forwardedClient(new Map([["forwarded", 'for=192.0.2.7"x"']]), trusted), undefined);
});
