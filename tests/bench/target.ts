/**
 * The benchmark's TCP target, run as its own process so it does not share an event loop with the client.
 *
 *   deno run -A target.ts echo            echo every byte back
 *   deno run -A target.ts sink N          read; after N bytes write one byte ("done") back
 *   deno run -A target.ts source N        write N bytes on connect, then keep reading until EOF
 *   deno run -A target.ts source-text N   the same with log lines (text that compresses well)
 *   deno run -A target.ts source-vnc N    the same with bytes that do not compress (like Tight/ZRLE output)
 *   deno run -A target.ts stall           accept and never read
 *
 * Prints `port <N>` on stdout once listening. Stops on SIGTERM.
 */

import { writeAll } from "../../lib/io.ts";

const [mode, countText] = Deno.args;
const count = Number(countText ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

/** 256 KiB of log lines, or of pseudo-random bytes (what compressed VNC updates look like to deflate). */
function sourceBlock(mode: string): Uint8Array {
  const block = new Uint8Array(256 * 1024);
  if (mode === "source-vnc") {
    let state = 0x9e3779b9;
    for (let i = 0; i < block.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      block[i] = state & 0xff;
    }
    return block;
  }
  const lines = Array.from(
    { length: 4000 },
    (_, i) =>
      `2026-12-01T02:${i % 60}:${i % 57} INFO session ${i * 7919 % 10007} ended: ${i * 37} bytes\n`,
  ).join("");
  block.set(new TextEncoder().encode(lines).subarray(0, block.length));
  return block;
}

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const buffer = new Uint8Array(256 * 1024);
  switch (mode) {
    case "echo": {
      let n: number | null;
      while ((n = await conn.read(buffer)) !== null) await writeAll(conn, buffer.subarray(0, n));
      return;
    }
    case "sink": {
      let received = 0;
      let answered = false;
      let n: number | null;
      while ((n = await conn.read(buffer)) !== null) {
        received += n;
        if (!answered && received >= count) {
          answered = true;
          await writeAll(conn, new Uint8Array([1]));
        }
      }
      return;
    }
    case "source":
    case "source-text":
    case "source-vnc": {
      const block = mode === "source" ? new Uint8Array(256 * 1024).fill(0x5a) : sourceBlock(mode);
      for (let sent = 0; sent < count;) {
        const piece = block.subarray(0, Math.min(block.length, count - sent));
        await writeAll(conn, piece);
        sent += piece.length;
      }
      while ((await conn.read(buffer)) !== null);
      return;
    }
    case "stall":
      await new Promise(() => {}); // never read; the process is killed at the end
      return;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

for await (const conn of listener) {
  serve(conn).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch { /* already closed */ }
  });
}
