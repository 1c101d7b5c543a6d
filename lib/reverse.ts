/**
 * Reverse connections (`--token-plugin ReverseConnection --token-source [HOST:]PORT`): VNC servers behind NAT dial
 * out to the proxy, and a browser reaches one by its ID as the session's token. The convention is UltraVNC's
 * repeater, which `x11vnc -connect repeater=ID:abc123+host:port` follows: the server connects, sends a 250-byte
 * NUL-padded `ID:<name>` string, then speaks RFB (its greeting, `RFB 003.008\n`, comes at once).
 *
 * The plugin listens on its source address for such dial-ins, reads the ID header under a deadline and parks the
 * connection under its ID. A WebSocket session whose token is that ID gets the parked connection as its target
 * (once: it is no longer parked then); what the server sent while parked is delivered first. Everything held is
 * bounded (see `ReverseLimits`): the number of connections, per address too, the wait, the bytes buffered. A
 * second dial-in with an ID that is already parked is refused and the first one stays: replacing it would let
 * anyone who learns an ID take over a waiting server. IDs are secrets: log lines show their hash (secrets.ts).
 *
 *     const plugin = await ReverseConnections.open("127.0.0.1:5500", log);
 *     await plugin.lookup("abc123");   // a "stream" target once a server dialed in with ID:abc123, else undefined
 *     plugin.close();                  // at shutdown: the listener and every parked connection
 *
 * @module
 */

import { sleep } from "./deadline.ts";
import { formatHostPort, parsePort, splitHostPort } from "./hostport.ts";
import { type ByteStream, closeQuietly } from "./io.ts";
import type { TokenPlugin } from "./plugins.ts";
import { tokenHash } from "./secrets.ts";
import type { StreamSession, TargetSpec } from "./settings.ts";
import { describeError } from "./targets.ts";

/** The length of the ID header (UltraVNC's repeater buffer; x11vnc's `repeater=` is its `pre250=`). */
export const ID_HEADER_LENGTH = 250;
const ID_PREFIX = "ID:";

/** What the plugin holds at most, and for how long. */
export interface ReverseLimits {
  /** A dial-in has this long to send its whole ID header. */
  readonly headerTimeoutMs: number;
  /** Connections held at once (reading their header or parked): a dial-in past it is closed at once. */
  readonly maxHeld: number;
  /** Connections held at once from one address. */
  readonly maxHeldPerAddress: number;
  /** A parked server that no session claims within this time is closed. */
  readonly parkedTimeoutMs: number;
  /** A parked server that sends more than this before a session claims it is dropped (RFB sends 12 bytes). */
  readonly maxParkedBytes: number;
}

/** The limits `--token-plugin ReverseConnection` runs with (the README states them). */
export const DEFAULT_REVERSE_LIMITS: ReverseLimits = {
  headerTimeoutMs: 10_000,
  maxHeld: 1000,
  maxHeldPerAddress: 100,
  parkedTimeoutMs: 30 * 60_000,
  maxParkedBytes: 16 * 1024,
};

/** Each parked connection's pending read (it notices a hang-up, and takes the greeting). */
const WATCH_READ = 1024;

/** Where the plugin listens: `PORT` (every interface), `HOST:PORT`, `[v6]:PORT`; port 0 picks a free one. */
export function parseReverseSource(text: string): { hostname: string; port: number } | undefined {
  // Brackets only around a whole IPv6 address.
  if (/[\[\]]/.test(text) && !/^\[[^\[\]]+\]:[^\[\]]*$/.test(text)) return undefined;
  const parts = splitHostPort(text) ?? { host: "", port: text };
  const port = parsePort(parts.port, true);
  if (port === undefined || /\s/.test(parts.host)) return undefined;
  return { hostname: parts.host, port };
}

/** The source as the command line keeps it (`:5500` for every interface). */
export function formatReverseSource(source: { hostname: string; port: number }): string {
  return formatHostPort(source.hostname, source.port);
}

/**
 * The ID of a 250-byte header: `ID:` then the name, printable ASCII without blanks, then NUL padding (what
 * follows the first NUL is ignored). A string says why a header is refused.
 */
export function parseIdHeader(header: Uint8Array): { id: string } | { refused: string } {
  if (!startsLikeIdHeader(header)) {
    return { refused: 'not an ID header ("ID:<name>" padded to 250 bytes with NULs expected)' };
  }
  if (header.length !== ID_HEADER_LENGTH) return { refused: "not a 250-byte ID header" };
  const end = header.indexOf(0);
  if (end < 0) return { refused: "ID header without its NUL padding" };
  const name = header.subarray(ID_PREFIX.length, end);
  if (name.length === 0) return { refused: "empty ID" };
  if (name.some((byte) => byte < 0x21 || byte > 0x7e)) {
    return { refused: "the ID has characters other than printable ASCII" };
  }
  return { id: String.fromCharCode(...name) };
}

/** Whether the first bytes read so far can start an ID header (a stranger is refused before 250 bytes). */
function startsLikeIdHeader(bytes: Uint8Array): boolean {
  for (let i = 0; i < Math.min(bytes.length, ID_PREFIX.length); i++) {
    if (bytes[i] !== ID_PREFIX.charCodeAt(i)) return false;
  }
  return true;
}

/** Where the plugin's lines go. */
export interface ReverseLog {
  info(message: string): void;
  warning(message: string): void;
}

/** One dial-in, from accept to hand-over (or close). */
interface Held {
  readonly conn: Deno.TcpConn;
  /** `host:port` of the server that dialed in. */
  readonly from: string;
  /** Its address alone (the per-address count). */
  readonly address: string;
  state: "header" | "parked" | "gone";
  id?: string;
  timer?: ReturnType<typeof setTimeout>;
  /** Bytes the server sent while parked (copies), in order. */
  chunks: Uint8Array[];
  bytes: number;
  /** The watcher's read in progress: the session takes it over (it cannot be cancelled). */
  pending?: Promise<number | null>;
  readonly watchBuffer: Uint8Array;
}

/** The ReverseConnection token plugin: a listener for dial-ins and the servers parked by ID. */
export class ReverseConnections implements TokenPlugin {
  readonly name = "ReverseConnection";
  readonly limits: ReverseLimits;
  readonly #listener: Deno.TcpListener;
  readonly #log: ReverseLog;
  readonly #held = new Set<Held>();
  readonly #perAddress = new Map<string, number>();
  readonly #parked = new Map<string, Held>();
  #closed = false;

  private constructor(listener: Deno.TcpListener, log: ReverseLog, limits: ReverseLimits) {
    this.#listener = listener;
    this.#log = log;
    this.limits = limits;
  }

  /** Listens on `source` (`[HOST:]PORT`); throws with the reason when it cannot. */
  static open(
    source: string,
    log: ReverseLog,
    limits: ReverseLimits = DEFAULT_REVERSE_LIMITS,
  ): ReverseConnections {
    const address = parseReverseSource(source);
    if (!address) throw new Error(`--token-source '${source}': expected [HOST:]PORT for dial-ins`);
    let listener: Deno.TcpListener;
    try {
      listener = listenTcp(address.hostname, address.port);
    } catch (error) {
      throw new Error(
        `ReverseConnection: cannot listen on ${
          formatHostPort(address.hostname || "::", address.port)
        }: ${describeError(error)}`,
      );
    }
    const plugin = new ReverseConnections(listener, log, limits);
    const { hostname, port } = plugin.addr;
    log.info(
      `ReverseConnection: servers dial in on ${formatHostPort(hostname, port)} ` +
        `(UltraVNC repeater ID header; at most ${limits.maxHeld} waiting, ` +
        `${duration(limits.parkedTimeoutMs)} each)`,
    );
    plugin.#acceptLoop();
    return plugin;
  }

  /** Where dial-ins are accepted (its port, when 0 was asked for). */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** Servers parked now, waiting for a session. */
  get parked(): number {
    return this.#parked.size;
  }

  /** Connections held now: parked, or still sending their ID header. */
  get held(): number {
    return this.#held.size;
  }

  /** The parked server of this ID as a target (claimed when the session opens it); undefined if none. */
  lookup(token: string): Promise<TargetSpec | undefined> {
    const held = this.#parked.get(token);
    if (!held) return Promise.resolve(undefined);
    return Promise.resolve({
      kind: "stream",
      name: `reverse connection ${tokenHash(token)} from ${held.from}`,
      open: (session) => this.#claim(token, held, session),
    });
  }

  /** Stops listening and closes every connection still held (those handed to sessions are theirs). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const held of [...this.#held]) this.#drop(held);
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // Out of file descriptors, or a connection reset before it was accepted: wait a little, go on.
        this.#log.warning(`ReverseConnection: accept failed: ${describeError(error)}`);
        await sleep(100);
        continue;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const remote = conn.remoteAddr as Deno.NetAddr;
    const address = remote.hostname.replace(/^::ffff:/, "");
    const from = formatHostPort(address, remote.port);
    const fromAddress = this.#perAddress.get(address) ?? 0;
    const refusal = this.#held.size >= this.limits.maxHeld
      ? `${this.limits.maxHeld} connections already waiting`
      : fromAddress >= this.limits.maxHeldPerAddress
      ? `${this.limits.maxHeldPerAddress} connections from ${address} already waiting`
      : undefined;
    if (refusal) {
      this.#log.warning(`reverse ${from}: refused: ${refusal}`);
      closeQuietly(conn);
      return;
    }
    try {
      conn.setNoDelay(true); // RFB is interactive
    } catch { /* already reset */ }
    const held: Held = {
      conn,
      from,
      address,
      state: "header",
      chunks: [],
      bytes: 0,
      watchBuffer: new Uint8Array(WATCH_READ),
    };
    this.#held.add(held);
    this.#perAddress.set(address, fromAddress + 1);
    this.#readHeader(held);
  }

  /** Reads the ID header under its deadline, then parks the connection (or refuses it, with a line). */
  async #readHeader(held: Held): Promise<void> {
    const header = new Uint8Array(ID_HEADER_LENGTH);
    let got = 0;
    let late = false;
    held.timer = setTimeout(() => {
      late = true;
      closeQuietly(held.conn);
    }, this.limits.headerTimeoutMs);
    let refusal: string | undefined;
    try {
      while (got < header.length && startsLikeIdHeader(header.subarray(0, got))) {
        const n = await held.conn.read(header.subarray(got));
        if (n === null) {
          refusal = `closed after ${got} bytes of its ID header`;
          break;
        }
        got += n;
      }
    } catch (error) {
      refusal = late
        ? `no ID header within ${duration(this.limits.headerTimeoutMs)} (${got} of 250 bytes)`
        : `read failed: ${describeError(error)}`;
    }
    clearTimeout(held.timer);
    if (held.state === "gone") return; // closed at shutdown
    const parsed = refusal === undefined
      ? parseIdHeader(got === header.length ? header : header.subarray(0, got))
      : { refused: refusal };
    if ("refused" in parsed) {
      this.#log.warning(`reverse ${held.from}: refused: ${parsed.refused}`);
      this.#drop(held);
      return;
    }
    const { id } = parsed;
    if (this.#parked.has(id)) {
      this.#log.warning(
        `reverse ${held.from}: refused: ID ${tokenHash(id)} is already waiting ` +
          `(from ${this.#parked.get(id)!.from}; the first one stays)`,
      );
      this.#drop(held);
      return;
    }
    held.id = id;
    held.state = "parked";
    this.#parked.set(id, held);
    held.timer = setTimeout(() => {
      this.#log.info(
        `reverse ${held.from}: ${tokenHash(id)} not claimed within ${
          duration(this.limits.parkedTimeoutMs)
        }, closed`,
      );
      this.#drop(held);
    }, this.limits.parkedTimeoutMs);
    this.#log.info(`reverse ${held.from}: parked as ${tokenHash(id)}`);
    this.#watch(held);
  }

  /** While parked: keeps what the server sends (bounded), and forgets it when it hangs up. */
  async #watch(held: Held): Promise<void> {
    while (held.state === "parked") {
      const read = held.conn.read(held.watchBuffer);
      held.pending = read;
      let n: number | null;
      try {
        n = await read;
      } catch {
        n = null;
      }
      // Claimed meanwhile: the session's stream takes this read's outcome over.
      if (held.state !== "parked") return;
      held.pending = undefined;
      if (n === null) {
        this.#log.info(`reverse ${held.from}: ${tokenHash(held.id!)} hung up while waiting`);
        this.#drop(held);
        return;
      }
      held.bytes += n;
      if (held.bytes > this.limits.maxParkedBytes) {
        this.#log.warning(
          `reverse ${held.from}: ${tokenHash(held.id!)} sent over ${this.limits.maxParkedBytes} ` +
            `bytes while waiting, dropped`,
        );
        this.#drop(held);
        return;
      }
      held.chunks.push(held.watchBuffer.slice(0, n));
    }
  }

  /** A session takes the parked server: no longer parked, its bytes so far come first. */
  #claim(id: string, held: Held, session: StreamSession): ByteStream {
    if (this.#parked.get(id) !== held || held.state !== "parked") {
      throw new Error("the server that dialed in is gone (it hung up, or another session took it)");
    }
    this.#forget(held);
    held.state = "gone";
    this.#log.info(`reverse ${held.from}: ${tokenHash(id)} paired with ${session.client}`);
    return new HandedOver(held.conn, held.chunks, held.pending, held.watchBuffer);
  }

  /** No longer held: counts, the timer and the ID. */
  #forget(held: Held): void {
    clearTimeout(held.timer);
    if (!this.#held.delete(held)) return;
    const left = (this.#perAddress.get(held.address) ?? 1) - 1;
    if (left > 0) this.#perAddress.set(held.address, left);
    else this.#perAddress.delete(held.address);
    if (held.id !== undefined && this.#parked.get(held.id) === held) this.#parked.delete(held.id);
  }

  /** Forgotten and closed. */
  #drop(held: Held): void {
    this.#forget(held);
    held.state = "gone";
    held.chunks = [];
    closeQuietly(held.conn);
  }
}

/** `30 min`, `10 s`, `0.6 s`. */
function duration(ms: number): string {
  return ms >= 60_000 ? `${ms / 60_000} min` : `${ms / 1000} s`;
}

/** A TCP listener; a bare port is every interface (one dual-stack socket, IPv4 only where IPv6 is off). */
function listenTcp(hostname: string, port: number): Deno.TcpListener {
  if (hostname !== "") return Deno.listen({ hostname, port });
  try {
    return Deno.listen({ hostname: "::", port });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) throw error;
    return Deno.listen({ hostname: "0.0.0.0", port });
  }
}

/**
 * A parked connection handed to its session: first the bytes the server sent while parked, then the outcome of
 * the read that was pending when it was claimed (a Deno read cannot be cancelled), then the connection itself.
 */
class HandedOver implements ByteStream {
  readonly #conn: Deno.Conn;
  #chunks: Uint8Array[];
  #pending: Promise<number | null> | undefined;
  readonly #pendingBuffer: Uint8Array;

  constructor(
    conn: Deno.Conn,
    chunks: Uint8Array[],
    pending: Promise<number | null> | undefined,
    pendingBuffer: Uint8Array,
  ) {
    this.#conn = conn;
    this.#chunks = chunks;
    this.#pending = pending;
    this.#pendingBuffer = pendingBuffer;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    if (this.#chunks.length === 0 && this.#pending) {
      const pending = this.#pending;
      this.#pending = undefined;
      const n = await pending;
      if (n === null) return null;
      this.#chunks.push(this.#pendingBuffer.subarray(0, n));
    }
    const chunk = this.#chunks[0];
    if (!chunk) return await this.#conn.read(buffer);
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    return this.#conn.write(data);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#conn.close();
  }
}
