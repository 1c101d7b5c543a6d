/**
 * The life of one proxied WebSocket session after the 101: two pumps, each read -> await write, so a slow side
 * stops reads on the other and a connection's memory stays bounded whatever the peers do.
 *
 *   client --frames--> [Receiver] --payload--> target      (pumpClient)
 *   target --bytes---> [frame header in headroom] --> client  (pumpTarget)
 *
 * Ending, in every case without losing a byte a peer sent before a clean close:
 * - client close frame: everything before it has reached the target; the close is echoed (its code, or 1000);
 *   the client TCP is closed; the target gets a FIN and is closed once it has said EOF (bounded wait).
 * - target EOF: everything it sent has been framed to the client, then close 1000 "Target closed"; data the
 *   client sends until its close reply still goes to the (half-closed) target.
 * - client drops without a close frame: the target gets its FIN at once.
 * - protocol error, target error, server shutdown: a close frame with the reason, then the same bounded wait.
 * Every wait after the first close is bounded by `closeTimeout`: then both sockets are closed outright.
 *
 * @module
 */

import { type ByteStream, closeQuietly, ReadBuffers, writeAll } from "./io.ts";
import { Base64MessageDecoder, encodeBase64 } from "./websocket/base64.ts";
import {
  CloseCode,
  encodeClosePayload,
  encodeFrame,
  MAX_SERVER_HEADER,
  Opcode,
  writeHeaderBefore,
} from "./websocket/frames.ts";
import type { Framing } from "./websocket/handshake.ts";
import { Receiver, type ReceiverEvent } from "./websocket/receiver.ts";

/** A target write pending this long makes the relay check whether the client is still there. */
const TARGET_STALL_MS = 500;
/**
 * While a target write is stuck, at most this much client data is read ahead to find out whether the client
 * left. A client that left with more in flight is noticed when the target reads again, or by --heartbeat.
 */
const READ_AHEAD_LIMIT = 1024 * 1024;
const READ_AHEAD_CHUNK = 64 * 1024;

/**
 * Stuck target writes are found by one timer for the whole process, which runs while sessions exist and looks
 * only at relays with a write pending: a timer per write would cost every message.
 */
const relays = new Set<Relay>();
const writesInProgress = new Set<Relay>();
let stallTimer: ReturnType<typeof setInterval> | undefined;

function watchStalls(relay: Relay): void {
  relays.add(relay);
  if (stallTimer !== undefined) return;
  stallTimer = setInterval(() => {
    const now = performance.now();
    for (const pending of writesInProgress) pending.checkTargetWrite(now);
  }, TARGET_STALL_MS / 2);
  Deno.unrefTimer(stallTimer);
}

function unwatchStalls(relay: Relay): void {
  relays.delete(relay);
  writesInProgress.delete(relay);
  if (relays.size === 0 && stallTimer !== undefined) {
    clearInterval(stallTimer);
    stallTimer = undefined;
  }
}

/** Client input read while the target was not taking any: its chunks, in order, and whether the client left. */
interface ReadAhead {
  chunks: Uint8Array[];
  bytes: number;
  /** The client closed or failed after these chunks. */
  ended: boolean;
  /** Settles when no read of it is pending any more. */
  done: Promise<void>;
}

export interface RelayOptions {
  framing: Framing;
  /** Milliseconds to wait for the peers to finish closing once a close has begun. Default 3000. */
  closeTimeout?: number;
  /** Send an empty ping this often (ms); a client that leaves two unanswered is closed as dead. 0: never. */
  heartbeat?: number;
  /** Sees the payload as it goes through (session recording, traffic glyphs). */
  observer?: RelayObserver;
}

/** Hooks into the data path. They run synchronously: keep them cheap. */
export interface RelayObserver {
  /** Client payload, decoded, just written to the target. */
  fromClient?(bytes: Uint8Array): void;
  /** Target bytes, just framed to the client. */
  fromTarget?(bytes: Uint8Array): void;
  /** websockify's --traffic glyphs: `}` client read, `>` target write, `{` target read, `<` client write. */
  traffic?(glyph: string): void;
}

/** Who ended the session. */
export type ClosedBy = "client" | "target" | "server" | "client-dropped" | "heartbeat";

/** What a finished session reports for its log line. */
export interface RelayResult {
  /** Payload bytes the client sent that were written to the target. */
  bytesFromClient: number;
  /** Payload bytes the target sent that were framed to the client. */
  bytesToClient: number;
  /** The close code of the session (1006 when the client vanished without one). */
  code: number;
  reason: string;
  closedBy: ClosedBy;
  durationMs: number;
}

/** One relayed session. `run` resolves once both sockets are closed; it never rejects. */
export class Relay {
  readonly #client: ByteStream;
  readonly #target: ByteStream;
  readonly #framing: Framing;
  readonly #closeTimeout: number;
  readonly #observer: RelayObserver;
  readonly #heartbeatMs: number;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #unansweredPings = 0;
  readonly #receiver = new Receiver();
  readonly #base64 = new Base64MessageDecoder();
  readonly #started = performance.now();

  /** Serialises writes to the client: both pumps send frames there. */
  #clientWrites: Promise<unknown> = Promise.resolve();

  #clientOpen = true;
  #closeSent = false;
  #closeReceived = false;
  #targetWritable = true;
  #targetEnded = false;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #code: number = CloseCode.Abnormal;
  #reason = "Connection closed abnormally";
  #closedBy: ClosedBy = "client-dropped";
  #bytesFromClient = 0;
  #bytesToClient = 0;
  /** Client bytes read while a target write was stuck; the client pump takes them next. */
  #readAhead: ReadAhead | undefined;
  /** When the pending target write began (undefined: none pending). */
  #targetWriteSince: number | undefined;
  #targetWriteStuck = false;
  /** The client broke the protocol; its next bytes end the session. */
  #protocolFailed = false;

  constructor(client: ByteStream, target: ByteStream, options: RelayOptions) {
    this.#client = client;
    this.#target = target;
    this.#framing = options.framing;
    this.#closeTimeout = options.closeTimeout ?? 3000;
    this.#observer = options.observer ?? {};
    this.#heartbeatMs = options.heartbeat ?? 0;
  }

  /** Relays until the session is over. `initial` holds client bytes that arrived with the request head. */
  async run(initial: Uint8Array = new Uint8Array(0)): Promise<RelayResult> {
    watchStalls(this);
    if (this.#heartbeatMs > 0) this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
    const targetPump = this.#pumpTarget();
    await this.#pumpClient(initial);
    // The client side is finished: let the target see EOF after everything it was sent, and wait (bounded) for
    // it to finish too, so closing never resets data still in flight.
    this.#startDeadline();
    this.#targetWritable = false;
    if (!this.#targetEnded) {
      await this.#target.closeWrite().catch(() => {});
    }
    await targetPump;
    closeQuietly(this.#target);
    clearTimeout(this.#deadline);
    clearInterval(this.#heartbeat);
    unwatchStalls(this);
    return {
      bytesFromClient: this.#bytesFromClient,
      bytesToClient: this.#bytesToClient,
      code: this.#code,
      reason: this.#reason,
      closedBy: this.#closedBy,
      durationMs: performance.now() - this.#started,
    };
  }

  /** A heartbeat tick: ping the client, or give it up when it left the last two pings unanswered. */
  #beat(): void {
    if (this.#closeSent || this.#closeReceived || !this.#clientOpen) return;
    if (this.#unansweredPings >= 2) {
      this.#code = CloseCode.Abnormal;
      this.#reason = "No answer to 2 heartbeat pings";
      this.#closedBy = "heartbeat";
      this.#clientOpen = false;
      closeQuietly(this.#client); // a dead peer reads no close frame
      // Nothing is owed to a dead client: the target goes at once too, which also frees a pump stuck writing
      // to a target that stopped reading.
      this.#targetWritable = false;
      closeQuietly(this.#target);
      return;
    }
    this.#unansweredPings++;
    this.#sendToClient(encodeFrame(Opcode.Ping)).catch(() => {});
  }

  /** Server shutdown: close 1001 to the client, then the usual bounded close. */
  shutdown(reason = "Server shutting down"): void {
    const closing = !this.#closeSent && this.#clientOpen;
    this.#sendClose(CloseCode.GoingAway, reason, "server");
    this.#targetWritable = false;
    closeQuietly(this.#target);
    // Nothing follows our close frame: a FIN right behind it lets even a slow reader read to the end. The
    // client pump keeps reading (and dropping) what the client still sends, so that closing the socket at the
    // end does not reset it and discard what is still on its way to the client.
    if (closing) {
      this.#clientWrites.then(() => this.#client.closeWrite()).catch(() => {});
    }
  }

  // ---- client -> target ------------------------------------------------------------------------------------

  async #pumpClient(initial: Uint8Array): Promise<void> {
    const buffers = new ReadBuffers();
    try {
      if (initial.length > 0 && await this.#onClientChunk(initial)) return;
      while (true) {
        // What was read while a target write was stuck comes first (each chunk in a buffer of its own).
        if (this.#readAhead) {
          const ahead = this.#readAhead;
          this.#readAhead = undefined;
          await ahead.done;
          for (const chunk of ahead.chunks) {
            if (await this.#onClientChunk(chunk)) return;
          }
          if (ahead.ended) return;
          continue;
        }
        const buffer = buffers.lend();
        const n = await this.#client.read(buffer);
        if (n === null) return;
        this.#observer.traffic?.("}");
        if (await this.#onClientChunk(buffer.subarray(0, n))) return;
        // Every byte of this read has been written to the target and seen by the observers: only now may the
        // buffer be reused, or pooled for another session.
        buffers.giveBack(n);
      }
    } catch {
      // The client connection failed or was closed by the deadline: the session is over either way.
    } finally {
      this.#clientOpen = false;
      buffers.dispose();
      closeQuietly(this.#client);
    }
  }

  /**
   * A write to the target has been stuck for a while, so nothing reads the client: keep reading it (into
   * buffers of their own, at most READ_AHEAD_LIMIT bytes) to learn whether it is still there. If it is gone,
   * the bounded closing wait starts, and at its end the target is closed even with the write pending. What
   * was read is the client pump's next input, in order.
   */
  #watchClient(): void {
    if (this.#readAhead || !this.#clientOpen) return;
    const ahead: ReadAhead = { chunks: [], bytes: 0, ended: false, done: Promise.resolve() };
    this.#readAhead = ahead;
    ahead.done = (async () => {
      try {
        while (this.#targetWriteStuck && ahead.bytes < READ_AHEAD_LIMIT) {
          const buffer = new Uint8Array(READ_AHEAD_CHUNK);
          const n = await this.#client.read(buffer);
          if (n === null) {
            ahead.ended = true;
            break;
          }
          this.#observer.traffic?.("}");
          ahead.chunks.push(buffer.subarray(0, n));
          ahead.bytes += n;
        }
      } catch {
        ahead.ended = true;
      }
      if (ahead.ended) this.#clientGone();
    })();
  }

  /** Called by the stall watch: a target write pending for TARGET_STALL_MS makes the relay watch the client. */
  checkTargetWrite(now: number): void {
    if (this.#targetWriteSince === undefined || this.#targetWriteStuck) return;
    if (now - this.#targetWriteSince < TARGET_STALL_MS) return;
    this.#targetWriteStuck = true;
    this.#watchClient();
  }

  /** The client dropped while the target was not reading: nothing is owed to it past the closing wait. */
  #clientGone(): void {
    if (!this.#closeSent && !this.#closeReceived) {
      this.#reason = "Client went away; target not reading";
    }
    this.#clientOpen = false; // nothing more can be sent to it; the failing write is not the target's fault
    this.#startDeadline();
  }

  /**
   * Decodes one read's worth of client bytes and acts on it; true when the client side is finished.
   *
   * Consecutive binary payload pieces are moved together in place, over the frame headers between them, so a
   * read that held several frames reaches the target in one write.
   */
  async #onClientChunk(chunk: Uint8Array): Promise<boolean> {
    if (this.#protocolFailed) {
      await this.#clientWrites.catch(() => {}); // our close frame is out before the socket closes
      return true;
    }
    let fill = 0; // chunk[0, fill) holds payload waiting to be written
    for (const event of this.#receiver.receive(chunk)) {
      if (event.kind === "data" && !(this.#framing === "base64" && event.text)) {
        const piece = event.payload;
        const from = piece.byteOffset - chunk.byteOffset;
        if (from !== fill) chunk.copyWithin(fill, from, from + piece.length);
        fill += piece.length;
        continue;
      }
      if (fill > 0) {
        await this.#writeToTarget(chunk.subarray(0, fill));
        fill = 0;
      }
      if (await this.#onClientEvent(event)) return true;
    }
    if (fill > 0) await this.#writeToTarget(chunk.subarray(0, fill));
    return false;
  }

  /** Handles one decoded client event (other than plain payload); true when the client side is finished. */
  async #onClientEvent(event: ReceiverEvent): Promise<boolean> {
    switch (event.kind) {
      case "data":
        await this.#forwardBase64(event.payload, event.messageEnd);
        return false;
      case "ping":
        if (!this.#closeSent) await this.#sendToClient(encodeFrame(Opcode.Pong, event.payload));
        return false;
      case "pong":
        this.#unansweredPings = 0;
        return false;
      case "close":
        this.#closeReceived = true;
        if (!this.#closeSent) {
          // An echo of the client's close: its code (or 1000 when it sent none) and reason.
          this.#sendClose(event.code ?? CloseCode.Normal, event.reason, "client");
          await this.#clientWrites.catch(() => {});
        }
        return true;
      case "error":
        // The connection has failed: nothing more the client sends can be decoded. Our close goes out; the
        // client's next bytes (its close reply) or its EOF end the session, without waiting out the deadline.
        this.#sendClose(event.code, event.reason, "server");
        this.#targetWritable = false;
        this.#protocolFailed = true;
        return false;
    }
  }

  /** A base64-framed text piece: decoded, then written. */
  async #forwardBase64(payload: Uint8Array, messageEnd: boolean): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = this.#base64.push(payload, messageEnd);
    } catch {
      this.#sendClose(CloseCode.InvalidData, "Invalid base64 data", "server");
      this.#targetWritable = false;
      return;
    }
    await this.#writeToTarget(bytes);
  }

  async #writeToTarget(bytes: Uint8Array): Promise<void> {
    if (!this.#targetWritable || bytes.length === 0) return;
    this.#targetWriteSince = performance.now();
    writesInProgress.add(this);
    try {
      await writeAll(this.#target, bytes);
      this.#bytesFromClient += bytes.length;
      this.#observer.fromClient?.(bytes);
      this.#observer.traffic?.(">");
    } catch {
      this.#targetWritable = false;
      this.#sendClose(CloseCode.InternalError, "Target connection error", "target");
    } finally {
      writesInProgress.delete(this);
      this.#targetWriteSince = undefined;
      this.#targetWriteStuck = false;
    }
  }

  // ---- target -> client ------------------------------------------------------------------------------------

  async #pumpTarget(): Promise<void> {
    const headroom = MAX_SERVER_HEADER;
    const buffers = new ReadBuffers(headroom);
    try {
      while (true) {
        const buffer = buffers.lend();
        const n = await this.#target.read(buffer.subarray(headroom));
        if (n === null) break;
        this.#observer.traffic?.("{");
        // Once the client is closing or gone, target data has nowhere to go: drain it until EOF, drop it.
        if (this.#clientOpen && !this.#closeSent && !this.#closeReceived) {
          await this.#frameToClient(buffer, n);
        }
        // The frame holding these bytes has been written and the observers have seen them.
        buffers.giveBack(n);
      }
      this.#targetEnded = true;
      this.#sendClose(CloseCode.Normal, "Target closed", "target");
    } catch {
      this.#targetEnded = true;
      // A failure after the session began closing is the closing itself; before that it is the target's.
      this.#sendClose(CloseCode.InternalError, "Target connection error", "target");
    } finally {
      buffers.dispose();
    }
  }

  /** Frames `n` target bytes (read into `buffer` after its headroom) to the client; resolves once written. */
  async #frameToClient(buffer: Uint8Array, n: number): Promise<void> {
    const headroom = MAX_SERVER_HEADER;
    const payload = buffer.subarray(headroom, headroom + n);
    if (this.#framing === "base64") {
      const text = new TextEncoder().encode(encodeBase64(payload));
      await this.#sendToClient(encodeFrame(Opcode.Text, text));
    } else {
      const start = writeHeaderBefore(buffer, headroom, Opcode.Binary, n);
      await this.#sendToClient(buffer.subarray(start, headroom + n));
    }
    this.#bytesToClient += n;
    this.#observer.fromTarget?.(payload);
    this.#observer.traffic?.("<");
  }

  // ---- client writes and closing -----------------------------------------------------------------------------

  /** Queues a frame to the client after those already queued; resolves once written. */
  #sendToClient(frame: Uint8Array): Promise<void> {
    const write = this.#clientWrites.then(() => writeAll(this.#client, frame));
    this.#clientWrites = write.catch(() => {});
    return write;
  }

  /**
   * Sends our close frame once and records why the session ended; later calls, and calls after the client has
   * gone, do nothing. Starts the closing deadline.
   */
  #sendClose(code: number, reason: string, by: ClosedBy): void {
    if (this.#closeSent || !this.#clientOpen) return;
    this.#closeSent = true;
    this.#code = code;
    this.#reason = reason;
    this.#closedBy = by;
    this.#sendToClient(encodeFrame(Opcode.Close, encodeClosePayload(code, reason))).catch(() => {});
    this.#startDeadline();
  }

  /** After this long, whatever is still pending is cut: both sockets are closed outright. */
  #startDeadline(): void {
    if (this.#deadline !== undefined) return;
    this.#deadline = setTimeout(() => {
      closeQuietly(this.#client);
      closeQuietly(this.#target);
    }, this.#closeTimeout);
  }
}
