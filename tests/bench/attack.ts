/**
 * The proxy under attack: what a normal client sees (round-trip latency, failures) while others attack, and the
 * proxy's memory and open files during and after. Each figure is given against the same proxy's quiet baseline,
 * measured in the same run.
 *
 *   deno task bench:attack            # all attacks, ~1 minute
 *   deno task bench:attack --quick    # shorter phases
 *
 * Attacks (each against a fresh proxy, loopback only, bounded in count and time):
 * - slowloris: 500 connections trickling a request head one byte every 2 s, reopened as the proxy cuts them;
 * - TLS aborts: connections that send the start of a ClientHello and close, or go silent;
 * - reset flood: connections reset (SO_LINGER 0) before the proxy accepts them, 300 a second (python3);
 * - junk: random bytes, random frames after a valid handshake, mutated heads.
 */

import { encodeFrame, Opcode } from "../../lib/websocket/frames.ts";
import { sleep } from "../../lib/deadline.ts";
import { findHeadEnd } from "../../lib/http.ts";
import { writeAll } from "../../lib/io.ts";
import { makeCerts, serverCertArgs } from "../helpers/certs.ts";
import { TLS_START } from "../helpers/raw_client.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const QUICK = Deno.args.includes("--quick");
const PHASE_MS = QUICK ? 5000 : 15000;
const encoder = new TextEncoder();
const MASK = new Uint8Array([1, 2, 3, 4]);

function echoTarget(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(64 * 1024);
        try {
          while (true) {
            const n = await conn.read(buffer);
            if (n === null) break;
            await writeAll(conn, buffer.subarray(0, n));
          }
        } catch { /* peer gone */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

class Proxy {
  readonly child: Deno.ChildProcess;
  stderr = "";
  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--unstable-net", "--frozen", `${ROOT}main.ts`, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr += decoder.decode(chunk);
    })();
  }
  async port(): Promise<number> {
    for (let i = 0; i < 300; i++) {
      const match = this.stderr.match(/Listen on .*:(\d+)/);
      if (match) return Number(match[1]);
      await sleep(20);
    }
    throw new Error(`no banner: ${this.stderr}`);
  }
  rssMiB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.child.pid}/status`);
    return Number(status.match(/VmRSS:\s+(\d+)/)![1]) / 1024;
  }
  files(): number {
    return [...Deno.readDirSync(`/proc/${this.child.pid}/fd`)].length;
  }
  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    await this.child.status;
  }
}

/** A normal client: opens a session, then does 100-byte round trips every 50 ms until `until` resolves. */
async function probe(port: number, until: Promise<unknown>) {
  const rtts: number[] = [];
  let failures = 0;
  let stop = false;
  until.then(() => stop = true);
  while (!stop) {
    try {
      const started = performance.now();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(
          conn,
          encoder.encode(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
          ),
        );
        const buffer = new Uint8Array(4096);
        let have = 0;
        while (findHeadEnd(buffer.subarray(0, have)) < 0) {
          const n = await conn.read(buffer.subarray(have));
          if (n === null) throw new Error("closed");
          have += n;
        }
        // Handshake time counts as the first round trip; then 10 echoes on the same session.
        rtts.push(performance.now() - started);
        for (let i = 0; i < 10 && !stop; i++) {
          const t = performance.now();
          await writeAll(conn, encodeFrame(Opcode.Binary, new Uint8Array(100), { mask: MASK }));
          let got = 0;
          while (got < 102) {
            const n = await conn.read(buffer);
            if (n === null) throw new Error("closed");
            got += n;
          }
          rtts.push(performance.now() - t);
          await sleep(50);
        }
      } finally {
        conn.close();
      }
    } catch {
      failures++;
      await sleep(50);
    }
  }
  rtts.sort((a, b) => a - b);
  const at = (q: number) => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: rtts.at(-1) ?? NaN, count: rtts.length, failures };
}

// ---- attacks ---------------------------------------------------------------------------------------------------

async function slowloris(port: number, until: Promise<unknown>): Promise<string> {
  let stop = false;
  until.then(() => stop = true);
  let opened = 0;
  const head = "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + "a".repeat(200);
  const one = async () => {
    while (!stop) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        await sleep(100);
        continue;
      }
      opened++;
      try {
        for (let i = 0; i < head.length && !stop; i++) {
          await writeAll(conn, encoder.encode(head[i]));
          await sleep(2000);
        }
      } catch { /* cut by the proxy: reopen */ }
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  await Promise.all(Array.from({ length: 500 }, one));
  return `${opened} connections opened`;
}

async function tlsAborts(port: number, until: Promise<unknown>): Promise<string> {
  let stop = false;
  until.then(() => stop = true);
  let count = 0;
  const silent: Deno.Conn[] = [];
  const one = async () => {
    while (!stop) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await writeAll(conn, TLS_START);
        if (count++ % 10 === 0 && silent.length < 200) silent.push(conn);
        else conn.close();
      } catch { /* refused under load */ }
      await sleep(5);
    }
  };
  await Promise.all(Array.from({ length: 20 }, one));
  for (const conn of silent) {
    try {
      conn.close();
    } catch { /* closed by the proxy */ }
  }
  return `${count} handshakes begun and abandoned`;
}

async function resetFlood(port: number, until: Promise<unknown>): Promise<string> {
  const seconds = PHASE_MS / 1000;
  const child = new Deno.Command("python3", {
    args: [
      "-c",
      `
import socket, struct, time
end = time.time() + ${seconds}
n = 0
while time.time() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.connect(("127.0.0.1", ${port}))
        n += 1
    except OSError:
        pass
    s.close()
    time.sleep(1 / 300)
print(n)
`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const [output] = await Promise.all([child.output(), until]);
  return `${new TextDecoder().decode(output.stdout).trim()} connections reset before accept`;
}

async function junk(port: number, until: Promise<unknown>): Promise<string> {
  let stop = false;
  until.then(() => stop = true);
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
  let count = 0;
  const one = async () => {
    while (!stop) {
      count++;
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const kind = Math.floor(random() * 3);
        if (kind === 0) {
          await writeAll(conn, bytes(1 + Math.floor(random() * 2000)));
        } else {
          await writeAll(
            conn,
            encoder.encode(
              "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            ),
          );
          if (kind === 1) await writeAll(conn, bytes(1 + Math.floor(random() * 5000)));
          else {
            const frame = encodeFrame(Opcode.Binary, bytes(200), { mask: MASK });
            frame[Math.floor(random() * 6)] ^= 1 << Math.floor(random() * 8);
            await writeAll(conn, frame);
          }
        }
        await sleep(20);
        conn.close();
      } catch { /* cut by the proxy */ }
    }
  };
  await Promise.all(Array.from({ length: 20 }, one));
  return `${count} junk connections`;
}

// ---- the run ---------------------------------------------------------------------------------------------------

const certs = await makeCerts();
const target = echoTarget();
const rows: string[] = [];
const fmt = (n: number) => n.toFixed(2);

try {
  const attacks: [string, (port: number, until: Promise<unknown>) => Promise<string>][] = [
    ["slowloris (500 trickling heads)", slowloris],
    ["TLS handshakes begun and abandoned", tlsAborts],
    ["resets before accept (300/s)", resetFlood],
    ["junk bytes, frames and heads", junk],
  ];
  for (const [name, attack] of attacks) {
    const proxy = new Proxy([
      "127.0.0.1:0",
      `127.0.0.1:${target.port}`,
      ...serverCertArgs(certs),
    ]);
    try {
      const port = await proxy.port();
      await probe(port, sleep(500)); // warm up
      const idle = { rss: proxy.rssMiB(), files: proxy.files() };
      const quiet = await probe(port, sleep(PHASE_MS / 3));
      const end = sleep(PHASE_MS);
      let peakRss = 0;
      let peakFiles = 0;
      const sampling = setInterval(() => {
        peakRss = Math.max(peakRss, proxy.rssMiB());
        peakFiles = Math.max(peakFiles, proxy.files());
      }, 200);
      const [during, what] = await Promise.all([probe(port, end), attack(port, end)]);
      clearInterval(sampling);
      // The proxy's deadlines (10 s for a head) let the last attackers go.
      await sleep(11_000);
      const after = { rss: proxy.rssMiB(), files: proxy.files() };
      rows.push(
        `| ${name} | ${what} | ${fmt(quiet.p50)} / ${fmt(during.p50)} ms (${
          fmt(during.p50 / quiet.p50)
        }x) | ${fmt(quiet.p99)} / ${fmt(during.p99)} ms (${
          fmt(during.p99 / quiet.p99)
        }x) | ${during.failures} of ${during.count} | ${idle.rss.toFixed(0)} / ${
          peakRss.toFixed(0)
        } / ${after.rss.toFixed(0)} MiB | ${idle.files} / ${peakFiles} / ${after.files} |`,
      );
      console.error(rows.at(-1));
    } finally {
      await proxy.stop();
    }
  }
} finally {
  target.close();
  await certs.remove();
}

console.log(
  "| attack | volume | normal client round trip p50, quiet / under attack | p99 | failed | proxy RSS idle / peak / after | open files idle / peak / after |",
);
console.log("|---|---|---|---|---|---|---|");
for (const row of rows) console.log(row);
