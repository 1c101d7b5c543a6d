/**
 * A small Redis client for token lookups: RESP2 encoding and decoding as pure code, and one persistent connection
 * (TCP or TLS) shared by every lookup, commands pipelined on it.
 *
 * Why not connect per lookup (as Python's TokenRedis does): a connection costs a TCP (and TLS) handshake, AUTH and
 * SELECT, on every WebSocket session. Why not a pool: replies come back in order, so one connection carries any
 * number of concurrent lookups.
 *
 * Failure rules: a command that gets no reply within `commandTimeoutMs` fails, and so does the connection (replies
 * are positional: a late one would answer the wrong command); the commands queued on a failed connection fail with
 * the same reason. The next command connects again, but not before a back-off (100 ms doubling to 2 s) after a
 * failed connect, so a Redis that is down costs a refused connect per back-off period, not per session. Nothing
 * here ever throws out of a timer or a read loop: every failure reaches a command's promise.
 *
 * @module
 */

import { isIP } from "node:net";
import tls from "node:tls";
import { type ByteStream, closeQuietly, concatBytes, writeAll } from "./io.ts";
import { NodeSocketStream } from "./nodesocket.ts";

/** A RESP error reply (`-ERR ...`): Redis answered, and the answer is an error. */
export class RespError {
  constructor(readonly message: string) {}
}

/** A RESP2 reply: simple or bulk string, integer, null (nil bulk or array), error, or array. */
export type RespReply = string | number | null | RespError | RespReply[];

const encoder = new TextEncoder();
const CR = 13;
const LF = 10;

/** A command as a RESP array of bulk strings (binary-safe: a token can hold any byte). */
export function encodeCommand(args: readonly string[]): Uint8Array {
  const parts = args.map((arg) => encoder.encode(arg));
  const head = `*${parts.length}\r\n`;
  const chunks: Uint8Array[] = [encoder.encode(head)];
  for (const part of parts) {
    chunks.push(encoder.encode(`$${part.length}\r\n`), part, encoder.encode("\r\n"));
  }
  return concatBytes(chunks);
}

/** Thrown by RespParser for bytes that are not RESP, or a reply over its size bound. */
export class RespProtocolError extends Error {
  override name = "RespProtocolError";
}

/** An array reply whose items are still arriving. */
interface OpenArray {
  items: RespReply[];
  count: number;
}

/**
 * An incremental RESP2 reply parser: `push` bytes as they arrive, `next` takes complete replies in order.
 *
 * One pass: bytes are taken as soon as they form a line or a bulk string, and a reply's open arrays wait on a
 * stack (no recursion), so a reply cut into many small reads costs time in proportion to its size, and nesting
 * costs no call stack. Bounded: a reply (or the bytes waiting to become one) over `maxReply` bytes (plus room for
 * its headers) is a protocol error, so a broken or hostile server cannot make it buffer without limit.
 */
export class RespParser {
  #buffer = new Uint8Array(0);
  #start = 0;
  #end = 0;
  /** Bytes from #start already searched, in vain, for the CRLF that ends the current line. */
  #searched = 0;
  /** The length of the bulk string whose header is read and whose body is awaited; -1 when none. */
  #bulk = -1;
  /** The arrays the current reply is inside of, innermost last. */
  readonly #open: OpenArray[] = [];
  /** Bytes of the current reply taken so far. */
  #taken = 0;
  readonly #limit: number;
  readonly #decoder = new TextDecoder();

  constructor(readonly maxReply: number) {
    this.#limit = maxReply + 64;
  }

  push(bytes: Uint8Array): void {
    // Once `next` has taken every complete reply, what is left is a part of one reply, within the bound: more
    // means nobody takes the replies.
    if (this.#end - this.#start > this.#limit) this.#over();
    if (this.#end + bytes.length > this.#buffer.length) {
      const kept = this.#buffer.subarray(this.#start, this.#end);
      const grown = kept.length + bytes.length > this.#buffer.length
        ? new Uint8Array(Math.max(kept.length + bytes.length, 2 * this.#buffer.length, 256))
        : this.#buffer;
      grown.set(kept);
      this.#buffer = grown;
      this.#end = kept.length;
      this.#start = 0;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** The next complete reply, or undefined until more bytes arrive. */
  next(): RespReply | undefined {
    for (;;) {
      let value: RespReply;
      if (this.#bulk >= 0) {
        const length = this.#bulk;
        if (this.#end - this.#start < length + 2) return undefined;
        const body = this.#buffer.subarray(this.#start, this.#start + length);
        if (
          this.#buffer[this.#start + length] !== CR || this.#buffer[this.#start + length + 1] !== LF
        ) {
          throw new RespProtocolError("bulk string without its CRLF");
        }
        value = this.#decoder.decode(body);
        this.#take(length + 2);
        this.#bulk = -1;
      } else {
        const line = this.#line();
        if (line === undefined) return undefined;
        const type = line[0];
        const rest = line.slice(1);
        if (type === "+") {
          value = rest;
        } else if (type === "-") {
          value = new RespError(rest);
        } else if (type === ":") {
          value = this.#integer(rest);
        } else if (type === "$") {
          const length = this.#integer(rest);
          if (length < -1) throw new RespProtocolError(`bad bulk length ${rest}`);
          if (length > this.maxReply || this.#taken + length + 2 > this.#limit) this.#over();
          if (length >= 0) {
            this.#bulk = length;
            continue;
          }
          value = null;
        } else if (type === "*") {
          const count = this.#integer(rest);
          if (count < -1) throw new RespProtocolError(`bad array length ${rest}`);
          if (count > 0) {
            this.#open.push({ items: [], count });
            continue;
          }
          value = count === 0 ? [] : null;
        } else {
          throw new RespProtocolError(`not a RESP reply (type byte ${JSON.stringify(type ?? "")})`);
        }
      }
      // The value is the reply, or an item of the innermost open array, which it may complete (and so on out).
      for (;;) {
        const array = this.#open.at(-1);
        if (!array) {
          this.#taken = 0;
          return value;
        }
        array.items.push(value);
        if (array.items.length < array.count) break;
        this.#open.pop();
        value = array.items;
      }
    }
  }

  /** The text of the line at #start (without CRLF), taken; undefined while its CRLF has not arrived. */
  #line(): string | undefined {
    for (let i = this.#start + Math.max(this.#searched - 1, 0); i + 1 < this.#end; i++) {
      if (this.#buffer[i] === CR && this.#buffer[i + 1] === LF) {
        const text = this.#decoder.decode(this.#buffer.subarray(this.#start, i));
        this.#take(i + 2 - this.#start);
        return text;
      }
    }
    this.#searched = this.#end - this.#start;
    if (this.#taken + this.#searched > this.#limit) this.#over();
    return undefined;
  }

  #take(count: number): void {
    this.#start += count;
    this.#taken += count;
    this.#searched = 0;
    if (this.#taken > this.#limit) this.#over();
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  #over(): never {
    throw new RespProtocolError(`reply over ${this.maxReply} bytes`);
  }

  #integer(text: string): number {
    if (!/^-?\d{1,15}$/.test(text)) {
      throw new RespProtocolError(`bad integer ${JSON.stringify(text.slice(0, 20))}`);
    }
    return Number(text);
  }
}

/** Where and how to reach Redis. */
export interface RedisOptions {
  hostname: string;
  port: number;
  /** TLS to Redis, verified against Deno's trusted CAs (plus `DENO_CERT`). */
  tls: boolean;
  password?: string;
  /** @default 0 */
  db: number;
  /** @default 2000 */
  connectTimeoutMs?: number;
  /** @default 2000 */
  commandTimeoutMs?: number;
  /** @default 65536 */
  maxReply?: number;
  /**
   * The connection's name in CLIENT LIST.
   * @default "websockify"
   */
  clientName?: string;
}

/** The first wait after a failed connect, and the longest. */
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2000;

/** A command got no reply in time. */
class NoAnswer extends Error {}

interface PendingCommand {
  resolve(reply: RespReply): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** What a link talks over: a Deno TCP connection, or a node:tls socket (see RedisClient #connectTls). */
type LinkConn = ByteStream & { unref(): void };

/** A node:tls socket as a link's connection. */
class NodeTlsConn extends NodeSocketStream {
  constructor(readonly tlsSocket: tls.TLSSocket) {
    super(tlsSocket);
  }

  unref(): void {
    this.tlsSocket.unref();
  }
}

/** One open connection: commands written in order, replies matched to them in order. */
class RedisLink {
  readonly #conn: LinkConn;
  readonly #parser: RespParser;
  readonly #pending: PendingCommand[] = [];
  readonly #commandTimeoutMs: number;
  readonly #onFail: (link: RedisLink) => void;
  #writes: Promise<void> = Promise.resolve();
  failure: Error | undefined;
  /** True once a reply has come: the peer speaks RESP. */
  answered = false;

  constructor(
    conn: LinkConn,
    options: { maxReply: number; commandTimeoutMs: number },
    onFail: (link: RedisLink) => void,
  ) {
    this.#conn = conn;
    this.#parser = new RespParser(options.maxReply);
    this.#commandTimeoutMs = options.commandTimeoutMs;
    this.#onFail = onFail;
    // The connection must never keep the process alive (a proxy shutting down just exits).
    conn.unref();
    this.#read();
  }

  send(args: readonly string[]): Promise<RespReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new NoAnswer(`no answer within ${this.#commandTimeoutMs} ms`)),
        this.#commandTimeoutMs,
      );
      this.#pending.push({ resolve, reject, timer });
      const bytes = encodeCommand(args);
      this.#writes = this.#writes
        .then(() => writeAll(this.#conn, bytes))
        .catch((error) => this.fail(new Error(`write failed: ${(error as Error).message}`)));
    });
  }

  /** Ends the connection; every command waiting on it fails with `error`. */
  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    for (const command of this.#pending.splice(0)) {
      clearTimeout(command.timer);
      command.reject(error);
    }
    this.#onFail(this);
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (!this.failure) {
        const count = await this.#conn.read(buffer);
        if (count === null) {
          this.fail(new Error("connection closed by Redis"));
          return;
        }
        this.#parser.push(buffer.subarray(0, count));
        for (let reply = this.#parser.next(); reply !== undefined; reply = this.#parser.next()) {
          const command = this.#pending.shift();
          if (!command) throw new RespProtocolError("a reply to no command");
          this.answered = true;
          clearTimeout(command.timer);
          command.resolve(reply);
        }
      }
    } catch (error) {
      this.fail(
        error instanceof RespProtocolError
          ? new Error(`protocol error: ${error.message}`)
          : new Error((error as Error).message),
      );
    }
  }
}

/**
 * A Redis connection that comes back: commands go over one persistent connection, made on first use and again
 * after a failure (with back-off after a failed connect). See the module comment for the failure rules.
 */
export class RedisClient {
  readonly #options: Required<RedisOptions>;
  #link: RedisLink | undefined;
  #connecting: Promise<RedisLink> | undefined;
  #backoffMs = 0;
  #retryAt = 0;
  #lastError = "";
  #closed = false;

  constructor(options: RedisOptions) {
    this.#options = {
      connectTimeoutMs: 2000,
      commandTimeoutMs: 2000,
      maxReply: 64 * 1024,
      clientName: "websockify",
      password: "",
      ...options,
    };
  }

  /** `host:port` of the server, for messages. */
  get address(): string {
    const { hostname, port } = this.#options;
    return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  }

  /** Runs one command; rejects with the reason when Redis cannot be reached or does not answer in time. */
  async command(args: readonly string[]): Promise<RespReply> {
    const link = this.#link ?? await this.#connect();
    return await link.send(args);
  }

  /** Closes the connection; commands after this fail. */
  close(): void {
    this.#closed = true;
    this.#link?.fail(new Error("client closed"));
  }

  #connect(): Promise<RedisLink> {
    if (this.#closed) return Promise.reject(new Error("client closed"));
    const wait = this.#retryAt - Date.now();
    if (wait > 0) {
      return Promise.reject(new Error(`${this.#lastError} (next try in ${wait} ms)`));
    }
    this.#connecting ??= this.#open().then(
      (link) => {
        this.#connecting = undefined;
        // Closed while connecting: the new connection is not kept.
        if (this.#closed) {
          link.fail(new Error("client closed"));
          throw link.failure;
        }
        this.#backoffMs = 0;
        this.#link = link;
        return link;
      },
      (error: Error) => {
        this.#connecting = undefined;
        this.#backoffMs = Math.min(Math.max(2 * this.#backoffMs, BACKOFF_FIRST_MS), BACKOFF_MAX_MS);
        this.#retryAt = Date.now() + this.#backoffMs;
        this.#lastError = error.message;
        throw error;
      },
    );
    return this.#connecting;
  }

  async #open(): Promise<RedisLink> {
    const { hostname, port, tls, password, db, connectTimeoutMs } = this.#options;
    let conn: LinkConn;
    if (tls) {
      conn = await this.#connectTls();
    } else {
      const connecting = Deno.connect({ hostname, port });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no connection within ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
      });
      try {
        conn = await Promise.race([connecting, timeout]);
      } catch (error) {
        // A connect that completes after the timeout is closed, not leaked.
        connecting.then(closeQuietly, () => {});
        throw new Error(`cannot connect: ${(error as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
    const link = new RedisLink(conn, this.#options, (failed) => {
      if (this.#link === failed) this.#link = undefined;
    });
    // AUTH and SELECT are pipelined; the link is handed out only once both succeed. The name (it shows in
    // CLIENT LIST) is a courtesy: a server that refuses it is still used.
    const setup: Promise<RespReply>[] = [];
    if (password) setup.push(link.send(["AUTH", password]));
    if (db !== 0) setup.push(link.send(["SELECT", String(db)]));
    const named = link.send(["CLIENT", "SETNAME", this.#options.clientName]).catch(() => null);
    try {
      for (const reply of await Promise.all(setup)) {
        if (reply instanceof RespError) {
          throw new Error(`Redis refused the connection setup: ${reply.message}`);
        }
      }
      await named;
      // The link may have failed while being set up (no answer to the name): it is not handed out.
      if (link.failure) throw link.failure;
    } catch (error) {
      link.fail(error as Error);
      // A TLS-only Redis drops a plain connection without a word.
      if (!tls && !link.answered && !(error instanceof NoAnswer)) {
        throw new Error(`${(error as Error).message} (no answer at all: is that port TLS-only?)`);
      }
      throw error;
    }
    return link;
  }

  /**
   * A TLS connection, handshake done, within the connect time; verified against the same roots as Deno's own
   * TLS (plus `DENO_CERT`). node:tls, not Deno.connectTls: a Deno TLS connection whose handshake never
   * completes (a plain Redis waits for a line end that a ClientHello lacks) keeps its socket after close() until
   * the peer closes it, one more on every try; a node socket lets it go on destroy().
   */
  #connectTls(): Promise<LinkConn> {
    const { hostname, port, connectTimeoutMs } = this.#options;
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: hostname,
        port,
        ...(isIP(hostname) ? {} : { servername: hostname }),
      });
      let connected = false;
      const fail = (message: string) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`cannot connect: ${message}`));
      };
      const timer = setTimeout(() =>
        fail(
          connected
            ? `no TLS handshake within ${connectTimeoutMs} ms (is that port plain, without TLS?)`
            : `no connection within ${connectTimeoutMs} ms`,
        ), connectTimeoutMs);
      const onError = (error: Error) =>
        fail(connected ? `TLS handshake failed: ${error.message}` : error.message);
      socket.once("error", onError);
      socket.once("connect", () => connected = true);
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        socket.removeListener("error", onError);
        resolve(new NodeTlsConn(socket));
      });
    });
  }
}
