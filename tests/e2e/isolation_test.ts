// Sessions are isolated: under load, with churn, no byte of one session ever reaches another, and every byte
// a peer sent before a clean close arrives, in order, at the other end.
//
// Hundreds of sessions (ws, wss and base64 mixed) run against an echo target, each with its own byte pattern,
// message sizes on both sides of the proxy's small/large read switch, slow readers and stalled targets on
// some of them, and three ways of ending (client close, target close, client drop). The target checks what it
// receives from each connection, the client checks what comes back. With --record on, each record file must
// hold its own session's bytes and nothing else. Afterwards the proxy's open files and memory come back to
// their idle level.
//
// The seed is random unless ISOLATION_SEED is set; every failure message names it.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import WebSocketNode from "ws";
import { serverCertArgs, withTestCerts } from "../helpers/certs.ts";
import { ProxyProcess, startProxy } from "../helpers/proxy.ts";
import { liveMemoryKiB, openFiles } from "../helpers/system.ts";
import { TcpTarget } from "../helpers/targets.ts";
import { deadline, sleep, waitFor } from "../helpers/waits.ts";
import { writeAll } from "../../lib/io.ts";

const SEED = Number(Deno.env.get("ISOLATION_SEED") ?? Math.floor(Math.random() * 1e9));

/** A small seeded generator (mulberry32), so a failing run can be repeated. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- each session's own bytes ------------------------------------------------------------------------------

/** The period of a session's pattern: prime, so stale or shifted bytes of the same session mismatch too. */
const PERIOD = 8191;
const HEADER = 12;

/** Byte `i` of session `id`'s stream (after its header) is `block[i % PERIOD]`; blocks differ per session. */
function patternBlock(id: number): Uint8Array {
  const next = random(id * 7919 + 17);
  const block = new Uint8Array(PERIOD * 2); // doubled, so any window of up to PERIOD bytes is one subarray
  for (let i = 0; i < PERIOD; i++) block[i] = block[i + PERIOD] = Math.floor(next() * 256);
  return block;
}

/** `length` bytes of the session's stream starting at `offset`. */
function patternBytes(block: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let done = 0; done < length;) {
    const start = (offset + done) % PERIOD;
    const n = Math.min(PERIOD, length - done);
    out.set(block.subarray(start, start + n), done);
    done += n;
  }
  return out;
}

/** Compares `bytes` with the session's stream at `offset`; returns the index of the first difference or -1. */
function firstMismatch(block: Uint8Array, offset: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== block[(offset + i) % PERIOD]) return i;
  }
  return -1;
}

const FLAG_TARGET_STALLS = 1;
const FLAG_TARGET_CLOSES = 2;

type Kind = "ws" | "wss" | "base64";
type Ending = "client-close" | "target-close" | "client-drop";

interface SessionPlan {
  id: number;
  kind: Kind;
  ending: Ending;
  messages: number[];
  slowReader: boolean;
  targetStalls: boolean;
  total: number;
}

function planSessions(
  count: number,
  seed: number,
  maxMessage: number,
  firstId = 1000,
): SessionPlan[] {
  const next = random(seed);
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
  const plans: SessionPlan[] = [];
  for (let i = 0; i < count; i++) {
    const messages: number[] = [];
    const n = 1 + Math.floor(next() * 24);
    for (let m = 0; m < n; m++) {
      // Around the small read (2 KiB) and far above it, so reads switch buffer sizes back and forth.
      const band = pick([[1, 200], [1500, 5000], [20_000, maxMessage]]);
      messages.push(band[0] + Math.floor(next() * (band[1] - band[0])));
    }
    plans.push({
      id: firstId + i,
      kind: pick<Kind>(["ws", "ws", "wss", "base64"]),
      ending: pick<Ending>(["client-close", "client-close", "target-close", "client-drop"]),
      messages,
      slowReader: next() < 0.2,
      targetStalls: next() < 0.2,
      total: messages.reduce((a, b) => a + b, 0),
    });
  }
  return plans;
}

// ---- the target: checks every connection's bytes, echoes them ----------------------------------------------

interface TargetReport {
  id: number;
  received: number;
  error?: string;
}

function checkingEchoTarget(plans: Map<number, SessionPlan>, reports: TargetReport[]): TcpTarget {
  const claimed = new Set<number>();
  return new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(64 * 1024);
    const head = new Uint8Array(HEADER);
    let headFill = 0;
    let report: TargetReport | undefined;
    let block: Uint8Array | undefined;
    let plan: SessionPlan | undefined;
    let stalled = false;
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        const chunk = buffer.subarray(0, n);
        let body = chunk;
        if (headFill < HEADER) {
          const take = Math.min(HEADER - headFill, n);
          head.set(chunk.subarray(0, take), headFill);
          headFill += take;
          body = chunk.subarray(take);
          if (headFill === HEADER) {
            const view = new DataView(head.buffer);
            const id = view.getUint32(0);
            plan = plans.get(id);
            report = { id, received: 0 };
            reports.push(report);
            if (!plan || claimed.has(id) || view.getUint32(4) !== plan.total) {
              report.error = `bad header (id ${id}, total ${view.getUint32(4)})`;
              return;
            }
            claimed.add(id);
            block = patternBlock(id);
          }
        }
        if (block && report && body.length > 0) {
          const at = firstMismatch(block, report.received, body);
          if (at >= 0) {
            report.error = `byte ${report.received + at} differs: expected ${
              block[(report.received + at) % PERIOD]
            }, got ${body[at]}`;
            return;
          }
          report.received += body.length;
        }
        await writeAll(conn, chunk);
        if (plan?.targetStalls && !stalled && report && report.received > 0) {
          stalled = true; // stop reading for a while: the proxy must hold the client back, not buffer
          await sleep(300 + (plan.id % 5) * 100);
        }
        if (plan && report && (plan.ending === "target-close") && report.received === plan.total) {
          return; // the handler's end closes the connection: the proxy must deliver the echo, then 1000
        }
      }
    } catch (error) {
      if (report && plan?.ending !== "client-drop") report.error = `target: ${error}`;
    }
  });
}

// ---- the client ----------------------------------------------------------------------------------------------

interface ClientOutcome {
  id: number;
  echoed: number;
  closeCode?: number;
  error?: string;
}

function headerFor(plan: SessionPlan): Uint8Array {
  const head = new Uint8Array(HEADER);
  const view = new DataView(head.buffer);
  view.setUint32(0, plan.id);
  view.setUint32(4, plan.total);
  view.setUint32(
    8,
    (plan.targetStalls ? FLAG_TARGET_STALLS : 0) |
      (plan.ending === "target-close" ? FLAG_TARGET_CLOSES : 0),
  );
  return head;
}

async function runClient(plan: SessionPlan, port: number, ca: string): Promise<ClientOutcome> {
  const outcome: ClientOutcome = { id: plan.id, echoed: 0 };
  const block = patternBlock(plan.id);
  const url = `${plan.kind === "wss" ? "wss://localhost" : "ws://127.0.0.1"}:${port}/`;
  const ws = new WebSocketNode(url, plan.kind === "base64" ? ["base64"] : ["binary"], {
    ca,
    perMessageDeflate: false,
  });
  const header = headerFor(plan);
  let headerEchoed = 0;
  // Drop after roughly half of the bytes came back.
  const dropAt = plan.ending === "client-drop" ? Math.floor(plan.total / 2) : Infinity;
  const fail = (message: string) => {
    outcome.error ??= message;
    ws.terminate();
  };
  const onBytes = (bytes: Uint8Array) => {
    let body = bytes;
    if (headerEchoed < HEADER) {
      const take = Math.min(HEADER - headerEchoed, bytes.length);
      for (let i = 0; i < take; i++) {
        if (bytes[i] !== header[headerEchoed + i]) return fail(`header byte ${headerEchoed + i}`);
      }
      headerEchoed += take;
      body = bytes.subarray(take);
    }
    const at = firstMismatch(block, outcome.echoed, body);
    if (at >= 0) {
      return fail(
        `echoed byte ${outcome.echoed + at} differs: expected ${
          block[(outcome.echoed + at) % PERIOD]
        }, got ${body[at]}`,
      );
    }
    outcome.echoed += body.length;
    if (outcome.echoed > plan.total) return fail(`more bytes echoed than sent`);
    if (outcome.echoed >= dropAt) {
      ws.terminate();
    } else if (outcome.echoed === plan.total && plan.ending === "client-close") {
      ws.close(1000, "done");
    }
  };
  ws.on("message", (data: Uint8Array | string, isBinary: boolean) => {
    if (plan.kind === "base64") {
      if (isBinary) return fail("binary message on a base64 session");
      onBytes(new Uint8Array(Buffer.from(String(data), "base64")));
    } else {
      onBytes(new Uint8Array(data as Uint8Array));
    }
  });
  const closed = new Promise<void>((resolve) => {
    ws.on("close", (code: number) => {
      outcome.closeCode = code;
      resolve();
    });
    ws.on("error", (error: Error) => {
      if (plan.ending !== "client-drop") outcome.error ??= `client: ${error.message}`;
    });
  });
  await new Promise<void>((resolve) => {
    ws.once("open", resolve);
    ws.once("close", resolve);
  });
  if (ws.readyState !== WebSocketNode.OPEN) {
    await closed;
    outcome.error ??= "the WebSocket did not open";
    return outcome;
  }
  const send = (bytes: Uint8Array) =>
    new Promise<void>((resolve) => {
      const payload = plan.kind === "base64" ? Buffer.from(bytes).toString("base64") : bytes;
      ws.send(payload, { binary: plan.kind !== "base64" }, () => resolve());
    });
  let offset = 0;
  await send(header);
  for (const [index, size] of plan.messages.entries()) {
    if (ws.readyState !== WebSocketNode.OPEN) break;
    await send(patternBytes(block, offset, size));
    offset += size;
    if (plan.slowReader && index === 0) {
      ws.pause(); // a slow reader: the proxy must stop reading the target, not buffer for us
      await sleep(200 + (plan.id % 4) * 100);
      ws.resume();
    }
  }
  await deadline(closed, 60_000, `session ${plan.id} to end (seed ${SEED})`).catch((error) => {
    fail(String(error));
  });
  return outcome;
}

// ---- checks ------------------------------------------------------------------------------------------------

function checkOutcomes(
  plans: SessionPlan[],
  outcomes: ClientOutcome[],
  reports: TargetReport[],
): void {
  const where = `(seed ${SEED}; rerun with ISOLATION_SEED=${SEED})`;
  const byId = new Map(reports.map((report) => [report.id, report]));
  for (const report of reports) {
    assert.equal(report.error, undefined, `target, session ${report.id}: ${report.error} ${where}`);
  }
  for (const [i, plan] of plans.entries()) {
    const outcome = outcomes[i];
    const report = byId.get(plan.id);
    const what = `session ${plan.id} (${plan.kind}, ${plan.ending})`;
    assert.equal(outcome.error, undefined, `${what}: ${outcome.error} ${where}`);
    if (plan.ending === "client-drop") continue;
    assert.equal(outcome.echoed, plan.total, `${what}: bytes echoed ${where}`);
    assert.equal(report?.received, plan.total, `${what}: bytes the target received ${where}`);
    assert.equal(outcome.closeCode, 1000, `${what}: close code ${where}`);
  }
}

/** Runs `plans` with at most `concurrency` sessions open at once (a finished session makes room for the next). */
async function runAll(
  plans: SessionPlan[],
  port: number,
  ca: string,
  concurrency: number,
): Promise<ClientOutcome[]> {
  const outcomes: ClientOutcome[] = new Array(plans.length);
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < plans.length) {
      const index = nextIndex++;
      outcomes[index] = await runClient(plans[index], port, ca);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

Deno.test({
  name:
    "isolation: 400 sessions (ws, wss, base64), 150 at once, with churn: every byte checked at both ends; open files back to idle",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTestCerts(async (certs, ca) => {
      const warmUp = planSessions(3, SEED, 1000, 100);
      const plans = planSessions(400, SEED, 120_000, 1000);
      const reports: TargetReport[] = [];
      const target = checkingEchoTarget(
        new Map([...warmUp, ...plans].map((plan) => [plan.id, plan])),
        reports,
      );
      const proxy = new ProxyProcess([
        "127.0.0.1:0",
        `127.0.0.1:${target.port}`,
        ...serverCertArgs(certs),
      ]);
      try {
        const port = await proxy.port();
        const pid = proxy.child.pid;
        await runAll(warmUp, port, ca, 3); // the code every kind of session needs is loaded
        await sleep(300);
        const idleFiles = openFiles(pid);
        const idleRss = proxy.rssKiB();
        const started = performance.now();
        const outcomes = await runAll(plans, port, ca, 150);
        const seconds = (performance.now() - started) / 1000;
        checkOutcomes(plans, outcomes, reports);
        await waitFor(
          () => openFiles(pid) <= idleFiles,
          10_000,
          `open files back to ${idleFiles} (now ${openFiles(pid)}; seed ${SEED})`,
        );
        const mib = plans.reduce((sum, plan) => sum + plan.total, 0) >> 20;
        console.log(
          `isolation: seed ${SEED}, 400 sessions, ${mib} MiB each way in ${
            seconds.toFixed(1)
          } s; ` +
            `proxy RSS ${idleRss >> 10} MiB idle, ${
              proxy.rssKiB() >> 10
            } MiB after; open files ${idleFiles}`,
        );
      } finally {
        await proxy.stop();
        await target.close();
      }
    }),
});

Deno.test({
  name:
    "isolation: after 300 more sessions, the proxy holds no more memory or files than after the first 150",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTestCerts(async (certs, ca) => {
      // The proxy runs in this process, so a full collection can be forced and live memory read exactly (a
      // child's RSS keeps what V8 and the allocator grew to, whether or not anything is still in use).
      const rounds = [
        planSessions(150, SEED + 2, 120_000, 10_000),
        planSessions(300, SEED + 3, 120_000, 20_000),
      ];
      const reports: TargetReport[] = [];
      const target = checkingEchoTarget(
        new Map(rounds.flat().map((plan) => [plan.id, plan])),
        reports,
      );
      const proxy = await startProxy([
        `127.0.0.1:${target.port}`,
        ...serverCertArgs(certs),
      ]);
      const files = () => openFiles(Deno.pid);
      try {
        const idleFiles = files();
        const live: number[] = [];
        for (const plans of rounds) {
          checkOutcomes(plans, await runAll(plans, proxy.port, ca, 150), reports);
          await waitFor(() => files() <= idleFiles, 10_000, `open files back to ${idleFiles}`);
          await sleep(200);
          live.push(liveMemoryKiB());
        }
        console.log(`isolation: live JS memory after 150 / 450 sessions: ${live.join(" / ")} KiB`);
        assert.ok(
          live[1] - live[0] < 8 * 1024,
          `300 sessions later, live memory grew from ${live[0]} to ${live[1]} KiB (seed ${SEED})`,
        );
      } finally {
        await proxy.stop();
        await target.close();
      }
    }),
});

/** Reads one --record file back: the client's bytes and the target's bytes, as recorded. */
async function readRecord(
  path: string,
): Promise<{ fromClient: Uint8Array; fromTarget: Uint8Array }> {
  const text = await Deno.readTextFile(path);
  const frames = new Function(`${text}; return VNC_frame_data;`)() as string[];
  const parts: Record<"{" | "}", number[]> = { "{": [], "}": [] };
  for (const frame of frames) {
    if (frame === "EOF") break;
    const direction = frame[0] as "{" | "}";
    const payload = frame.slice(frame.indexOf(direction, 1) + 1);
    for (let i = 0; i < payload.length; i++) parts[direction].push(payload.charCodeAt(i));
  }
  return { fromClient: new Uint8Array(parts["}"]), fromTarget: new Uint8Array(parts["{"]) };
}

Deno.test({
  name: "isolation with --record: each record file holds its own session's bytes and nothing else",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTestCerts(async (certs, ca) => {
      const plans = planSessions(80, SEED + 1, 40_000).map((plan) => ({
        ...plan,
        ending: plan.ending === "client-drop" ? "client-close" as const : plan.ending,
      }));
      const reports: TargetReport[] = [];
      const target = checkingEchoTarget(new Map(plans.map((plan) => [plan.id, plan])), reports);
      const dir = await Deno.makeTempDir({ prefix: "websockify-isolation-" });
      const proxy = new ProxyProcess([
        "127.0.0.1:0",
        `127.0.0.1:${target.port}`,
        ...serverCertArgs(certs),
        `--record=${dir}/session`,
      ]);
      try {
        const port = await proxy.port();
        const outcomes = await runAll(plans, port, ca, 40);
        checkOutcomes(plans, outcomes, reports);
        await waitFor(
          () => (proxy.stderr.match(/session ended by/g) ?? []).length >= plans.length,
          10_000,
          "every session's summary line",
        );
        const byId = new Map(plans.map((plan) => [plan.id, plan]));
        const seen = new Set<number>();
        for (const entry of Deno.readDirSync(dir)) {
          const { fromClient, fromTarget } = await readRecord(`${dir}/${entry.name}`);
          const where = `${entry.name} (seed ${SEED + 1})`;
          assert.ok(fromClient.length >= HEADER, `${where}: no header recorded`);
          const id = new DataView(fromClient.buffer).getUint32(0);
          const plan = byId.get(id);
          assert.ok(plan && !seen.has(id), `${where}: header names session ${id}`);
          seen.add(id);
          const block = patternBlock(id);
          for (const [side, bytes] of [["client", fromClient], ["target", fromTarget]] as const) {
            assert.equal(bytes.length, HEADER + plan.total, `${where}: ${side} byte count`);
            assert.deepEqual(
              bytes.subarray(0, HEADER),
              headerFor(plan),
              `${where}: ${side} header`,
            );
            const at = firstMismatch(block, 0, bytes.subarray(HEADER));
            assert.equal(at, -1, `${where}: ${side} byte ${at} is not this session's`);
          }
        }
        assert.equal(seen.size, plans.length, "one record file per session");
      } finally {
        await proxy.stop();
        await target.close();
        await Deno.remove(dir, { recursive: true });
      }
    }),
});
