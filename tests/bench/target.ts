/**
 * The benchmark's TCP target, run as its own process so it does not share an event loop with the client.
 *
 *   deno run -A target.ts echo            echo every byte back
 *   deno run -A target.ts sink N          read; after N bytes write one byte ("done") back
 *   deno run -A target.ts source N        write N bytes on connect, then keep reading until EOF
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
    case "source": {
      const block = new Uint8Array(256 * 1024).fill(0x5a);
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
