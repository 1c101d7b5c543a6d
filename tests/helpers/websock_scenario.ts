/**
 * One Websock session against an echo target, run the same way by Deno (`websock_test.ts`) and, serialized with
 * `page.evaluate`, by Chromium (`browser_pages_test.ts`): so it must stay self-contained (it imports the module
 * itself, from `moduleUrl`; nothing from this file's scope is used inside).
 */

import type * as WebsockModule from "../../web/websock.ts";

/** What the scenario saw, for the test to compare with `EXPECTED`. */
export type ScenarioResult = Record<string, unknown>;

/** The byte vector the reading helpers take apart. */
export const VECTOR = [
  0x01, // rQpeek8, then rQshift8
  0xff, // rQshift8
  0x12,
  0x34, // rQshift16: 4660
  0xde,
  0xad,
  0xbe,
  0xef, // rQshift32: 3735928559 (unsigned)
  0x80,
  0x00,
  0x00,
  0x01, // rQshift32: 2147483649
  0x41,
  0xe9,
  0x7a, // rQshiftStr(3): "Aéz" (latin1)
  0x09,
  0x08, // rQpeekBytes(2), then rQskipBytes(2)
  0x07,
  0x06,
  0x05,
  0x04,
  0x03, // rQwait, rQshift16 (1798), rQwait with goback 2, rQshiftBytes()
];

/** What every run must give, whatever the subprotocol (`protocol` and `mode` are checked apart). */
export const EXPECTED: ScenarioResult = {
  readyStateBefore: "unused",
  readyState: "open",
  len: 22,
  peek8: 1,
  shift8: 1,
  shift8b: 255,
  shift16: 4660,
  shift32: 3735928559,
  shift32b: 2147483649,
  str: "Aéz",
  peekBytes: [9, 8],
  lenAfterPeek: 7,
  waitMore: true,
  waitEnough: false,
  shift16b: 1798,
  waitGoback: true,
  lenAfterGoback: 5,
  rest: [7, 6, 5, 4, 3],
  lenEmpty: 0,
  emptyError: "RangeError: rQshift8: 1 bytes asked, 0 in the queue",
  gobackError: "RangeError",
  sendString: "\u0000\u00ffAB",
  sendStringError: "RangeError",
  bulk: "ok 2097152",
  closeCode: 1000,
  readyStateAfter: "closed",
};

/**
 * Opens a Websock to `wsUrl` with `protocols`, echoes VECTOR and reads it back with every reading helper, sends
 * a latin1 string, then 2 MiB in 64 KiB messages while awaiting `drain` (the echo is checked byte by byte as it
 * comes), and closes. Every wait is bounded (10 s).
 */
export async function websockScenario(
  moduleUrl: string,
  wsUrl: string,
  protocols: string[],
  vector: number[],
): Promise<ScenarioResult> {
  const { Websock } = (await import(moduleUrl)) as typeof WebsockModule;
  const within = <T>(promise: Promise<T>, what: string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), 10000);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  };
  const errorName = (fn: () => unknown): string => {
    try {
      fn();
      return "no error";
    } catch (error) {
      return String(error).startsWith("RangeError") ? "RangeError" : String(error);
    }
  };
  const result: ScenarioResult = {};
  const sock = new Websock();
  result.readyStateBefore = sock.readyState;

  // The message handler either waits for a byte count, or checks the bulk echo as it arrives.
  let waiting: { length: number; resolve: () => void } | undefined;
  let bulk: { expected: Uint8Array; at: number; bad: number; done: () => void } | undefined;
  sock.on("message", () => {
    if (bulk) {
      const bytes = sock.rQshiftBytes();
      for (const byte of bytes) if (byte !== bulk.expected[bulk.at++]) bulk.bad++;
      if (bulk.at >= bulk.expected.length) bulk.done();
    } else if (waiting && sock.rQlen() >= waiting.length) {
      const { resolve } = waiting;
      waiting = undefined;
      resolve();
    }
  });
  const echo = (bytes: Uint8Array | number[], what: string) =>
    within(
      new Promise<void>((resolve) => {
        waiting = { length: sock.rQlen() + bytes.length, resolve };
        sock.send(bytes);
      }),
      what,
    );
  const opened = new Promise<void>((resolve, reject) => {
    sock.on("open", resolve);
    sock.on("error", (error) => reject(new Error(`error before open: ${String(error)}`)));
  });
  sock.open(wsUrl, protocols);
  await within(opened, "open");
  result.protocol = sock.protocol;
  result.mode = sock.mode;
  result.readyState = sock.readyState;

  await echo(vector, "vector echo");
  result.len = sock.rQlen();
  result.peek8 = sock.rQpeek8();
  result.shift8 = sock.rQshift8();
  result.shift8b = sock.rQshift8();
  result.shift16 = sock.rQshift16();
  result.shift32 = sock.rQshift32();
  result.shift32b = sock.rQshift32();
  result.str = sock.rQshiftStr(3);
  result.peekBytes = [...sock.rQpeekBytes(2)];
  sock.rQskipBytes(2);
  result.lenAfterPeek = sock.rQlen() + 2;
  result.waitMore = sock.rQwait("more", 7);
  result.waitEnough = sock.rQwait("enough", 5);
  result.shift16b = sock.rQshift16();
  result.waitGoback = sock.rQwait("body", 4, 2);
  result.lenAfterGoback = sock.rQlen();
  result.rest = [...sock.rQshiftBytes()];
  result.lenEmpty = sock.rQlen();
  try {
    sock.rQshift8();
    result.emptyError = "no error";
  } catch (error) {
    result.emptyError = String(error);
  }
  result.gobackError = errorName(() => sock.rQwait("far", 1, 1000));

  await echo(Uint8Array.from([0, 255, 65, 66]), "sendString echo (as bytes)");
  sock.rQskipBytes(4);
  await within(
    new Promise<void>((resolve) => {
      waiting = { length: 4, resolve };
      sock.sendString("\u0000\u00ffAB");
    }),
    "sendString echo",
  );
  result.sendString = sock.rQshiftStr();
  result.sendStringError = errorName(() => sock.sendString("€"));

  // 2 MiB in 64 KiB messages, never more than 256 KiB waiting in the browser.
  const total = 2 * 1024 * 1024;
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 11)) & 255;
  let maxBuffered = 0;
  const received = new Promise<void>((resolve) => {
    bulk = { expected: data, at: 0, bad: 0, done: resolve };
  });
  for (let at = 0; at < total; at += 65536) {
    await within(sock.drain(256 * 1024), "drain");
    sock.send(data.subarray(at, at + 65536));
    maxBuffered = Math.max(maxBuffered, sock.bufferedAmount);
  }
  await within(received, "bulk echo");
  result.bulk = bulk!.bad === 0 ? `ok ${bulk!.at}` : `${bulk!.bad} bytes differ of ${bulk!.at}`;
  result.maxBuffered = maxBuffered;

  const closed = new Promise<number>((resolve) => sock.on("close", (event) => resolve(event.code)));
  sock.close(1000, "done");
  result.closeCode = await within(closed, "close");
  result.readyStateAfter = sock.readyState;
  return result;
}
