/**
 * websockify for Deno: a WebSocket-to-TCP proxy, drop-in for Python websockify's command line.
 *
 *     deno run -A main.ts [options] [source_addr:]source_port target_addr:target_port
 *
 * This file only wires: command line -> server -> signals -> exit code.
 *
 * @module
 */

import { helpText, parseCommandLine, USAGE, UsageError } from "./lib/cli.ts";
import { Logger } from "./lib/log.ts";
import { openListener, ProxyServer } from "./lib/server.ts";
import { describeError } from "./lib/targets.ts";

const PROGRAM = "websockify";

async function main(argv: string[]): Promise<number> {
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${USAGE}\n\n${PROGRAM}: error: ${error.message}`);
    return 2;
  }
  if (command.kind === "help") {
    console.log(helpText());
    return 0;
  }
  const { settings } = command;
  const log = new Logger();
  log.verbose = settings.verbose;

  // Last line of defence: one connection's bug must never take the others down.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error(`internal error (unhandled rejection): ${describeError(event.reason)}`);
  });

  let listener: Deno.Listener;
  try {
    listener = await openListener(settings.listen);
  } catch (error) {
    log.error(`Opening socket failed: ${describeError(error)}`);
    return 1;
  }
  const server = new ProxyServer(settings, listener, log);
  server.logBanner();

  const stop = (signal: string) => {
    log.info(`${signal} received, shutting down`);
    server.shutdown();
  };
  const onInt = () => stop("SIGINT");
  const onTerm = () => stop("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  await server.serve();
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGTERM", onTerm);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
