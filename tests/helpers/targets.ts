/** Real TCP targets on loopback for the proxy to connect to: a handler per connection, an echo, a sink. */

import { writeAll } from "../../lib/io.ts";
import { readToEnd } from "./bytes.ts";

/** A real TCP server on loopback; `handler` runs per connection. Tracks its connections for tests. */
export class TcpTarget {
  readonly listener: Deno.TcpListener;
  readonly connections: Deno.Conn[] = [];
  readonly #handlers: Promise<void>[] = [];
  #loop: Promise<void>;

  constructor(handler: (conn: Deno.Conn) => Promise<void>, hostname = "127.0.0.1") {
    const listener = Deno.listen({ hostname, port: 0 });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.connections.push(conn);
        this.#handlers.push(
          handler(conn).catch(() => {}).finally(() => {
            try {
              conn.close();
            } catch { /* closed by the handler */ }
          }),
        );
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async close(): Promise<void> {
    try {
      this.listener.close();
    } catch { /* already closed */ }
    for (const conn of this.connections) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await this.#loop;
    await Promise.all(this.#handlers);
  }
}

/** Echoes every byte back. */
export function echoTarget(hostname = "127.0.0.1"): TcpTarget {
  return new TcpTarget(async (conn) => {
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return;
      await writeAll(conn, buffer.subarray(0, n));
    }
  }, hostname);
}

/** Collects everything a connection sends until EOF; `received` resolves with it. */
export function sinkTarget(): TcpTarget & { received: Promise<Uint8Array>[] } {
  const received: Promise<Uint8Array>[] = [];
  const target = new TcpTarget(async (conn) => {
    let resolve!: (bytes: Uint8Array) => void;
    received.push(new Promise((r) => resolve = r));
    resolve(await readToEnd(conn));
  });
  return Object.assign(target, { received });
}

/**
 * A unix datagram receiver (like /dev/log) in Python, since Deno needs --unstable-net for one: `text` collects
 * its lines, one per datagram, after "ready".
 */
export function datagramReceiver(path: string) {
  const child = new Deno.Command("python3", {
    args: [
      "-u",
      "-c",
      [
        "import socket, sys",
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('ready')",
        "while True: print(s.recv(65536).decode())",
      ].join("\n"),
      path,
    ],
    stdout: "piped",
  }).spawn();
  const decoder = new TextDecoder();
  const receiver = {
    text: "",
    reading: Promise.resolve(),
    async stop() {
      child.kill();
      await child.status;
      await receiver.reading;
    },
  };
  receiver.reading = (async () => {
    for await (const chunk of child.stdout) receiver.text += decoder.decode(chunk);
  })();
  return receiver;
}
