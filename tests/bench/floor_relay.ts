/**
 * The benchmark's floor for latency: the least a Deno program can do to relay the latency test's messages
 * (one 100 B binary frame at a time, each in one read), with the same runtime calls as the proxy (`Deno.listen`,
 * `read`/`write` on `Deno.Conn`) and nothing else: no HTTP parsing beyond the key, no validation, no
 * closing handshake. What the proxy measures above this is its own cost; what this measures above direct TCP
 * is the runtime's.
 *
 *   deno run -A floor_relay.ts TARGET_PORT      prints `port <N>` once listening
 *
 * Not a proxy: it trusts its peer completely and is only fit for the benchmark.
 */

const targetPort = Number(Deno.args[0]);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

const encoder = new TextEncoder();

async function accept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

async function relay(client: Deno.TcpConn): Promise<void> {
  client.setNoDelay(true);
  const head = new Uint8Array(4096);
  const n = await client.read(head);
  if (n === null) return;
  const key = new TextDecoder().decode(head.subarray(0, n)).match(/Sec-WebSocket-Key: *(\S+)/i)
    ?.[1];
  if (!key) return client.close();
  await client.write(encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${await accept(key)}\r\nSec-WebSocket-Protocol: binary\r\n\r\n`,
  ));
  const target = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
  target.setNoDelay(true);
  // Client to target: one masked frame with a 7-bit length per read, unmasked in place.
  (async () => {
    const buffer = new Uint8Array(65536);
    while (true) {
      const read = await client.read(buffer);
      if (read === null) break;
      const length = buffer[1] & 0x7f;
      const payload = buffer.subarray(6, 6 + length);
      for (let i = 0; i < length; i++) payload[i] ^= buffer[2 + (i & 3)];
      await target.write(payload);
    }
    target.close();
  })();
  // Target to client: each read framed behind a 2-byte header (reads of at most 125 bytes).
  const buffer = new Uint8Array(2 + 125);
  while (true) {
    const read = await target.read(buffer.subarray(2));
    if (read === null) break;
    buffer[0] = 0x82;
    buffer[1] = read;
    await client.write(buffer.subarray(0, 2 + read));
  }
  client.close();
}

for await (const client of listener) relay(client).catch(() => {});
