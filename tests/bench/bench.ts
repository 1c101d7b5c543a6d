/**
 * Benchmark: direct TCP, this proxy (websockify for Deno) and Debian's Python websockify, measured in one run with
 * the same client and target, and reported as ratios.
 *
 *   deno task bench                 # everything
 *   deno task bench --quick         # smaller transfers and connection counts (a smoke run)
 *   deno task bench --only=concurrency,stall       (parts: throughput, tls (wss transfers and latency), latency,
 *                                                  alloc, handshakes, concurrency, workers, compress, stall)
 *   deno task bench --compare=../base              # also measures the proxy in ../base (e.g. a `git worktree` of
 *                                                  # the last commit), in the same run: a last column "this / base"
 *
 * Latency is also measured through tests/bench/floor_relay.ts, a bare Deno relay: the floor this runtime sets
 * for any relay written on it, so the proxy's own cost per message shows as "websockify (Deno) / bare relay".
 *
 * The client is this process, speaking raw WebSocket with pre-masked 64 KiB frames (so client-side masking costs
 * nothing and does not cap the figures). The target is tests/bench/target.ts in its own process. Proxy CPU comes
 * from /proc (the proxy's whole process tree, children included), memory is PSS from /proc/<pid>/smaps_rollup
 * summed over the tree (fair to Python's fork-per-connection model, whose children share pages).
 */

import zlib from "node:zlib";
import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { Receiver } from "../../lib/websocket/receiver.ts";
import { sleep } from "../../lib/deadline.ts";
import { findHeadEnd } from "../../lib/http.ts";
import { writeAll } from "../../lib/io.ts";
import { makeCerts, type TestCerts } from "../helpers/certs.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const QUICK = Deno.args.includes("--quick");
/** `--only=throughput,tls,latency,handshakes,concurrency,workers,compress,stall` runs just those parts. */
const ONLY = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const wanted = (part: string) => !ONLY || ONLY.includes(part);
const MiB = 1024 * 1024;
const TRANSFER = (QUICK ? 64 : 512) * MiB;
const MESSAGE = 64 * 1024;
const IN_FLIGHT = 4 * MiB;
const CONCURRENCY = QUICK ? [200] : [1000, 9000];
/** --workers=2: past what one process holds (its open-file limit is 20,000 here, two per session). */
const WORKER_CONCURRENCY = QUICK ? [200] : [9000, 12000];
/** Parallel echo: this many sessions at once, each echoing PARALLEL_BYTES. */
const PARALLEL_SESSIONS = 32;
const PARALLEL_BYTES = (QUICK ? 2 : 16) * MiB;
/** --compress: what the target sends per measurement. */
const COMPRESS_TRANSFER = (QUICK ? 16 : 128) * MiB;
const PYTHON_MAX_CONNECTIONS = 1000; // one forked process per connection: 9,000 would not fit in memory
const PYTHON_WEBSOCKIFY = "/usr/bin/websockify";
/** `--compare=DIR`: another checkout of this project, measured as the "base" variants. */
const COMPARE = (() => {
  const dir = Deno.args.find((a) => a.startsWith("--compare="))?.slice(10);
  return dir ? Deno.realPathSync(dir).replace(/\/?$/, "/") : undefined;
})();

type Variant =
  | "direct"
  | "deno"
  | "python"
  | "base"
  | "floor"
  | "deno-tls"
  | "python-tls"
  | "base-tls"
  /** This proxy with --workers=2. */
  | "deno-workers"
  /** This proxy with --compress, and a client that offers permessage-deflate. */
  | "deno-compress";
/** Set for the TLS variants: both proxies use the same certificate; the client trusts its CA. */
let certs: TestCerts | undefined;
const isTls = (variant: Variant) => variant.endsWith("-tls");

// ---- processes -------------------------------------------------------------------------------------------------

class Proc {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  constructor(cmd: string, args: string[]) {
    this.child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const child = this.child;
    const decoder = new TextDecoder();
    (async () => {
      for await (const c of child.stdout) this.stdout += decoder.decode(c);
    })();
    (async () => {
      for await (const c of child.stderr) this.stderr += decoder.decode(c);
    })();
  }
  async waitFor(pattern: RegExp, ms = 15000): Promise<RegExpMatchArray> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const match = (this.stdout + this.stderr).match(pattern);
      if (match) return match;
      await sleep(20);
    }
    throw new Error(`timed out waiting for ${pattern}:\n${this.stdout}\n${this.stderr}`);
  }
  async stop(): Promise<void> {
    for (const pid of treePids(this.child.pid).reverse()) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch { /* gone */ }
    }
    const done = this.child.status.then(() => true);
    if (!(await Promise.race([done, sleep(5000).then(() => false)]))) {
      for (const pid of treePids(this.child.pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await this.child.status;
    }
  }
}

/** The pid and all its descendants. */
function treePids(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry.name));
      parents.set(ppid, list);
    } catch { /* exited */ }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const child of parents.get(pid) ?? []) walk(child);
  };
  walk(root);
  return out;
}

/** Proxy-tree CPU seconds (user + system, children that exited included). */
function cpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of treePids(root)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      if (pid === root) ticks += Number(fields[13]) + Number(fields[14]);
    } catch { /* exited */ }
  }
  return ticks / 100;
}

/** Proxy-tree memory in KiB: PSS summed (shared pages counted once overall). */
function memoryKiB(root: number): number {
  let total = 0;
  for (const pid of treePids(root)) {
    try {
      const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
      total += Number(rollup.match(/^Pss:\s+(\d+)/m)![1]);
    } catch { /* exited */ }
  }
  return total;
}

async function startTarget(mode: string, count = 0): Promise<{ port: number; proc: Proc }> {
  const proc = new Proc(Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}tests/bench/target.ts`,
    mode,
    String(count),
  ]);
  const match = await proc.waitFor(/port (\d+)/);
  return { port: Number(match[1]), proc };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function startProxy(
  variant: Variant,
  targetPort: number,
  v8Flags: string[] = [],
): Promise<{ port: number; proc?: Proc }> {
  if (variant === "direct") return { port: targetPort };
  if (variant === "floor") {
    const proc = new Proc(Deno.execPath(), [
      "run",
      "-A",
      `${ROOT}tests/bench/floor_relay.ts`,
      String(targetPort),
    ]);
    return { port: Number((await proc.waitFor(/port (\d+)/))[1]), proc };
  }
  const tlsArgs = isTls(variant) ? [`--cert=${certs!.combined}`] : [];
  if (!variant.startsWith("python")) {
    const root = variant.startsWith("base") ? COMPARE! : ROOT;
    const proc = new Proc(Deno.execPath(), [
      "run",
      "-A",
      "--frozen",
      ...(v8Flags.length > 0 ? [`--v8-flags=${v8Flags.join(",")}`] : []),
      `${root}main.ts`,
      "127.0.0.1:0",
      `127.0.0.1:${targetPort}`,
      ...tlsArgs,
      ...(variant === "deno-workers" ? ["--workers=2"] : []),
      ...(variant === "deno-compress" ? ["--compress"] : []),
    ]);
    const match = await proc.waitFor(
      variant === "deno-workers"
        ? /workers listening on 127\.0\.0\.1:(\d+)/
        : /Listen on 127\.0\.0\.1:(\d+)/,
    );
    return { port: Number(match[1]), proc };
  }
  const port = freePort();
  const proc = new Proc(PYTHON_WEBSOCKIFY, [
    `127.0.0.1:${port}`,
    `127.0.0.1:${targetPort}`,
    ...tlsArgs,
  ]);
  await proc.waitFor(/proxying from/);
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return { port, proc };
    } catch {
      await sleep(50);
    }
  }
  throw new Error("python websockify did not start");
}

// ---- the client ------------------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const MASK = crypto.getRandomValues(new Uint8Array(4));

/** A connection through the variant: raw bytes for direct, WebSocket otherwise. */
class Channel {
  readonly conn: Deno.Conn;
  readonly ws: boolean;
  readonly #deflate: boolean;
  #receiver: Receiver;
  #leftover: Uint8Array;
  /** Bytes read from the socket (what crossed the wire, framing included). */
  wireBytes = 0;
  /** A compressed message's pieces, until it ends (permessage-deflate). */
  #compressed: Uint8Array[] = [];

  private constructor(conn: Deno.Conn, ws: boolean, leftover: Uint8Array, deflate = false) {
    this.conn = conn;
    this.ws = ws;
    this.#leftover = leftover;
    this.#deflate = deflate;
    this.#receiver = new Receiver({ requireMask: false, perMessageDeflate: deflate });
  }

  static async open(variant: Variant, port: number): Promise<Channel> {
    let conn: Deno.Conn;
    if (isTls(variant)) {
      conn = await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts: [Deno.readTextFileSync(certs!.ca)],
      });
    } else {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      tcp.setNoDelay(true);
      conn = tcp;
    }
    if (variant === "direct") return new Channel(conn, false, new Uint8Array(0));
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      encoder.encode(
        `GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n` +
          (variant === "deno-compress"
            ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            : "") +
          "\r\n",
      ),
    );
    let buffered = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    while (findHeadEnd(buffered) < 0) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("closed during handshake");
      const grown = new Uint8Array(buffered.length + n);
      grown.set(buffered);
      grown.set(buffer.subarray(0, n), buffered.length);
      buffered = grown;
    }
    const end = findHeadEnd(buffered);
    if (!new TextDecoder().decode(buffered.subarray(0, 12)).startsWith("HTTP/1.1 101")) {
      throw new Error("handshake refused");
    }
    const deflate = /Sec-WebSocket-Extensions: permessage-deflate/i.test(
      new TextDecoder().decode(buffered.subarray(0, end)),
    );
    return new Channel(conn, true, buffered.slice(end), deflate);
  }

  /** What to write for one message of `payload` (pre-masked once; reuse it). */
  frame(payload: Uint8Array): Uint8Array {
    return this.ws ? encodeFrame(Opcode.Binary, payload, { mask: MASK }) : payload;
  }

  /** Reads once; returns payload bytes received (0 possible), or null at EOF. */
  async readPayload(buffer: Uint8Array): Promise<number | null> {
    let chunk: Uint8Array;
    if (this.#leftover.length > 0) {
      chunk = this.#leftover;
      this.#leftover = new Uint8Array(0);
    } else {
      const n = await this.conn.read(buffer);
      if (n === null) return null;
      chunk = buffer.subarray(0, n);
    }
    this.wireBytes += chunk.length;
    if (!this.ws) return chunk.length;
    let payload = 0;
    for (const event of this.#receiver.receive(chunk)) {
      if (event.kind === "data" && event.compressed && this.#deflate) {
        // Inflated as a browser would, to count what the page gets.
        this.#compressed.push(event.payload.slice());
        if (event.messageEnd) {
          this.#compressed.push(new Uint8Array([0, 0, 0xff, 0xff]));
          const size = this.#compressed.reduce((sum, piece) => sum + piece.length, 0);
          const joined = new Uint8Array(size);
          let offset = 0;
          for (const piece of this.#compressed) {
            joined.set(piece, offset);
            offset += piece.length;
          }
          this.#compressed = [];
          payload +=
            zlib.inflateRawSync(joined, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).length;
        }
      } else if (event.kind === "data") {
        payload += event.payload.length;
      }
      if (event.kind === "close") return null;
    }
    return payload;
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** Reads until `count` payload bytes arrived. */
async function receivePayload(channel: Channel, count: number): Promise<void> {
  const buffer = new Uint8Array(256 * 1024);
  let received = 0;
  while (received < count) {
    const n = await channel.readPayload(buffer);
    if (n === null) throw new Error(`EOF after ${received} of ${count}`);
    received += n;
  }
}

interface Throughput {
  mbps: number;
  cpu: number;
  mbPerCpuSecond: number;
}

async function measureTransfer(
  variant: Variant,
  mode: "sink" | "source" | "echo",
): Promise<Throughput> {
  const target = await startTarget(mode, TRANSFER);
  const proxy = await startProxy(variant, target.port);
  const cpuRoot = proxy.proc?.child.pid ?? target.proc.child.pid;
  try {
    const channel = await Channel.open(variant, proxy.port);
    const frame = channel.frame(new Uint8Array(MESSAGE).fill(0x42));
    const cpuBefore = cpuSeconds(cpuRoot);
    const started = performance.now();
    if (mode === "sink") {
      const ack = receivePayload(channel, 1);
      for (let sent = 0; sent < TRANSFER; sent += MESSAGE) await writeAll(channel.conn, frame);
      await ack;
    } else if (mode === "source") {
      await receivePayload(channel, TRANSFER);
    } else {
      // Echo with at most IN_FLIGHT bytes sent but not yet echoed.
      let received = 0;
      let wake: (() => void) | undefined;
      const reader = (async () => {
        const buffer = new Uint8Array(256 * 1024);
        while (received < TRANSFER) {
          const n = await channel.readPayload(buffer);
          if (n === null) throw new Error("EOF during echo");
          received += n;
          wake?.();
        }
      })();
      for (let sent = 0; sent < TRANSFER; sent += MESSAGE) {
        while (sent - received > IN_FLIGHT) await new Promise<void>((resolve) => wake = resolve);
        await writeAll(channel.conn, frame);
      }
      await reader;
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(cpuRoot) - cpuBefore;
    channel.close();
    const mb = TRANSFER / 1e6;
    return { mbps: mb / seconds, cpu: cpu / seconds, mbPerCpuSecond: mb / Math.max(cpu, 0.01) };
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

async function measureLatency(variant: Variant): Promise<{ p50: number; p99: number }> {
  const target = await startTarget("echo");
  const proxy = await startProxy(variant, target.port);
  try {
    const channel = await Channel.open(variant, proxy.port);
    const frame = channel.frame(new Uint8Array(100).fill(7));
    const samples: number[] = [];
    const end = performance.now() + 3000;
    for (let i = 0; i < 20300 && performance.now() < end; i++) {
      const started = performance.now();
      await writeAll(channel.conn, frame);
      await receivePayload(channel, 100);
      if (i >= 300) samples.push((performance.now() - started) * 1000);
    }
    channel.close();
    samples.sort((a, b) => a - b);
    return {
      p50: samples[Math.floor(samples.length * 0.5)],
      p99: samples[Math.floor(samples.length * 0.99)],
    };
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

/**
 * Bytes the proxy allocates on its JavaScript heap per relayed message, from V8's own GC trace (each scavenge
 * reports the bytes allocated since the one before): 100 B ping-pongs, then 64 KiB messages upstream.
 */
async function measureAllocation(variant: "deno" | "base") {
  const target = await startTarget("echo");
  const proxy = await startProxy(variant, target.port, ["--trace-gc-nvp"]);
  const proc = proxy.proc!;
  /** Sums "allocated" over the GC lines logged since `from`; counts the scavenges. */
  const gcSince = (from: number) => {
    let bytes = 0;
    let scavenges = 0;
    for (const line of proc.stdout.slice(from).split("\n")) {
      const allocated = line.match(/"allocated":(\d+)/);
      if (allocated) bytes += Number(allocated[1]);
      if (line.includes('"gc":"s"')) scavenges++;
    }
    return { bytes, scavenges };
  };
  try {
    const channel = await Channel.open(variant, proxy.port);
    const small = channel.frame(new Uint8Array(100).fill(7));
    for (let i = 0; i < 500; i++) {
      await writeAll(channel.conn, small);
      await receivePayload(channel, 100);
    }
    let from = proc.stdout.length;
    const roundTrips = 20000;
    for (let i = 0; i < roundTrips; i++) {
      await writeAll(channel.conn, small);
      await receivePayload(channel, 100);
    }
    await sleep(200);
    const smallGc = gcSince(from);
    from = proc.stdout.length;
    const large = channel.frame(new Uint8Array(MESSAGE).fill(1));
    const messages = 4000;
    const echoed = receivePayload(channel, messages * MESSAGE);
    for (let i = 0; i < messages; i++) await writeAll(channel.conn, large);
    await echoed;
    await sleep(200);
    const largeGc = gcSince(from);
    channel.close();
    return {
      bytesPerRoundTrip: smallGc.bytes / roundTrips,
      gcsPer10k: smallGc.scavenges / roundTrips * 10000,
      bytesPerLargeMessage: largeGc.bytes / messages,
    };
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

interface ConcurrencyResult {
  requested: number;
  succeeded: number;
  kibPerConnection: number;
}

async function measureConcurrency(variant: Exclude<Variant, "direct">, count: number) {
  const target = await startTarget("echo");
  const proxy = await startProxy(variant, target.port);
  const root = proxy.proc!.child.pid;
  const channels: Channel[] = [];
  try {
    await sleep(500);
    const before = memoryKiB(root);
    let succeeded = 0;
    const failures = new Map<string, number>();
    const message = new Uint8Array(100).fill(1);
    for (let i = 0; i < count; i += 100) {
      const batch = Array.from({ length: Math.min(100, count - i) }, async () => {
        const channel = await Channel.open(variant, proxy.port);
        channels.push(channel);
        await writeAll(channel.conn, channel.frame(message));
        await Promise.race([
          receivePayload(channel, 100),
          sleep(20000).then(() => {
            throw new Error("echo timeout");
          }),
        ]);
        succeeded++;
      });
      for (const outcome of await Promise.allSettled(batch)) {
        if (outcome.status === "rejected") {
          const reason = String(outcome.reason?.message ?? outcome.reason).slice(0, 80);
          failures.set(reason, (failures.get(reason) ?? 0) + 1);
        }
      }
    }
    if (failures.size > 0) {
      console.error(`${variant} ${count}: failures`, Object.fromEntries(failures));
    }
    await sleep(1000);
    const after = memoryKiB(root);
    return {
      requested: count,
      succeeded,
      kibPerConnection: (after - before) / Math.max(succeeded, 1),
    } satisfies ConcurrencyResult;
  } finally {
    for (const channel of channels) channel.close();
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

/**
 * PARALLEL_SESSIONS sessions echo PARALLEL_BYTES each at the same time (64 KiB messages, at most 1 MiB in flight
 * per session): the aggregate MB/s, and the proxy's CPU seconds per MB (all its processes).
 */
async function measureParallelEcho(variant: Variant): Promise<Throughput> {
  const target = await startTarget("echo");
  const proxy = await startProxy(variant, target.port);
  const cpuRoot = proxy.proc?.child.pid ?? target.proc.child.pid;
  const channels: Channel[] = [];
  try {
    for (let i = 0; i < PARALLEL_SESSIONS; i++) {
      channels.push(await Channel.open(variant, proxy.port));
    }
    const cpuBefore = cpuSeconds(cpuRoot);
    const started = performance.now();
    await Promise.all(channels.map(async (channel) => {
      const frame = channel.frame(new Uint8Array(MESSAGE).fill(0x42));
      let received = 0;
      let wake: (() => void) | undefined;
      const reader = (async () => {
        const buffer = new Uint8Array(256 * 1024);
        while (received < PARALLEL_BYTES) {
          const n = await channel.readPayload(buffer);
          if (n === null) throw new Error("EOF during echo");
          received += n;
          wake?.();
        }
      })();
      for (let sent = 0; sent < PARALLEL_BYTES; sent += MESSAGE) {
        while (sent - received > MiB) await new Promise<void>((resolve) => wake = resolve);
        await writeAll(channel.conn, frame);
      }
      await reader;
    }));
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(cpuRoot) - cpuBefore;
    const mb = PARALLEL_SESSIONS * PARALLEL_BYTES / 1e6;
    return { mbps: mb / seconds, cpu: cpu / seconds, mbPerCpuSecond: mb / Math.max(cpu, 0.01) };
  } finally {
    for (const channel of channels) channel.close();
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

interface CompressResult {
  /** Bytes on the wire per byte the client got (framing included; lower is better). */
  wirePerByte: number;
  mbps: number;
  /** The proxy's CPU seconds per MB relayed. */
  cpuPerMb: number;
}

/** The target sends COMPRESS_TRANSFER bytes of `kind` traffic; the client (deflate when agreed) counts. */
async function measureCompression(variant: Variant, kind: "text" | "vnc"): Promise<CompressResult> {
  const target = await startTarget(`source-${kind}`, COMPRESS_TRANSFER);
  const proxy = await startProxy(variant, target.port);
  const cpuRoot = proxy.proc?.child.pid ?? target.proc.child.pid;
  try {
    const channel = await Channel.open(variant, proxy.port);
    const cpuBefore = cpuSeconds(cpuRoot);
    const started = performance.now();
    await receivePayload(channel, COMPRESS_TRANSFER);
    const seconds = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(cpuRoot) - cpuBefore;
    channel.close();
    const mb = COMPRESS_TRANSFER / 1e6;
    return {
      wirePerByte: channel.wireBytes / COMPRESS_TRANSFER,
      mbps: mb / seconds,
      cpuPerMb: cpu / mb,
    };
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

async function measureHandshakes(variant: Exclude<Variant, "direct">): Promise<number> {
  const target = await startTarget("echo");
  const proxy = await startProxy(variant, target.port);
  try {
    let done = 0;
    const end = performance.now() + 3000;
    const worker = async () => {
      while (performance.now() < end) {
        const channel = await Channel.open(variant, proxy.port);
        channel.close();
        done++;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: 16 }, worker));
    return done / ((performance.now() - started) / 1000);
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

async function measureStall(variant: Exclude<Variant, "direct">) {
  const target = await startTarget("stall");
  const proxy = await startProxy(variant, target.port);
  const root = proxy.proc!.child.pid;
  try {
    const channel = await Channel.open(variant, proxy.port);
    await sleep(300);
    const before = memoryKiB(root);
    const frame = channel.frame(new Uint8Array(MESSAGE));
    let sent = 0;
    let stop = false;
    const flood = (async () => {
      try {
        while (!stop) {
          await writeAll(channel.conn, frame);
          sent += MESSAGE;
        }
      } catch { /* closed */ }
    })();
    await sleep(4000);
    stop = true;
    const after = memoryKiB(root);
    channel.close();
    await flood;
    return { acceptedMiB: sent / MiB, growthMiB: (after - before) / 1024 };
  } finally {
    await proxy.proc?.stop();
    await target.proc.stop();
  }
}

// ---- the run ---------------------------------------------------------------------------------------------------

const fmt = (n: number, digits = 0) => n.toFixed(digits);
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : "-");

async function main() {
  try {
    Deno.statSync(PYTHON_WEBSOCKIFY);
  } catch {
    console.error("Python websockify not found: apt-get install websockify");
    Deno.exit(1);
  }
  const variants: Variant[] = ["direct", "deno", "python", ...(COMPARE ? ["base" as const] : [])];
  /** Latency also measures the floor: a bare Deno relay (tests/bench/floor_relay.ts). */
  const latencyVariants: Variant[] = [...variants, "floor"];
  const results: Record<string, unknown> = {
    quick: QUICK,
    transferMiB: TRANSFER / MiB,
    date: new Date(),
  };
  const rows: string[] = [];
  /** A table row; with --compare, `base` (this / base) fills the last column. */
  const row = (cells: string[], base = "-") =>
    rows.push(`| ${[...cells, ...(COMPARE ? [base] : [])].join(" | ")} |`);

  console.error(`transfers of ${TRANSFER / MiB} MiB in ${MESSAGE / 1024} KiB messages`);
  row([
    "measure",
    "direct TCP",
    "websockify (Deno)",
    "Python websockify",
    "Deno / Python",
    "Deno / direct",
  ], "this / base");
  row(["---", "---", "---", "---", "---", "---"], "---");
  if (COMPARE) console.error(`comparing with the proxy in ${COMPARE}`);
  const transfers = [
    ["upstream MB/s", "sink"],
    ["downstream MB/s", "source"],
    ["echo MB/s", "echo"],
  ] as const;
  for (
    const [label, mode] of wanted("throughput") ? transfers : []
  ) {
    const r: Record<Variant, Throughput> = {} as Record<Variant, Throughput>;
    for (const variant of variants) {
      r[variant] = await measureTransfer(variant, mode);
      console.error(
        `${label} ${variant}: ${fmt(r[variant].mbps)} MB/s, ${
          fmt(r[variant].mbPerCpuSecond)
        } MB/CPU-s`,
      );
    }
    results[mode] = r;
    row([
      label,
      fmt(r.direct.mbps),
      fmt(r.deno.mbps),
      fmt(r.python.mbps),
      ratio(r.deno.mbps, r.python.mbps),
      ratio(r.deno.mbps, r.direct.mbps),
    ], r.base ? ratio(r.deno.mbps, r.base.mbps) : "-");
    row([
      `${label.split(" ")[0]} MB per proxy CPU-second`,
      "-",
      fmt(r.deno.mbPerCpuSecond),
      fmt(r.python.mbPerCpuSecond),
      ratio(r.deno.mbPerCpuSecond, r.python.mbPerCpuSecond),
      "-",
    ], r.base ? ratio(r.deno.mbPerCpuSecond, r.base.mbPerCpuSecond) : "-");
  }

  if (wanted("tls")) {
    certs = await makeCerts();
    try {
      for (const [label, mode] of transfers) {
        const deno = await measureTransfer("deno-tls", mode);
        const python = await measureTransfer("python-tls", mode);
        const base = COMPARE ? await measureTransfer("base-tls", mode) : undefined;
        console.error(
          `wss ${label}: deno ${fmt(deno.mbps)} MB/s, python ${fmt(python.mbps)} MB/s` +
            (base ? `, base ${fmt(base.mbps)} MB/s` : ""),
        );
        results[`tls-${mode}`] = { deno, python, base };
        row([
          `wss ${label}`,
          "-",
          fmt(deno.mbps),
          fmt(python.mbps),
          ratio(deno.mbps, python.mbps),
          "-",
        ], base ? ratio(deno.mbps, base.mbps) : "-");
        row([
          `wss ${label.split(" ")[0]} MB per proxy CPU-second`,
          "-",
          fmt(deno.mbPerCpuSecond),
          fmt(python.mbPerCpuSecond),
          ratio(deno.mbPerCpuSecond, python.mbPerCpuSecond),
          "-",
        ], base ? ratio(deno.mbPerCpuSecond, base.mbPerCpuSecond) : "-");
      }
      // Latency over wss, what most deployments run: the same 100 B ping-pong as plain.
      const tlsLatency = {
        deno: await measureLatency("deno-tls"),
        python: await measureLatency("python-tls"),
        base: COMPARE ? await measureLatency("base-tls") : undefined,
      };
      results["tls-latency"] = tlsLatency;
      for (const p of ["p50", "p99"] as const) {
        row([
          `wss 100 B round trip ${p} µs (lower is better)`,
          "-",
          fmt(tlsLatency.deno[p]),
          fmt(tlsLatency.python[p]),
          ratio(tlsLatency.deno[p], tlsLatency.python[p]),
          "-",
        ], tlsLatency.base ? ratio(tlsLatency.deno[p], tlsLatency.base[p]) : "-");
      }
      // The other scenarios over wss: handshakes (TLS included), idle sessions, a stalled target.
      const tlsHandshakes = {
        deno: await measureHandshakes("deno-tls"),
        python: await measureHandshakes("python-tls"),
        base: COMPARE ? await measureHandshakes("base-tls") : undefined,
      };
      results["tls-handshakes"] = tlsHandshakes;
      row([
        "wss handshakes per second (16 parallel, TLS included)",
        "-",
        fmt(tlsHandshakes.deno),
        fmt(tlsHandshakes.python),
        ratio(tlsHandshakes.deno, tlsHandshakes.python),
        "-",
      ], tlsHandshakes.base ? ratio(tlsHandshakes.deno, tlsHandshakes.base) : "-");
      const idle = QUICK ? 200 : 1000;
      const tlsIdle = {
        deno: await measureConcurrency("deno-tls", idle),
        python: await measureConcurrency("python-tls", idle),
        base: COMPARE ? await measureConcurrency("base-tls", idle) : undefined,
      };
      results["tls-concurrency"] = tlsIdle;
      row([
        `wss ${idle} connections: served`,
        "-",
        `${tlsIdle.deno.succeeded}/${idle}`,
        `${tlsIdle.python.succeeded}/${idle}`,
        "-",
        "-",
      ]);
      row([
        `wss ${idle} connections: proxy KiB per idle connection (lower is better)`,
        "-",
        fmt(tlsIdle.deno.kibPerConnection, 1),
        fmt(tlsIdle.python.kibPerConnection, 1),
        ratio(tlsIdle.deno.kibPerConnection, tlsIdle.python.kibPerConnection),
        "-",
      ], tlsIdle.base ? ratio(tlsIdle.deno.kibPerConnection, tlsIdle.base.kibPerConnection) : "-");
      const tlsStall = {
        deno: await measureStall("deno-tls"),
        python: await measureStall("python-tls"),
        base: COMPARE ? await measureStall("base-tls") : undefined,
      };
      results["tls-stall"] = tlsStall;
      row([
        "wss, stalled target, 4 s flood: proxy memory growth MiB",
        "-",
        fmt(tlsStall.deno.growthMiB, 1),
        fmt(tlsStall.python.growthMiB, 1),
        "-",
        "-",
      ], tlsStall.base ? `base: ${fmt(tlsStall.base.growthMiB, 1)}` : "-");
    } finally {
      await certs.remove();
    }
  }

  const latency: Record<Variant, { p50: number; p99: number }> = {} as never;
  for (const variant of wanted("latency") ? latencyVariants : []) {
    latency[variant] = await measureLatency(variant);
    console.error(
      `latency ${variant}: p50 ${fmt(latency[variant].p50)} µs, p99 ${
        fmt(latency[variant].p99)
      } µs`,
    );
  }
  results.latency = latency;
  for (const p of wanted("latency") ? ["p50", "p99"] as const : []) {
    row([
      `100 B round trip ${p} µs (lower is better)`,
      fmt(latency.direct[p]),
      fmt(latency.deno[p]),
      fmt(latency.python[p]),
      ratio(latency.deno[p], latency.python[p]),
      ratio(latency.deno[p], latency.direct[p]),
    ], latency.base ? ratio(latency.deno[p], latency.base[p]) : "-");
  }
  for (const p of wanted("latency") ? ["p50", "p99"] as const : []) {
    row([
      `100 B round trip ${p} µs: a bare Deno relay in the Deno column (the runtime's floor)`,
      fmt(latency.direct[p]),
      fmt(latency.floor[p]),
      fmt(latency.python[p]),
      ratio(latency.floor[p], latency.python[p]),
      ratio(latency.floor[p], latency.direct[p]),
    ]);
    row([
      `100 B round trip ${p}: websockify (Deno) / the bare Deno relay`,
      "-",
      ratio(latency.deno[p], latency.floor[p]),
      "-",
      "-",
      "-",
    ]);
  }

  if (wanted("alloc")) {
    const alloc = {
      deno: await measureAllocation("deno"),
      base: COMPARE ? await measureAllocation("base") : undefined,
    };
    results.alloc = alloc;
    console.error(`allocation: ${JSON.stringify(alloc)}`);
    for (
      const [label, key] of [
        ["100 B round trip: proxy bytes allocated (lower is better)", "bytesPerRoundTrip"],
        ["100 B round trip: young-generation GCs per 10,000", "gcsPer10k"],
        ["64 KiB message echoed (relayed twice): proxy bytes allocated", "bytesPerLargeMessage"],
      ] as const
    ) {
      row(
        [label, "-", fmt(alloc.deno[key]), "-", "-", "-"],
        alloc.base ? ratio(alloc.deno[key], alloc.base[key]) : "-",
      );
    }
  }

  if (wanted("handshakes")) {
    const handshakes = {
      deno: await measureHandshakes("deno"),
      python: await measureHandshakes("python"),
      base: COMPARE ? await measureHandshakes("base") : undefined,
    };
    results.handshakes = handshakes;
    console.error(`handshakes/s: deno ${fmt(handshakes.deno)}, python ${fmt(handshakes.python)}`);
    row([
      "handshakes per second (16 parallel)",
      "-",
      fmt(handshakes.deno),
      fmt(handshakes.python),
      ratio(handshakes.deno, handshakes.python),
      "-",
    ], handshakes.base ? ratio(handshakes.deno, handshakes.base) : "-");
  }

  const concurrency: Record<string, unknown> = {};

  for (const count of wanted("concurrency") ? CONCURRENCY : []) {
    const deno = await measureConcurrency("deno", count);
    const python = count <= PYTHON_MAX_CONNECTIONS
      ? await measureConcurrency("python", count)
      : undefined;
    const base = COMPARE ? await measureConcurrency("base", count) : undefined;
    concurrency[count] = { deno, python, base };
    console.error(
      `${count} connections: deno ${JSON.stringify(deno)} python ${JSON.stringify(python)}`,
    );
    row([
      `${count} connections: served`,
      "-",
      `${deno.succeeded}/${count}`,
      python ? `${python.succeeded}/${count}` : "not run",
      "-",
      "-",
    ]);
    row([
      `${count} connections: proxy KiB per idle connection (lower is better)`,
      "-",
      fmt(deno.kibPerConnection, 1),
      python ? fmt(python.kibPerConnection, 1) : "not run",
      python ? ratio(deno.kibPerConnection, python.kibPerConnection) : "-",
      "-",
    ], base ? ratio(deno.kibPerConnection, base.kibPerConnection) : "-");
  }
  results.concurrency = concurrency;

  if (wanted("compress")) {
    // --compress against the same proxy without it, and Python (which has none), in the same run.
    const compress: Record<string, Partial<Record<Variant, CompressResult>>> = {};
    for (const kind of ["text", "vnc"] as const) {
      const r: Partial<Record<Variant, CompressResult>> = {};
      for (const variant of ["deno", "deno-compress", "python"] as const) {
        r[variant] = await measureCompression(variant, kind);
        console.error(`compress ${kind} ${variant}: ${JSON.stringify(r[variant])}`);
      }
      compress[kind] = r;
      const label = kind === "text" ? "log-line text" : "VNC-like (incompressible)";
      row([
        `${label}: wire bytes per byte, plain (--compress)`,
        "-",
        `${fmt(r.deno!.wirePerByte, 3)} (${fmt(r["deno-compress"]!.wirePerByte, 3)})`,
        fmt(r.python!.wirePerByte, 3),
        `${ratio(r.deno!.wirePerByte, r.python!.wirePerByte)} (${
          ratio(r["deno-compress"]!.wirePerByte, r.python!.wirePerByte)
        })`,
        "-",
      ], "-");
      row([
        `${label}: proxy CPU-ms per MB, plain (--compress)`,
        "-",
        `${fmt(r.deno!.cpuPerMb * 1000, 1)} (${fmt(r["deno-compress"]!.cpuPerMb * 1000, 1)})`,
        fmt(r.python!.cpuPerMb * 1000, 1),
        `${ratio(r.deno!.cpuPerMb, r.python!.cpuPerMb)} (${
          ratio(r["deno-compress"]!.cpuPerMb, r.python!.cpuPerMb)
        })`,
        "-",
      ], "-");
    }
    results.compress = compress;
    const idle = await measureConcurrency("deno-compress", QUICK ? 200 : 1000);
    const idlePlain = await measureConcurrency("deno", QUICK ? 200 : 1000);
    results.compressIdle = { compress: idle, plain: idlePlain };
    row([
      `${idle.requested} idle sessions: proxy KiB each, plain (--compress)`,
      "-",
      `${fmt(idlePlain.kibPerConnection, 1)} (${fmt(idle.kibPerConnection, 1)})`,
      "-",
      "-",
      "-",
    ], "-");
  }

  if (wanted("workers")) {
    // --workers=2 against one process, in the same run: parallel echo, then sessions past one process's limit.
    const parallel: Partial<Record<Variant, Throughput>> = {};
    for (const variant of ["direct", "deno", "deno-workers", "python"] as const) {
      parallel[variant] = await measureParallelEcho(variant);
      console.error(`parallel echo ${variant}: ${JSON.stringify(parallel[variant])}`);
    }
    results.parallelEcho = parallel;
    row([
      `${PARALLEL_SESSIONS} parallel echo sessions, MB/s: 1 process (2 workers)`,
      fmt(parallel.direct!.mbps),
      `${fmt(parallel.deno!.mbps)} (${fmt(parallel["deno-workers"]!.mbps)})`,
      fmt(parallel.python!.mbps),
      `${ratio(parallel.deno!.mbps, parallel.python!.mbps)} (${
        ratio(parallel["deno-workers"]!.mbps, parallel.python!.mbps)
      })`,
      `${ratio(parallel.deno!.mbps, parallel.direct!.mbps)} (${
        ratio(parallel["deno-workers"]!.mbps, parallel.direct!.mbps)
      })`,
    ], "-");
    const workers: Record<string, unknown> = {};
    for (const count of WORKER_CONCURRENCY) {
      const two = await measureConcurrency("deno-workers", count);
      workers[count] = two;
      console.error(`${count} connections, 2 workers: ${JSON.stringify(two)}`);
      row([
        `${count} connections, --workers=2: served (KiB per idle connection)`,
        "-",
        `${two.succeeded}/${count} (${fmt(two.kibPerConnection, 1)})`,
        "-",
        "-",
        "-",
      ], "-");
    }
    results.workersConcurrency = workers;
  }

  if (!wanted("stall")) {
    finish(rows, results);
    return;
  }
  const stall = { deno: await measureStall("deno"), python: await measureStall("python") };
  results.stall = stall;
  console.error(`stall: ${JSON.stringify(stall)}`);
  row([
    "stalled target, 4 s flood: MiB the proxy accepted",
    "-",
    fmt(stall.deno.acceptedMiB, 1),
    fmt(stall.python.acceptedMiB, 1),
    "-",
    "-",
  ]);
  row([
    "stalled target, 4 s flood: proxy memory growth MiB",
    "-",
    fmt(stall.deno.growthMiB, 1),
    fmt(stall.python.growthMiB, 1),
    "-",
    "-",
  ]);

  finish(rows, results);
}

function finish(rows: string[], results: Record<string, unknown>): void {
  console.log(rows.join("\n"));
  const dir = `${ROOT}tests/bench/results`;
  Deno.mkdirSync(dir, { recursive: true });
  // A partial run (--only) must not replace the last full table.
  const name = ONLY ? `latest-${ONLY.join("-")}` : QUICK ? "latest-quick" : "latest";
  Deno.writeTextFileSync(`${dir}/${name}.json`, JSON.stringify(results, null, 2));
  Deno.writeTextFileSync(`${dir}/${name}.md`, rows.join("\n") + "\n");
}

await main();
