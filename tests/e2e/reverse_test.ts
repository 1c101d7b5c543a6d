// Reverse connections (--token-plugin ReverseConnection): fake VNC servers dial in to the plugin's port over real
// TCP with UltraVNC's 250-byte ID header, and Deno's own WebSocket reaches them through the proxy by ?token=<ID>.
// The limits are tested on the plugin itself (small ones, and the defaults at full count) with real sockets.
import assert from "node:assert/strict";
import net from "node:net";
import { writeAll } from "../../lib/io.ts";
import {
  DEFAULT_REVERSE_LIMITS,
  ID_HEADER_LENGTH,
  ReverseConnections,
  type ReverseLimits,
} from "../../lib/reverse.ts";
import { tokenHash } from "../../lib/secrets.ts";
import type { StreamSession } from "../../lib/settings.ts";
import { concat } from "../helpers/bytes.ts";
import { type InProcessProxy, ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { liveMemoryKiB } from "../helpers/system.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GREETING = "RFB 003.008\n";

/** The 250-byte header a server sends first: `ID:<id>`, NUL padded. */
function idHeader(id: string): Uint8Array {
  const header = new Uint8Array(ID_HEADER_LENGTH);
  header.set(encoder.encode(`ID:${id}`));
  return header;
}

/** A fake VNC server that dials in: the ID header, its greeting, then it echoes what comes. */
class Dialer {
  readonly conn: Deno.Conn;
  /** Resolves when the proxy closes the connection (or it fails). */
  readonly ended: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.ended = (async () => {
      const buffer = new Uint8Array(4096);
      try {
        for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
          await writeAll(conn, buffer.subarray(0, n));
        }
      } catch { /* reset or closed here */ }
    })();
  }

  static async dial(port: number, id: string, greeting = GREETING): Promise<Dialer> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, concat([idHeader(id), encoder.encode(greeting)]));
    return new Dialer(conn);
  }

  /** Whether the proxy closed this connection within `ms`. */
  closedWithin(ms: number): Promise<boolean> {
    return deadline(this.ended.then(() => true), ms, "close").catch(() => false);
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** A Deno WebSocket session; `text` is everything received so far; `refused` if it never opened. */
class Session {
  readonly ws: WebSocket;
  received: Uint8Array = new Uint8Array(0);
  readonly opened: Promise<boolean>;
  readonly closed: Promise<void>;

  constructor(port: number, token: string) {
    this.ws = new WebSocket(
      `ws://127.0.0.1:${port}/websockify?token=${encodeURIComponent(token)}`,
      ["binary"],
    );
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => {
      this.received = concat([this.received, new Uint8Array(event.data as ArrayBuffer)]);
    };
    this.opened = new Promise((resolve) => {
      this.ws.onopen = () => resolve(true);
      this.ws.addEventListener("error", () => resolve(false));
    });
    this.closed = new Promise((resolve) => this.ws.addEventListener("close", () => resolve()));
  }

  get text(): string {
    return decoder.decode(this.received);
  }

  async waitFor(text: string, ms = 5000): Promise<void> {
    await waitFor(() => this.text.includes(text), ms, `'${text}' from the server`);
  }

  async close(): Promise<void> {
    this.ws.close();
    await deadline(this.closed, 5000, "the WebSocket close");
  }
}

/** The proxy in this process with the plugin on a free loopback port, and that port. */
async function reverseProxy(): Promise<{ proxy: InProcessProxy; dialPort: number }> {
  const proxy = await startProxy([
    "--token-plugin=ReverseConnection",
    "--token-source=127.0.0.1:0",
  ]);
  const plugin = proxy.server.plugins.token as ReverseConnections;
  return { proxy, dialPort: plugin.addr.port };
}

function pluginOf(proxy: InProcessProxy): ReverseConnections {
  return proxy.server.plugins.token as ReverseConnections;
}

Deno.test("ReverseConnection (command line): a server dials in; the session gets its greeting first, then echo both ways; the ID is never logged", async () => {
  const proxy = new ProxyProcess([
    "-v",
    "127.0.0.1:0",
    "--token-plugin",
    "ReverseConnection",
    "--token-source",
    "127.0.0.1:0",
  ]);
  let dialer: Dialer | undefined;
  try {
    const port = await proxy.port();
    const dialPort = Number(proxy.stderr.match(/servers dial in on 127\.0\.0\.1:(\d+)/)?.[1]);
    assert.ok(dialPort > 0, proxy.stderr);
    const id = "abc123";
    dialer = await Dialer.dial(dialPort, id);
    await waitFor(() => proxy.stderr.includes(`parked as ${tokenHash(id)}`), 5000, "parked");

    const session = new Session(port, id);
    assert.equal(await session.opened, true);
    await session.waitFor(GREETING);
    assert.equal(session.text, GREETING, "the greeting comes first, alone");
    session.ws.send(encoder.encode("client says hi"));
    await session.waitFor("client says hi");
    // The server speaks unprompted too (a framebuffer update): it reaches the client.
    await writeAll(dialer.conn, encoder.encode("|server update|"));
    await session.waitFor("|server update|");
    await session.close();
    // The session's end closes the server's connection.
    assert.equal(await dialer.closedWithin(5000), true);

    // One use: the ID is no longer parked.
    const again = new Session(port, id);
    assert.equal(await again.opened, false);
    await waitFor(() => /Token #[0-9a-f]{8} not found/.test(proxy.stderr), 5000, "not found");
  } finally {
    dialer?.close();
    await proxy.stop();
  }
  assert.ok(!proxy.stderr.includes("abc123"), `the ID in clear:\n${proxy.stderr}`);
  assert.match(proxy.stderr, /connecting to: reverse connection #[0-9a-f]{8} from 127\.0\.0\.1:/);
  assert.match(proxy.stderr, /paired with 127\.0\.0\.1/);
});

Deno.test("ReverseConnection: an unknown ID is refused like an unknown token", async () => {
  const { proxy, dialPort } = await reverseProxy();
  const dialer = await Dialer.dial(dialPort, "known");
  try {
    await waitFor(() => pluginOf(proxy).parked === 1, 5000, "parked");
    const session = new Session(proxy.port, "unknown");
    assert.equal(await session.opened, false);
    await waitFor(() => proxy.log.has(/Token #[0-9a-f]{8} not found/), 5000, "not found");
    // A token that differs only by case or a prefix is another ID.
    assert.equal(await new Session(proxy.port, "KNOWN").opened, false);
    assert.equal(await new Session(proxy.port, "ID:known").opened, false);
    assert.equal(pluginOf(proxy).parked, 1, "the parked server is untouched");
  } finally {
    dialer.close();
    await proxy.stop();
  }
});

Deno.test("ReverseConnection: a second server with an ID already parked is refused, the first one stays and is served", async () => {
  const { proxy, dialPort } = await reverseProxy();
  const first = await Dialer.dial(dialPort, "desk", "RFB 003.008\n");
  let second: Dialer | undefined;
  try {
    await waitFor(() => pluginOf(proxy).parked === 1, 5000, "the first parked");
    second = await Dialer.dial(dialPort, "desk", "RFB 003.003\n");
    assert.equal(await second.closedWithin(5000), true, "the second is closed");
    assert.ok(proxy.log.has(/refused: ID #[0-9a-f]{8} is already waiting .*the first one stays/));
    assert.equal(pluginOf(proxy).parked, 1);
    const session = new Session(proxy.port, "desk");
    assert.equal(await session.opened, true);
    await session.waitFor(GREETING);
    session.ws.send(encoder.encode("to the first"));
    await session.waitFor("to the first");
    assert.equal(session.text, GREETING + "to the first");
    await session.close();
    // Once paired, the ID is free again: a new server may park under it.
    const third = await Dialer.dial(dialPort, "desk");
    await waitFor(() => pluginOf(proxy).parked === 1, 5000, "the third parked");
    third.close();
  } finally {
    first.close();
    second?.close();
    await proxy.stop();
  }
});

Deno.test("ReverseConnection: a server that hangs up while parked is forgotten; a later session with its ID is refused", async () => {
  const { proxy, dialPort } = await reverseProxy();
  try {
    const dialer = await Dialer.dial(dialPort, "gone");
    await waitFor(() => pluginOf(proxy).parked === 1, 5000, "parked");
    dialer.close();
    await waitFor(() => pluginOf(proxy).parked === 0, 5000, "forgotten");
    assert.ok(proxy.log.has(/#[0-9a-f]{8} hung up while waiting/));
    assert.equal(await new Session(proxy.port, "gone").opened, false);
    await waitFor(() => proxy.log.has(/Token #[0-9a-f]{8} not found/), 5000, "not found");
  } finally {
    await proxy.stop();
  }
});

Deno.test("ReverseConnection: garbage instead of an ID header is closed at once, with one line", async () => {
  const { proxy, dialPort } = await reverseProxy();
  try {
    const cases: [Uint8Array, RegExp][] = [
      [encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), /refused: not an ID header/],
      [
        (() => {
          const header = idHeader("bad id");
          return header;
        })(),
        /refused: the ID has characters other than printable ASCII/,
      ],
      [idHeader(""), /refused: empty ID/],
      [encoder.encode("ID:" + "x".repeat(247)), /refused: ID header without its NUL padding/],
    ];
    for (const [bytes, line] of cases) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: dialPort });
      await writeAll(conn, bytes);
      const started = performance.now();
      const n = await deadline(conn.read(new Uint8Array(16)).catch(() => null), 3000, "close");
      assert.equal(n, null, "closed without a byte");
      assert.ok(performance.now() - started < 2000, "at once, not after the header deadline");
      conn.close();
      await waitFor(() => proxy.log.has(line), 2000, String(line));
    }
    assert.equal(pluginOf(proxy).held, 0);
  } finally {
    await proxy.stop();
  }
});

Deno.test("ReverseConnection: the proxy's shutdown closes the dial-in port and every parked server", async () => {
  const { proxy, dialPort } = await reverseProxy();
  const dialer = await Dialer.dial(dialPort, "waiting");
  const slow = await Deno.connect({ hostname: "127.0.0.1", port: dialPort });
  await writeAll(slow, encoder.encode("ID:wai"));
  try {
    await waitFor(() => pluginOf(proxy).held === 2, 5000, "held");
    await proxy.stop();
    assert.equal(await dialer.closedWithin(3000), true);
    assert.equal(
      await deadline(slow.read(new Uint8Array(8)).catch(() => null), 3000, "slow"),
      null,
    );
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: dialPort }));
  } finally {
    dialer.close();
    slow.close();
  }
});

// The plugin itself, with small limits (and the defaults at full count), over real sockets.

const quietLog = () => {
  const lines: string[] = [];
  return {
    lines,
    info: (line: string) => void lines.push(line),
    warning: (line: string) => void lines.push(line),
    has: (pattern: RegExp) => lines.some((line) => pattern.test(line)),
  };
};

const SESSION: StreamSession = {
  client: "127.0.0.1",
  path: "/",
  headers: new Map(),
  secure: false,
};

/** Dials from a chosen loopback address (node:net binds it), sends `bytes`; `closed` resolves at the close. */
function dialFrom(localAddress: string, port: number, bytes: Uint8Array) {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => {});
  socket.on("data", () => {});
  socket.write(bytes);
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { socket, closed };
}

async function withPlugin(
  limits: Partial<ReverseLimits>,
  body: (plugin: ReverseConnections, log: ReturnType<typeof quietLog>) => Promise<void>,
): Promise<void> {
  const log = quietLog();
  const plugin = ReverseConnections.open("127.0.0.1:0", log, {
    ...DEFAULT_REVERSE_LIMITS,
    ...limits,
  });
  try {
    await body(plugin, log);
  } finally {
    plugin.close();
  }
}

Deno.test("ReverseConnection limits: an ID header that does not come in time closes the connection", async () => {
  await withPlugin({ headerTimeoutMs: 300 }, async (plugin, log) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: plugin.addr.port });
    try {
      await writeAll(conn, encoder.encode("ID:slow")); // and nothing more
      const started = performance.now();
      const n = await deadline(conn.read(new Uint8Array(8)).catch(() => null), 3000, "close");
      assert.equal(n, null);
      const waited = performance.now() - started;
      assert.ok(waited > 200 && waited < 2000, `closed after ${waited} ms`);
      await waitFor(
        () => log.has(/refused: no ID header within 0\.3 s \(7 of 250 bytes\)/),
        2000,
        "line",
      );
      assert.equal(plugin.held, 0);
    } finally {
      conn.close();
    }
  });
});

Deno.test("ReverseConnection limits: what a parked server sent comes first, in order; too much while parked drops it; an unclaimed one is closed", async () => {
  await withPlugin({ maxParkedBytes: 1024, parkedTimeoutMs: 600 }, async (plugin, log) => {
    const port = plugin.addr.port;
    // Bytes sent in several writes while parked are all delivered, in order, before later ones.
    const chatty = await Dialer.dial(port, "chatty", "RFB 003.008\n");
    await waitFor(() => plugin.parked === 1, 2000, "parked");
    await writeAll(chatty.conn, encoder.encode("one,"));
    await sleep(50);
    await writeAll(chatty.conn, encoder.encode("two,"));
    await sleep(50);
    const target = await plugin.lookup("chatty");
    if (target?.kind !== "stream") throw new Error(`not a stream target: ${target?.kind}`);
    const stream = await target.open(SESSION);
    assert.equal(plugin.parked, 0);
    await writeAll(chatty.conn, encoder.encode("three"));
    let text = "";
    const buffer = new Uint8Array(5); // small reads: the buffered chunks are split across them
    while (!text.endsWith("three")) {
      const n = await deadline(stream.read(buffer), 2000, "read");
      assert.notEqual(n, null);
      text += decoder.decode(buffer.subarray(0, n!));
    }
    assert.equal(text, "RFB 003.008\none,two,three");
    // The target was looked up once; a second open of the same target finds it gone.
    assert.throws(() => target.open(SESSION), /gone/);
    stream.close();
    chatty.close();

    // Over 1024 bytes while parked: dropped.
    const flood = await Dialer.dial(port, "flood", "x".repeat(2000));
    assert.equal(await flood.closedWithin(3000), true);
    assert.ok(log.has(/#[0-9a-f]{8} sent over 1024 bytes while waiting, dropped/));
    flood.close();

    // Not claimed within 600 ms: closed.
    const idle = await Dialer.dial(port, "idle");
    assert.equal(await idle.closedWithin(3000), true);
    assert.ok(log.has(/#[0-9a-f]{8} not claimed within 0\.6 s, closed/));
    assert.equal(await plugin.lookup("idle"), undefined);
    idle.close();
    assert.equal(plugin.held, 0);
  });
});

Deno.test("ReverseConnection limits: the number held, in all and per address, is bounded", async () => {
  await withPlugin({ maxHeld: 5, maxHeldPerAddress: 3 }, async (plugin, log) => {
    const port = plugin.addr.port;
    const sockets: ReturnType<typeof dialFrom>[] = [];
    try {
      for (let i = 0; i < 3; i++) sockets.push(dialFrom("127.0.0.2", port, idHeader(`a${i}`)));
      await waitFor(() => plugin.parked === 3, 3000, "3 parked from 127.0.0.2");
      const fourth = dialFrom("127.0.0.2", port, idHeader("a3"));
      sockets.push(fourth);
      await deadline(fourth.closed, 3000, "the fourth from one address closed");
      assert.ok(log.has(/refused: 3 connections from 127\.0\.0\.2 already waiting/));
      for (let i = 0; i < 2; i++) sockets.push(dialFrom("127.0.0.3", port, idHeader(`b${i}`)));
      await waitFor(() => plugin.parked === 5, 3000, "5 parked");
      const sixth = dialFrom("127.0.0.4", port, idHeader("c0"));
      sockets.push(sixth);
      await deadline(sixth.closed, 3000, "the sixth closed");
      assert.ok(log.has(/refused: 5 connections already waiting/));
      assert.equal(plugin.held, 5);
      // A place freed is a place taken again.
      sockets[0].socket.destroy();
      await waitFor(() => plugin.parked === 4, 3000, "one hung up");
      sockets.push(dialFrom("127.0.0.4", port, idHeader("c1")));
      await waitFor(() => plugin.parked === 5, 3000, "5 parked again");
    } finally {
      for (const { socket } of sockets) socket.destroy();
    }
  });
});

Deno.test({
  name:
    "ReverseConnection limits: at the default bound (1000 held, 100 per address), each having sent 16 KiB, the rest refused and memory bounded",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withPlugin({}, async (plugin) => {
      const port = plugin.addr.port;
      const { maxHeld, maxHeldPerAddress, maxParkedBytes } = plugin.limits;
      assert.deepEqual([maxHeld, maxHeldPerAddress, maxParkedBytes], [1000, 100, 16 * 1024]);
      const before = liveMemoryKiB();
      const sockets: ReturnType<typeof dialFrom>[] = [];
      const filler = new Uint8Array(maxParkedBytes).fill(0x41);
      try {
        // 11 addresses x 100: the last 100 find the table full.
        for (let a = 0; a < 11; a++) {
          for (let i = 0; i < maxHeldPerAddress; i++) {
            sockets.push(
              dialFrom(`127.0.1.${a + 1}`, port, concat([idHeader(`m${a}-${i}`), filler])),
            );
          }
          await sleep(20);
        }
        await waitFor(() => plugin.parked === maxHeld, 20000, `${maxHeld} parked`);
        let closed = 0;
        for (const { closed: done } of sockets) done.then(() => closed++);
        await waitFor(() => closed === sockets.length - maxHeld, 10000, "the rest refused");
        // Let the last bytes in before measuring.
        await sleep(300);
        assert.equal(plugin.held, maxHeld);
        const grown = liveMemoryKiB() - before;
        console.log(`  ${maxHeld} parked with ${maxParkedBytes} B each: +${grown} KiB live memory`);
        // 1000 x (16 KiB kept + 1 KiB read buffer) = 17,000 KiB; the test's own sockets share the process.
        assert.ok(grown < 40_000, `+${grown} KiB`);
      } finally {
        for (const { socket } of sockets) socket.destroy();
      }
      await waitFor(() => plugin.held === 0, 10000, "all forgotten");
    });
  },
});

/** A port nobody listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("ReverseConnection (command line): a dial-in port in use stops the start with the reason; -D hands the port to the daemon", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = new ProxyProcess([
    "127.0.0.1:0",
    "--token-plugin=ReverseConnection",
    `--token-source=127.0.0.1:${taken.addr.port}`,
  ]);
  try {
    assert.equal((await busy.status()).code, 2, busy.stderr);
    assert.match(
      busy.stderr,
      new RegExp(
        `ReverseConnection: cannot listen on 127\\.0\\.0\\.1:${taken.addr.port}: .*in use`,
        "i",
      ),
    );
  } finally {
    taken.close();
  }

  // -D: the launcher tried the port (so a mistake stops it before backgrounding), then let go of it for the
  // daemon, which serves a reverse session.
  const dir = await Deno.makeTempDir();
  const [port, dialPort] = [freePort(), freePort()];
  let pid: number | undefined;
  let dialer: Dialer | undefined;
  try {
    const launcher = new ProxyProcess([
      "-D",
      `127.0.0.1:${port}`,
      "--token-plugin=ReverseConnection",
      `--token-source=127.0.0.1:${dialPort}`,
      `--pid-file=${dir}/ws.pid`,
      `--log-file=${dir}/ws.log`,
    ]);
    assert.equal((await launcher.status(20000)).code, 0, launcher.stderr);
    pid = Number((await Deno.readTextFile(`${dir}/ws.pid`)).trim());
    dialer = await Dialer.dial(dialPort, "daemon-desk");
    await waitFor(
      () => Deno.readTextFileSync(`${dir}/ws.log`).includes("parked as"),
      5000,
      "parked",
    );
    const session = new Session(port, "daemon-desk");
    assert.equal(await session.opened, true);
    await session.waitFor(GREETING);
    await session.close();
  } finally {
    dialer?.close();
    if (pid) Deno.kill(pid, "SIGTERM");
    await waitFor(
      () => {
        try {
          Deno.statSync(`${dir}/ws.pid`);
          return false;
        } catch {
          return true;
        }
      },
      8000,
      "the daemon's exit",
    ).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
