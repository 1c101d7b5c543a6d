/**
 * wstest: websockify's integrity test, built only on the websockify library (mod.ts). Numbered, checksummed
 * records (`^seq:length:checksum:digits$`) go one way and are checked on the other: a lost, repeated, reordered,
 * cut or altered byte shows as an error.
 *
 *     deno task wstest [options] ws://host:port/path   client: sends records, checks what comes back
 *     deno task wstest --serve [options] [host:]port    server: sends records, checks what the client sends
 *
 * The client against an echo (wsecho, or the proxy in front of any echo service) checks its own records coming
 * back; against `wstest --serve` it checks the server's records while the server checks its records. It ends
 * when `--count` good records have come back (or at `--timeout`), prints counts, rates and errors, and exits 0
 * only when there was no error and every record it waited for arrived.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type ByteStream,
  makeRecord,
  RecordChecker,
  type StreamSession,
  UsageError,
  websockify,
  writeAll,
} from "../mod.ts";

const USAGE = `usage: wstest [--count N] [--delay MS] [--size MIN-MAX] [--protocol binary|base64]
              [--timeout S] [--json] URL
       wstest --serve [--delay MS] [--size MIN-MAX] [--cert FILE [--key FILE]] [-v] [host:]port`;

/** What a client run found. */
export interface ClientReport {
  sent: number;
  bytesSent: number;
  good: number;
  errors: number;
  errorSamples: string[];
  seconds: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
  /** Why it stopped: all records back, the timeout, or the connection's end. */
  ended: "done" | "timeout" | "closed";
}

/** Record sizes: digits per record, drawn evenly from [min, max]. */
interface SizeRange {
  min: number;
  max: number;
}

function parseSize(text: string): SizeRange {
  const match = text.match(/^(\d+)(?:-(\d+))?$/);
  const min = match ? Number(match[1]) : NaN;
  const max = match?.[2] !== undefined ? Number(match[2]) : min;
  if (!match || min < 1 || max < min || max > 1_000_000) {
    throw new UsageError(`--size ${text}: expected MIN-MAX digits, 1 to 1000000`);
  }
  return { min, max };
}

function drawLength(size: SizeRange): number {
  return size.min + Math.floor(Math.random() * (size.max - size.min + 1));
}

/** Runs the client: sends `count` records to `url` and checks what comes back. */
export async function runClient(options: {
  url: string;
  count: number;
  delayMs: number;
  size: SizeRange;
  protocol: "binary" | "base64";
  timeoutMs: number;
}): Promise<ClientReport> {
  const errorSamples: string[] = [];
  const checker = new RecordChecker((message) => {
    if (errorSamples.length < 20) errorSamples.push(message);
  });
  const ws = new WebSocket(options.url, [options.protocol]);
  ws.binaryType = "arraybuffer";
  let sent = 0;
  let bytesSent = 0;
  const started = performance.now();
  const ended = await new Promise<ClientReport["ended"]>((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), options.timeoutMs);
    const finish = (why: ClientReport["ended"]) => {
      clearTimeout(timer);
      resolve(why);
    };
    ws.onmessage = (event) => {
      const bytes = typeof event.data === "string"
        ? Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0))
        : new Uint8Array(event.data as ArrayBuffer);
      checker.push(bytes);
      if (checker.counts.good + checker.counts.errors >= options.count && sent >= options.count) {
        finish("done");
      }
    };
    ws.onclose = () => finish("closed");
    ws.onerror = (event) => {
      const message = (event as ErrorEvent).message ?? "connection failed";
      errorSamples.push(`WebSocket error: ${message}`);
    };
    ws.onopen = async () => {
      while (sent < options.count && ws.readyState === WebSocket.OPEN) {
        const record = makeRecord(sent, drawLength(options.size), Math.random);
        ws.send(
          // Records are ASCII: as text they are their bytes.
          options.protocol === "base64" ? btoa(new TextDecoder().decode(record)) : record,
        );
        sent++;
        bytesSent += record.length;
        // Backpressure: never more than 1 MiB waiting in the socket.
        while (ws.bufferedAmount > 1024 * 1024 && ws.readyState === WebSocket.OPEN) {
          await new Promise((r) => setTimeout(r, 5));
        }
        if (options.delayMs > 0) await new Promise((r) => setTimeout(r, options.delayMs));
        else if (sent % 100 === 0) await new Promise((r) => setTimeout(r, 0));
      }
    };
  });
  const seconds = (performance.now() - started) / 1000;
  if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
    // A clean close: wait (a little) for the server's close reply.
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close(1000);
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000))]);
  }
  const { good, errors } = checker.counts;
  return {
    sent,
    bytesSent,
    good,
    errors: errors + (checker.partial && ended !== "done" ? 1 : 0),
    errorSamples,
    seconds,
    recordsPerSecond: good / seconds,
    megabytesPerSecond: bytesSent / seconds / 1e6,
    ended,
  };
}

/** The server side of one session: records out every `delayMs`, the client's records checked. */
function serveSession(delayMs: number, size: SizeRange) {
  return async function wstestSession(stream: ByteStream, session: StreamSession): Promise<void> {
    const checker = new RecordChecker((message) => console.error(`${session.client}: ${message}`));
    let open = true;
    let sent = 0;
    const sending = (async () => {
      while (open) {
        try {
          await writeAll(stream, makeRecord(sent, drawLength(size), Math.random));
        } catch {
          return; // the client is gone
        }
        sent++;
        await new Promise((r) => setTimeout(r, delayMs));
      }
    })();
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n = await stream.read(buffer); n !== null; n = await stream.read(buffer)) {
        checker.push(buffer.subarray(0, n));
      }
    } catch {
      // the client dropped
    }
    open = false;
    await sending;
    const { good, errors } = checker.counts;
    console.error(
      `${session.client}: session over: ${sent} records sent, ${good} good records received, ${errors} errors`,
    );
  };
}

async function main(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        serve: { type: "boolean" },
        count: { type: "string", default: "1000" },
        delay: { type: "string" },
        size: { type: "string", default: "10-2000" },
        protocol: { type: "string", default: "binary" },
        timeout: { type: "string", default: "60" },
        json: { type: "boolean" },
        cert: { type: "string" },
        key: { type: "string" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`${USAGE}\nwstest: error: ${(error as Error).message}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    if (positionals.length !== 1) throw new UsageError("one URL (or, with --serve, one address)");
    const size = parseSize(values.size);
    const number = (name: string, text: string | undefined, fallback: number) => {
      const value = text === undefined ? fallback : Number(text);
      if (!Number.isFinite(value) || value < 0) throw new UsageError(`--${name} ${text}: a number`);
      return value;
    };
    if (values.serve) {
      const server = await websockify({
        listen: positionals[0],
        target: serveSession(number("delay", values.delay, 100), size),
        cert: values.cert,
        key: values.key,
        verbose: values.verbose,
      });
      const stop = () => server.shutdown();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      return await server.finished;
    }
    if (values.protocol !== "binary" && values.protocol !== "base64") {
      throw new UsageError(`--protocol ${values.protocol}: binary or base64`);
    }
    const report = await runClient({
      url: positionals[0],
      count: Math.floor(number("count", values.count, 1000)),
      delayMs: number("delay", values.delay, 0),
      size,
      protocol: values.protocol,
      timeoutMs: number("timeout", values.timeout, 60) * 1000,
    });
    if (values.json) {
      console.log(JSON.stringify(report));
    } else {
      console.log(
        `${report.sent} records sent (${report.bytesSent} bytes), ${report.good} good back, ` +
          `${report.errors} errors, ${report.seconds.toFixed(2)} s: ` +
          `${report.recordsPerSecond.toFixed(0)} records/s, ${
            report.megabytesPerSecond.toFixed(2)
          } MB/s sent (${report.ended})`,
      );
      for (const sample of report.errorSamples) console.log(`  error: ${sample}`);
    }
    return report.errors === 0 && report.ended === "done" ? 0 : 1;
  } catch (error) {
    const usage = error instanceof UsageError ? `${USAGE}\n` : "";
    console.error(`${usage}wstest: error: ${(error as Error).message}`);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
