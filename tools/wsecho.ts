/**
 * wsecho: a WebSocket echo server built only on the websockify library (mod.ts). Every byte a client sends
 * comes back to it; with `--web DIR` the same port serves files, with `--cert` it serves wss:// too.
 *
 *     deno task wsecho [-v] [--cert FILE [--key FILE]] [--ssl-only] [--web DIR] [host:]port
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type ByteStream, UsageError, websockify, writeAll } from "../mod.ts";

const USAGE = "usage: wsecho [-v] [--cert FILE [--key FILE]] [--ssl-only] [--web DIR] [host:]port";

/** Echoes a session's bytes as they come, until the client closes. */
export async function echo(stream: ByteStream): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
    await writeAll(stream, buffer.subarray(0, n));
  }
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        verbose: { type: "boolean", short: "v" },
        cert: { type: "string" },
        key: { type: "string" },
        "ssl-only": { type: "boolean" },
        web: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    console.error(`${USAGE}\nwsecho: error: ${(error as Error).message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`${USAGE}\nwsecho: error: one listen address expected`);
    return 2;
  }
  let server;
  try {
    server = await websockify({
      listen: positionals[0],
      target: echo,
      verbose: values.verbose,
      cert: values.cert,
      key: values.key,
      sslOnly: values["ssl-only"],
      web: values.web,
    });
  } catch (error) {
    const usage = error instanceof UsageError ? `${USAGE}\n` : "";
    console.error(`${usage}wsecho: error: ${(error as Error).message}`);
    return 2;
  }
  const stop = () => server.shutdown();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const code = await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
