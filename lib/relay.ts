/**
 * The life of one proxied WebSocket session after the 101: two pumps, each read -> await write, so a slow side
 * stops reads on the other and a connection's memory stays bounded whatever the peers do. What the bytes mean
 * (frames, closes, pings, base64) is decided by the pure ServerSession (lib/websocket/protocol.ts); this file
 * only moves bytes, half-closes, and bounds the waits.
 *
 *   client --read--> session.receive --forward--> target      (pumpClient)
 *   target --read--> session.frameTargetData ----> client     (pumpTarget)
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

import { type ByteStream, closeQuietly, ReadBuffers } from "./io.ts";
import { CloseCode } from "./websocket/frames.ts";
import type { Framing } from "./websocket/handshake.ts";
import { type ClosedBy, ServerSession, TARGET_HEADROOM } from "./websocket/protocol.ts";

export type { ClosedBy };

/** A target write that has not moved for this long makes the relay check whether the client is still there. */
const TARGET_STALL_MS = 500;
/**
 * While a target write is stuck, at most this much client data is read ahead to find out whether the client
 * left. A client that left with more in flight is noticed when the target reads again, or by --heartbeat.
 */
const READ_AHEAD_LIMIT = 1024 * 1024;
const READ_AHEAD_CHUNK = 64 * 1024;
/**
 * After the closing wait, a client that has our close and FIN but is still sending gets at most this much more
 * time to read what was sent to it (its input is drained meanwhile).
 */
const CLOSE_LINGER_MS = 30_000;

/**
 * Stuck target writes are found by one timer for the whole process, which runs while sessions exist: each tick
 * it asks every running relay whether its pending target write moved since the tick before. A message costs
 * a counter increment, no timer, clock read or set update (a timer per write would cost every message).
 */
const STALL_TICK_MS = TARGET_STALL_MS / 2;
const runningRelays = new Set<Relay>();
let stallTimer: ReturnType<typeof setInterval> | undefined;

function watchStalls(relay: Relay): void {
  runningRelays.add(relay);
  if (stallTimer !== undefined) return;
  stallTimer = setInterval(() => {
    const now = performance.now();
    for (const running of runningRelays) running.checkTargetWrite(now);
  }, STALL_TICK_MS);
  Deno.unrefTimer(stallTimer);
}

function unwatchStalls(relay: Relay): void {
  runningRelays.delete(relay);
  if (runningRelays.size === 0 && stallTimer !== undefined) {
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
  /**
   * No heartbeat verdict while a target write is pending and has moved within this many ms (the client's
   * pongs wait behind data the target has not taken). Default 30000.
   */
  stuckTarget?: number;
  /** Sees the payload as it goes through (session recording, traffic glyphs). */
  observer?: RelayObserver;
  /** A client message larger than this many bytes closes the session with 1009. 0: no limit (the default). */
  maxMessageSize?: number;
  /** permessage-deflate was agreed: the window the proxy compresses with. */
  deflate?: { windowBits: number };
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
  readonly #session: ServerSession;
  readonly #closeTimeout: number;
  readonly #observer: RelayObserver;
  readonly #heartbeatMs: number;
  readonly #stuckTargetMs: number;
  readonly #started = performance.now();
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  /**
   * Writes to the client go one after another (both pumps send frames there): `#clientWrites` settles when
   * the last one queued is done, `#clientWritesQueued` counts those not done yet (none: write at once).
   */
  #clientWrites: Promise<void> = Promise.resolve();
  #clientWritesQueued = 0;
  #clientOpen = true;
  #targetWritable = true;
  #targetEnded = false;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  /** Client bytes read while a target write was stuck; the client pump takes them next. */
  #readAhead: ReadAhead | undefined;
  /** A target write is pending. */
  #targetWriting = false;
  /** Counts the target writes' steps forward; the stall watch compares it from one tick to the next. */
  #targetProgress = 0;
  #targetProgressSeen = 0;
  /** When the stall watch last saw the pending target write move (its start counts as a move). */
  #targetProgressAt = 0;
  #targetWriteStuck = false;
  /** Our close frame and a FIN have been written to the client. */
  #finSent = false;
  /** Reads from the client so far, and when our close frame was queued (did it keep sending after?). */
  #clientReads = 0;
  #readsAtClose = 0;
  #shuttingDown = false;

  constructor(client: ByteStream, target: ByteStream, options: RelayOptions) {
    this.#client = client;
    this.#target = target;
    this.#session = new ServerSession(options.framing, {
      maxMessageSize: options.maxMessageSize,
      deflate: options.deflate,
    });
    this.#closeTimeout = options.closeTimeout ?? 3000;
    this.#observer = options.observer ?? {};
    this.#heartbeatMs = options.heartbeat ?? 0;
    this.#stuckTargetMs = options.stuckTarget ?? 30_000;
  }

  /** Relays until the session is over. `initial` holds client bytes that arrived with the request head. */
  run(initial: Uint8Array = new Uint8Array(0)): Promise<RelayResult> {
    watchStalls(this);
    if (this.#heartbeatMs > 0) this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
    const targetPump = this.#pumpTarget();
    // A continuation rather than an await: no frame of `run` stays suspended while the session lasts (idle
    // sessions are counted in thousands). The client pump never rejects.
    return this.#pumpClient(initial).then(() => this.#finish(targetPump));
  }

  /** After the client pump: the target's end (bounded), both sockets closed, the result. */
  async #finish(targetPump: Promise<void>): Promise<RelayResult> {
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
      code: this.#session.code,
      reason: this.#session.reason,
      closedBy: this.#session.closedBy,
      durationMs: performance.now() - this.#started,
    };
  }

  /** A heartbeat tick: ping the client, or give it up when it left the last two pings unanswered. */
  #beat(): void {
    if (!this.#clientOpen) return;
    // While a target write is pending the client is not read, so its pongs cannot be seen: behind a target
    // that is merely slow (its write moved lately), no verdict on the client. Once the target is stuck, only
    // a client that sent nothing at all (the read-ahead sees its bytes) is judged dead.
    const now = performance.now();
    const judge = !this.#targetWriting || (!this.#targetMoved(now) &&
      now - this.#targetProgressAt >= this.#stuckTargetMs);
    const ping = this.#session.heartbeat(judge);
    if (ping === "dead") {
      this.#clientOpen = false;
      closeQuietly(this.#client); // a dead peer reads no close frame
      // Nothing is owed to a dead client: the target goes at once too, which also frees a pump stuck writing
      // to a target that stopped reading.
      this.#targetWritable = false;
      closeQuietly(this.#target);
    } else if (ping) {
      this.#sendToClient(ping).catch(() => {});
    }
  }

  /** Server shutdown: close 1001 to the client, then the usual bounded close. */
  shutdown(reason = "Server shutting down"): void {
    this.#shuttingDown = true; // the process is about to exit: no lingering past the closing wait
    this.#close(CloseCode.GoingAway, reason, "server");
    this.#targetWritable = false;
    closeQuietly(this.#target);
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
        this.#clientReads++;
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
      this.#session.clientGone();
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
          this.#clientReads++;
          this.#observer.traffic?.("}");
          this.#session.clientActive();
          ahead.chunks.push(buffer.subarray(0, n));
          ahead.bytes += n;
        }
      } catch {
        ahead.ended = true;
      }
      if (ahead.ended) this.#clientGone();
    })();
  }

  /**
   * Called by the stall watch every STALL_TICK_MS: a target write that has not moved for TARGET_STALL_MS
   * (measured to the tick) makes the relay watch the client.
   */
  checkTargetWrite(now: number): void {
    if (!this.#targetWriting || this.#targetMoved(now)) return;
    if (this.#targetWriteStuck || now - this.#targetProgressAt < TARGET_STALL_MS) return;
    this.#targetWriteStuck = true;
    this.#watchClient();
  }

  /**
   * Whether the target writes moved (or one started) since the last look; if so, `now` is when they last
   * moved. Both the stall watch and the heartbeat look: a write that started since is never taken for old.
   */
  #targetMoved(now: number): boolean {
    if (this.#targetProgress === this.#targetProgressSeen) return false;
    this.#targetProgressSeen = this.#targetProgress;
    this.#targetProgressAt = now;
    return true;
  }

  /** A write to the client failed: it is gone, whichever pump notices first. */
  #loseClient(): void {
    this.#session.clientGone();
    this.#clientOpen = false;
    closeQuietly(this.#client); // ends the client pump's pending read
  }

  /** The client dropped while the target was not reading: nothing is owed to it past the closing wait. */
  #clientGone(): void {
    this.#session.clientGone("Client went away; target not reading");
    this.#clientOpen = false; // nothing more can be sent to it; the failing write is not the target's fault
    this.#startDeadline();
  }

  /** Acts on one read's worth of client bytes, in order; true when the client side is finished. */
  async #onClientChunk(chunk: Uint8Array): Promise<boolean> {
    for (const action of this.#session.receive(chunk)) {
      switch (action.kind) {
        case "forward":
          await this.#writeToTarget(action.bytes);
          break;
        case "send":
          if (action.closing) this.#sendCloseFrame(action.frame);
          else await this.#sendToClient(action.frame);
          break;
        case "end":
          await this.#clientWrites.catch(() => {}); // our close frame is out before the socket closes
          return true;
      }
    }
    return false;
  }

  async #writeToTarget(bytes: Uint8Array): Promise<void> {
    if (!this.#targetWritable || bytes.length === 0) return;
    this.#targetWriting = true;
    this.#targetProgress++;
    try {
      // writeAll, noting each step forward: a slow target is not a stuck one.
      let offset = await this.#target.write(bytes);
      while (offset < bytes.length) {
        this.#targetProgress++;
        offset += await this.#target.write(bytes.subarray(offset));
      }
      this.#bytesFromClient += bytes.length;
      this.#observer.fromClient?.(bytes);
      this.#observer.traffic?.(">");
    } catch {
      this.#targetWritable = false;
      this.#close(CloseCode.InternalError, "Target connection error", "target");
    } finally {
      this.#targetWriting = false;
      this.#targetWriteStuck = false;
    }
  }

  // ---- target -> client ------------------------------------------------------------------------------------

  async #pumpTarget(): Promise<void> {
    const buffers = new ReadBuffers(TARGET_HEADROOM);
    try {
      while (true) {
        const buffer = buffers.lend();
        const n = await this.#target.read(buffer.subarray(TARGET_HEADROOM));
        if (n === null) break;
        this.#observer.traffic?.("{");
        // Once the client is closing or gone, target data has nowhere to go: drained until EOF, dropped.
        const frame = this.#session.frameTargetData(buffer, TARGET_HEADROOM, n);
        if (frame) {
          try {
            await this.#sendToClient(frame);
          } catch {
            // The client is gone (reset, or closed under us): that is not the target's failure. Nothing more
            // is framed, the target is drained as when the client drops; the buffer a failed write may still
            // hold is never reused (dispose forgets it).
            this.#loseClient();
            buffers.dispose();
            continue;
          }
          this.#bytesToClient += n;
          this.#observer.fromTarget?.(buffer.subarray(TARGET_HEADROOM, TARGET_HEADROOM + n));
          this.#observer.traffic?.("<");
        }
        // The frame holding these bytes has been written and the observers have seen them.
        buffers.giveBack(n);
      }
      this.#targetEnded = true;
      this.#close(CloseCode.Normal, "Target closed", "target");
    } catch {
      this.#targetEnded = true;
      // A failure after the session began closing is the closing itself; before that it is the target's.
      this.#close(CloseCode.InternalError, "Target connection error", "target");
    } finally {
      buffers.dispose();
    }
  }

  // ---- client writes and closing -----------------------------------------------------------------------------

  /**
   * Queues a frame to the client after those already queued; resolves once written. With none queued (the
   * common case: one frame per target read) it is written at once, without a link in the chain.
   */
  #sendToClient(frame: Uint8Array): Promise<void> {
    const queued = this.#clientWritesQueued++;
    let write: Promise<void>;
    if (queued === 0) {
      write = this.#writeToClient(frame);
    } else {
      const next = () => this.#writeToClient(frame);
      write = this.#clientWrites.then(next, next);
    }
    this.#clientWrites = write;
    return write;
  }

  async #writeToClient(frame: Uint8Array): Promise<void> {
    try {
      let offset = await this.#client.write(frame);
      while (offset < frame.length) offset += await this.#client.write(frame.subarray(offset));
    } finally {
      this.#clientWritesQueued--;
    }
  }

  /** Sends our close frame, unless one was sent already or the client is gone; starts the closing wait. */
  #close(code: number, reason: string, by: ClosedBy): void {
    if (!this.#clientOpen) return;
    const frame = this.#session.close(code, reason, by);
    if (frame) this.#sendCloseFrame(frame);
  }

  /**
   * Our close frame goes out after everything owed to the client, followed by a FIN: nothing follows it, and
   * the FIN lets even a slow reader read to the end. The client pump keeps reading (and dropping) what the
   * client still sends until its close reply, so the socket is never closed with unread bytes, which would
   * reset it and discard what is still on its way to the client.
   */
  #sendCloseFrame(frame: Uint8Array): void {
    this.#readsAtClose = this.#clientReads;
    this.#sendToClient(frame).then(() => {
      this.#finSent = true;
      return this.#client.closeWrite();
    }).catch(() => {});
    this.#startDeadline();
  }

  /** After this long, whatever is still pending is cut: both sockets are closed outright. */
  #startDeadline(): void {
    if (this.#deadline !== undefined) return;
    this.#deadline = setTimeout(() => {
      closeQuietly(this.#target);
      // A client that has our close frame and FIN but kept sending (a slow reader, not there yet) gets
      // more time to read what was sent to it: closing now would reset it and lose those bytes. Its input
      // is drained meanwhile; the wait is bounded, and not taken at shutdown (the process exits).
      const stillSending = this.#clientReads > this.#readsAtClose;
      if (this.#finSent && stillSending && this.#clientOpen && !this.#shuttingDown) {
        this.#deadline = setTimeout(() => closeQuietly(this.#client), CLOSE_LINGER_MS);
      } else {
        closeQuietly(this.#client);
      }
    }, this.#closeTimeout);
  }
}
