// --allowed-targets (lib/allowed_targets.ts): the rules' syntax and which targets they let through.
import assert from "node:assert/strict";
import { parseAllowedTargets, targetAllowed } from "../../lib/allowed_targets.ts";
import type { TargetSpec } from "../../lib/settings.ts";

const tcp = (hostname: string, port: number): TargetSpec => ({ kind: "tcp", hostname, port });
const unix = (path: string): TargetSpec => ({ kind: "unix", path });

function allows(list: string, target: TargetSpec): boolean {
  return targetAllowed(parseAllowedTargets(list), target);
}

Deno.test("host rules: names match literally, case-insensitive, trailing dot ignored; ports, ranges and *", () => {
  assert.ok(allows("vnc.internal:5900", tcp("vnc.internal", 5900)));
  assert.ok(allows("VNC.Internal.:5900", tcp("vnc.INTERNAL", 5900)));
  assert.ok(allows("vnc.internal:5900", tcp("vnc.internal.", 5900)));
  assert.ok(!allows("vnc.internal:5900", tcp("vnc.internal", 5901)));
  assert.ok(!allows("vnc.internal:5900", tcp("x.vnc.internal", 5900)), "no suffix matching");
  assert.ok(!allows("vnc.internal:5900", tcp("vnc.internal.evil", 5900)));
  assert.ok(allows("vnc.internal:*", tcp("vnc.internal", 22)));
  assert.ok(allows("vnc.internal:5900-5999", tcp("vnc.internal", 5999)));
  assert.ok(!allows("vnc.internal:5900-5999", tcp("vnc.internal", 6000)));
  assert.ok(!allows("vnc.internal:5900-5999", tcp("vnc.internal", 5899)));
  assert.ok(allows("a:1, b:2 ,c:3", tcp("b", 2)), "a list, blanks around entries");
});

Deno.test("names are never resolved: a name matches name rules only, an address matches network rules only", () => {
  // localhost resolves to 127.0.0.1, but the rule is about addresses written as such.
  assert.ok(!allows("127.0.0.0/8:*", tcp("localhost", 5900)));
  assert.ok(!allows("localhost:*", tcp("127.0.0.1", 5900)));
  // Forms a resolver might read as 127.0.0.1 are names here, and match nothing but a name rule.
  assert.ok(!allows("127.0.0.1:5900", tcp("127.1", 5900)));
  assert.ok(!allows("127.0.0.1:5900", tcp("2130706433", 5900)));
  // An address with a zone index is no address; and no name rule can hold a '%'.
  assert.ok(!allows("[fe80::/10]:*", tcp("fe80::1%eth0", 5900)));
});

Deno.test("network rules: IPv4 and IPv6 addresses and CIDRs, IPv4-mapped targets as IPv4", () => {
  assert.ok(allows("10.0.0.0/8:5900", tcp("10.20.30.40", 5900)));
  assert.ok(!allows("10.0.0.0/8:5900", tcp("11.0.0.1", 5900)));
  assert.ok(allows("10.1.2.3:5900", tcp("10.1.2.3", 5900)), "an address is a /32");
  assert.ok(!allows("10.1.2.3:5900", tcp("10.1.2.4", 5900)));
  assert.ok(allows("192.168.4.0/22:*", tcp("192.168.7.255", 1)));
  assert.ok(!allows("192.168.4.0/22:*", tcp("192.168.8.0", 1)));
  assert.ok(allows("0.0.0.0/0:5900", tcp("203.0.113.9", 5900)));
  assert.ok(allows("[fd00::/8]:5900-5999", tcp("fd12:3456::1", 5901)));
  assert.ok(!allows("[fd00::/8]:5900-5999", tcp("fe80::1", 5901)));
  assert.ok(allows("[::1]:5900", tcp("0:0:0:0:0:0:0:1", 5900)), "any spelling of the address");
  assert.ok(allows("[2001:db8::/33]:*", tcp("2001:db8:7fff::1", 80)));
  assert.ok(!allows("[2001:db8::/33]:*", tcp("2001:db8:8000::1", 80)));
  // An IPv4-mapped IPv6 target reaches the IPv4 address: it is judged as that address.
  assert.ok(allows("10.0.0.0/8:5900", tcp("::ffff:10.0.0.5", 5900)));
  assert.ok(!allows("[::/0]:5900", tcp("::ffff:10.0.0.5", 5900)), "IPv4 is not in an IPv6 rule");
  assert.ok(allows("[::ffff:10.0.0.0/104]:5900", tcp("10.9.9.9", 5900)), "a mapped rule is IPv4");
  // IPv6 rules do not match IPv4 targets, nor the other way round.
  assert.ok(!allows("[::/0]:*", tcp("10.0.0.1", 1)));
  assert.ok(!allows("0.0.0.0/0:*", tcp("::1", 1)));
});

Deno.test("unix rules: a socket, or any socket under a directory; paths normalized, other targets refused", () => {
  assert.ok(allows("unix:/run/vnc/desk.sock", unix("/run/vnc/desk.sock")));
  assert.ok(!allows("unix:/run/vnc/desk.sock", unix("/run/vnc/other.sock")));
  assert.ok(allows("unix:/run/vnc/*", unix("/run/vnc/a/b.sock")));
  assert.ok(!allows("unix:/run/vnc/*", unix("/run/vncx.sock")));
  assert.ok(!allows("unix:/run/vnc/*", unix("/run/vnc/../../etc/ssh.sock")), "'..' resolved first");
  assert.ok(allows("unix:/run/./vnc//*", unix("/run/vnc/x")));
  assert.ok(!allows("unix:/run/vnc/*", tcp("localhost", 5900)));
  assert.ok(!allows("localhost:*", unix("/run/vnc/x")));
  // Only TCP and unix targets come from token plugins; anything else matches no rule.
  assert.ok(!allows("0.0.0.0/0:*", { kind: "command", command: ["x"], port: 1 }));
});

Deno.test("rules that are not rules are refused with the entry and the reason", () => {
  const refused: [string, RegExp][] = [
    ["", /an empty list allows no target/],
    ["vnc.internal", /'vnc\.internal': expected HOST:PORTS/],
    ["vnc.internal:0", /'0' is not a port/],
    ["vnc.internal:5999-5900", /range '5999-5900' is empty/],
    ["vnc.internal:59x", /'59x' is not a port/],
    ["*.internal:5900", /not a host name .*no wildcards/],
    ["fd00::1:5900", /an IPv6 address goes in brackets/],
    ["[fd00::1]5900", /expected \[IPv6 address or network\]:PORTS/],
    ["[fd00::zz/8]:5900", /'fd00::zz' is not an IPv6 address/],
    ["[fd00::/129]:5900", /a prefix length is 0 to 128/],
    ["10.0.0.0/33:5900", /a prefix length is 0 to 32/],
    ["10.0.0.256:1", /'10\.0\.0\.256' is not an IPv4 address/],
    ["127.1:1", /'127\.1' is not an IPv4 address/],
    ["010.0.0.1:1", /not an IPv4 address/],
    ["unix:run/vnc", /absolute path/],
    ["unix:/run/*/x", /'\*' may only end a unix rule/],
  ];
  for (const [text, pattern] of refused) {
    assert.throws(() => parseAllowedTargets(text), pattern, text);
  }
});
