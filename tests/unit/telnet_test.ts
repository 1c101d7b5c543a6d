// The telnet client of the wstelnet page (web/telnet.ts): negotiation answers, subnegotiations and data
// escaping, byte for byte.
import assert from "node:assert/strict";
import { Cmd, Opt, TelnetClient } from "../../web/telnet.ts";

const { IAC, WILL, WONT, DO, DONT, SB, SE } = Cmd;

/** A client whose answers are collected, one array per `send`. */
function client(options = {}) {
  const sent: number[][] = [];
  const telnet = new TelnetClient((bytes) => sent.push([...bytes]), options);
  const receive = (...bytes: number[]) => [...telnet.receive(Uint8Array.from(bytes))];
  return { telnet, sent, receive };
}

Deno.test("telnet: the options agreed to are answered once; others refused; nothing in force acknowledged again", () => {
  const { telnet, sent, receive } = client();
  assert.deepEqual(receive(IAC, WILL, Opt.ECHO, IAC, WILL, Opt.SGA, IAC, WILL, Opt.STATUS), []);
  assert.deepEqual(sent, [[IAC, DO, Opt.ECHO], [IAC, DO, Opt.SGA], [IAC, DONT, Opt.STATUS]]);
  assert.equal(telnet.remoteEcho, true);
  sent.length = 0;
  // Already in force: no answer (RFC 854's loop rule).
  receive(IAC, WILL, Opt.ECHO, IAC, WILL, Opt.SGA);
  assert.deepEqual(sent, []);
  // DO for what we support: WILL; for the rest: WONT (LINEMODE, NEW-ENVIRON, TSPEED, AUTHENTICATION...).
  receive(IAC, DO, Opt.TTYPE, IAC, DO, Opt.LINEMODE, IAC, DO, Opt.NEW_ENVIRON, IAC, DO, Opt.ECHO);
  assert.deepEqual(sent, [
    [IAC, WILL, Opt.TTYPE],
    [IAC, WONT, Opt.LINEMODE],
    [IAC, WONT, Opt.NEW_ENVIRON],
    [IAC, WONT, Opt.ECHO], // the server asks the client to echo: no, it echoes itself
  ]);
  sent.length = 0;
  receive(IAC, DO, Opt.TTYPE);
  assert.deepEqual(sent, []);
  // WONT / DONT turn an option off, acknowledged once; for an option not in force, no answer.
  receive(IAC, WONT, Opt.ECHO, IAC, WONT, Opt.ECHO, IAC, DONT, Opt.TTYPE, IAC, DONT, Opt.NAWS);
  assert.deepEqual(sent, [[IAC, DONT, Opt.ECHO], [IAC, WONT, Opt.TTYPE]]);
  assert.equal(telnet.remoteEcho, false);
  assert.equal(telnet.enabled(Opt.SGA, "remote"), true);
  assert.equal(telnet.enabled(Opt.TTYPE, "local"), false);
});

Deno.test("telnet: TERMINAL-TYPE SEND is answered IS xterm; NAWS sends the size at once and on resize", () => {
  const { telnet, sent, receive } = client({ cols: 132, rows: 43 });
  // SEND before DO TTYPE is not answered: the option is not in force.
  receive(IAC, SB, Opt.TTYPE, 1, IAC, SE);
  assert.deepEqual(sent, []);
  receive(IAC, DO, Opt.TTYPE, IAC, SB, Opt.TTYPE, 1, IAC, SE);
  assert.deepEqual(sent, [
    [IAC, WILL, Opt.TTYPE],
    [IAC, SB, Opt.TTYPE, 0, ...new TextEncoder().encode("xterm"), IAC, SE],
  ]);
  sent.length = 0;
  telnet.resize(100, 30); // NAWS not agreed yet: remembered only
  assert.deepEqual(sent, []);
  receive(IAC, DO, Opt.NAWS);
  assert.deepEqual(sent, [[IAC, WILL, Opt.NAWS], [IAC, SB, Opt.NAWS, 0, 100, 0, 30, IAC, SE]]);
  sent.length = 0;
  // A 255 in the sizes is doubled inside the subnegotiation.
  telnet.resize(255, 511);
  assert.deepEqual(sent, [[IAC, SB, Opt.NAWS, 0, IAC, IAC, 1, IAC, IAC, IAC, SE]]);
  assert.deepEqual(telnet.size, { cols: 255, rows: 511 });
  assert.throws(() => telnet.resize(0, 24), RangeError);
  assert.throws(() => new TelnetClient(() => {}, { terminalType: "two words" }), RangeError);
});

Deno.test("telnet: data passes; IAC IAC is one 255; commands vanish; sequences split anywhere across reads", () => {
  const stream = [
    ...new TextEncoder().encode("héllo"),
    IAC,
    IAC,
    IAC,
    Cmd.NOP,
    IAC,
    WILL,
    Opt.ECHO,
    IAC,
    SB,
    Opt.TTYPE,
    1,
    IAC,
    SE,
    13,
    0, // CR NUL: a bare CR
    13,
    10,
    ...new TextEncoder().encode("$ "),
  ];
  const expected = [...new TextEncoder().encode("héllo"), 255, 13, 13, 10, 36, 32];
  // Whole, then one byte at a time, then in every two-piece split: the same data and the same answers.
  const reference = client();
  reference.receive(IAC, DO, Opt.TTYPE);
  assert.deepEqual(reference.receive(...stream), expected);
  for (let cut = 0; cut <= stream.length; cut++) {
    const split = client();
    split.receive(IAC, DO, Opt.TTYPE);
    const got = [...split.receive(...stream.slice(0, cut)), ...split.receive(...stream.slice(cut))];
    assert.deepEqual(got, expected, `cut at ${cut}`);
    assert.deepEqual(split.sent, reference.sent, `answers, cut at ${cut}`);
  }
  const bytewise = client();
  const got = stream.flatMap((byte) => bytewise.receive(byte));
  assert.deepEqual(got, expected);
});

Deno.test("telnet: a subnegotiation that never ends is bounded, and the data after its end comes through", () => {
  const { receive, sent } = client();
  receive(IAC, DO, Opt.TTYPE);
  const huge = new Array(100_000).fill(65);
  assert.deepEqual(receive(IAC, SB, Opt.NEW_ENVIRON, ...huge), []);
  assert.deepEqual(receive(IAC, SE, 104, 105), [104, 105]);
  assert.deepEqual(sent, [[IAC, WILL, Opt.TTYPE]]);
});

Deno.test("telnet: typed data is sent with IAC doubled and Enter as CR NUL (CR alone in BINARY)", () => {
  const { telnet, receive } = client();
  const encode = (
    data: string | number[],
  ) => [...telnet.encode(typeof data === "string" ? data : Uint8Array.from(data))];
  assert.deepEqual(encode("ls\r"), [108, 115, 13, 0]);
  assert.deepEqual(encode("line\r\n"), [108, 105, 110, 101, 13, 10]);
  assert.deepEqual(encode([1, 255, 2]), [1, 255, 255, 2]);
  assert.deepEqual(encode("é"), [0xc3, 0xa9]);
  assert.deepEqual(encode(""), []);
  receive(IAC, DO, Opt.BINARY);
  assert.deepEqual(encode("ls\r"), [108, 115, 13]);
  assert.deepEqual(encode([255]), [255, 255]);
});
