/**
 * A WebSocket session, from the upgrade request to its summary line, in Python websockify's order:
 *
 *   handshake checks (400/426) -> --allowed-origin (403) -> token picks the target (unknown: closed without an
 *   answer; outside --allowed-targets: 403) -> auth plugin -> 101 -> connect the target (fail: close 1011)
 *   -> --record / --traffic -> Relay until both sides are closed -> summary line
 *
 * @module
 */

import type { Connection } from "./connection.ts";
import { DeadlineExpired } from "./deadline.ts";
import type { HttpRequest } from "./http.ts";
import { type ByteStream, closeQuietly, writeAll } from "./io.ts";
import { targetAllowed } from "./allowed_targets.ts";
import { originAllowed } from "./origins.ts";
import { TokenRefused } from "./plugins.ts";
import { label } from "./metrics.ts";
import { SessionRecorder } from "./record.ts";
import { tokenHash } from "./secrets.ts";
import { Relay, type RelayObserver, type RelayResult } from "./relay.ts";
import type { TargetSpec } from "./settings.ts";
import { connectTarget, describeError, describeTarget } from "./targets.ts";
import { findToken, takesProtocolTokens, withoutTokenProtocols } from "./token_from.ts";
import { CloseCode } from "./websocket/frames.ts";
import { type Accepted, negotiate, switchingProtocols } from "./websocket/handshake.ts";
import { closeFrame } from "./websocket/protocol.ts";

/** websockify's log line before connecting, by target kind. */
const CONNECTING = {
  tcp: "connecting to:",
  unix: "connecting to unix socket:",
  command: "connecting to command:",
  stream: "connecting to:",
  token: "connecting to:",
} as const;

/** " (using SSL)" after a target reached over TLS, as websockify logs it. */
export function usingSsl(target: TargetSpec): string {
  return target.kind === "tcp" && target.tls ? " (using SSL)" : "";
}

/** Handles an upgrade request on `cx` until the session is over (or refused). */
export async function openSession(
  cx: Connection,
  request: HttpRequest,
  rest: Uint8Array,
): Promise<void> {
  // A token offered as a subprotocol (--token-from protocol) is never the one selected.
  const target = cx.server.settings.target;
  const verdict = negotiate(
    takesProtocolTokens(target) ? withoutTokenProtocols(request) : request,
    cx.server.settings.subprotocols,
    cx.server.settings.compress,
  );
  if ("status" in verdict) {
    await cx.sendError(verdict.status, verdict.message, true, verdict.headers);
    return;
  }
  if (!(await checkOrigin(cx, request))) return;
  if (!(await admitSession(cx))) return;
  // From here the connection counts as a session (--max-sessions, --max-sessions-per-ip) until it ends.
  cx.leaveHandshake();
  return continueSession(cx, request, verdict, rest).finally(() =>
    cx.server.sessions.leave(cx.client)
  );
}

/** --allowed-origin: another Origin is refused with 403 (one log line naming it); no Origin passes. */
async function checkOrigin(cx: Connection, request: HttpRequest): Promise<boolean> {
  const allowed = cx.server.settings.allowedOrigins;
  const origin = request.headers.get("origin");
  if (originAllowed(allowed, origin)) return true;
  await cx.sendError(403, "Origin not allowed", true, [], "origin", {
    log: `${cx.client}: Origin ${JSON.stringify(origin)} not allowed (--allowed-origin)`,
  });
  return false;
}

/**
 * --max-sessions and --max-sessions-per-ip: a session over either limit is refused with 503 (cheap: before the
 * token lookup, the auth plugin and the target); true when admitted (and counted).
 */
async function admitSession(cx: Connection): Promise<boolean> {
  const { settings, sessions } = cx.server;
  if (settings.maxSessions > 0 && sessions.total >= settings.maxSessions) {
    await cx.sendError(
      503,
      `Session limit reached (--max-sessions ${settings.maxSessions})`,
      true,
      [["Retry-After", "5"]],
      "max_sessions",
    );
    return false;
  }
  if (!sessions.tryEnter(cx.client)) {
    await cx.sendError(
      503,
      `Too many sessions from ${cx.client} (--max-sessions-per-ip ${settings.maxSessionsPerIp})`,
      true,
      [["Retry-After", "5"]],
      "max_sessions_per_ip",
    );
    return false;
  }
  return true;
}

/** An admitted upgrade: token, auth, then the session. */
async function continueSession(
  cx: Connection,
  request: HttpRequest,
  verdict: Accepted,
  rest: Uint8Array,
): Promise<void> {
  const { log, settings } = cx.server;
  // As in Python: the token picks the target (an unknown one closes the connection without an answer), then
  // the auth plugin decides, and only then comes the 101.
  const target = await resolveTarget(cx, request);
  if (!target) return;
  if (!(await cx.authorize(request, target))) return;
  const { client } = cx;
  cx.note({ target: describeTarget(target) });
  log.request(
    client,
    `"${request.method} ${cx.shownTarget} ${request.version}" 101 -`,
    "debug",
    cx.fields({ status: 101 }),
  );
  log.request(
    client,
    cx.peer.secure
      ? `${client}: SSL/TLS (wss://) WebSocket connection`
      : `${client}: Plain non-SSL (ws://) WebSocket connection`,
    "info",
    cx.fields(),
  );
  if (request.target !== "/") {
    log.request(
      client,
      `${client}: Path: '${cx.shownTarget}'`,
      "info",
      cx.fields(),
    );
  }

  // Returned, not awaited, so this frame is not kept for as long as the session lasts (idle sessions are
  // counted in thousands).
  if (!settings.runOnce) return runSession(cx, request, verdict, rest, target);
  // --run-once: this WebSocket session is the one; no other connection is taken meanwhile.
  cx.server.stopAccepting();
  try {
    await runSession(cx, request, verdict, rest, target);
  } finally {
    log.info(`${client}: exiting due to --run-once`, cx.fields());
    cx.server.shutdown();
  }
}

/** A token plugin's target for this request; undefined (logged) when there is none. */
async function resolveTarget(
  cx: Connection,
  request: HttpRequest,
): Promise<TargetSpec | undefined> {
  const { settings, plugins, log, timeouts, metrics } = cx.server;
  const target = settings.target;
  if (target.kind !== "token") return target;
  const found = findToken(request, target.tokenFrom, { fromTrustedProxy: cx.fromTrustedProxy });
  if (found.token === undefined) {
    cx.refused("token_missing");
    const ignored = found.ignored.length > 0
      ? ` (${found.ignored.join(", ")} ignored: not from a trusted proxy)`
      : "";
    log.info(`${cx.client}: Token not present${ignored}`, cx.fields());
    return undefined;
  }
  const { token } = found;
  cx.note({ token_hash: tokenHash(token) });
  let chosen: TargetSpec | undefined;
  const plugin = plugins.token!;
  const started = performance.now();
  const lookedUp = (result: string) => {
    metrics.count("websockify_token_lookups_total", label("result", result));
    metrics.observe("websockify_token_lookup_seconds", (performance.now() - started) / 1000);
    if (result !== "found") cx.refused(`token_${result}`);
  };
  try {
    // Bounded: a lookup that never answers refuses the session (the connection is closed without an answer).
    chosen = await cx.deadline.race(plugin.lookup(token, cx.caller(request)), timeouts.plugin);
  } catch (error) {
    if (error instanceof DeadlineExpired) {
      if (error.why === "timeout") {
        lookedUp("error");
        log.error(
          `${cx.client}: token lookup failed: no answer within ${timeouts.plugin / 1000} s`,
          cx.fields(),
        );
      }
      throw error;
    }
    if (error instanceof TokenRefused) {
      lookedUp("refused");
      log.info(`${cx.client}: Token refused: ${error.message}`, cx.fields());
    } else {
      lookedUp("error");
      log.error(`${cx.client}: token lookup failed: ${describeError(error)}`, cx.fields());
    }
    return undefined;
  }
  lookedUp(chosen ? "found" : "unknown");
  if (!chosen) {
    log.info(`${cx.client}: Token ${tokenHash(token)} not found`, cx.fields());
    return undefined;
  }
  if (settings.allowedTargets && !targetAllowed(settings.allowedTargets, chosen)) {
    // The client is not told where the token pointed.
    await cx.sendError(403, "Target not allowed", true, [], "target_not_allowed", {
      log: `${cx.client}: Token ${tokenHash(token)}: target ${
        describeTarget(chosen)
      } not in --allowed-targets; refused`,
    });
    return undefined;
  }
  return chosen;
}

/** 101, the target, the relay, the summary. */
async function runSession(
  cx: Connection,
  request: HttpRequest,
  verdict: Accepted,
  rest: Uint8Array,
  target: TargetSpec,
): Promise<void> {
  const { log, settings, timeouts } = cx.server;
  const { client } = cx;
  const targetText = describeTarget(target);
  try {
    await cx.deadline.race(writeAll(cx.stream, switchingProtocols(verdict)));
  } catch (error) {
    if (error instanceof DeadlineExpired) throw error;
    return;
  }
  log.request(
    client,
    `${CONNECTING[target.kind]} ${targetText}${usingSsl(target)}`,
    "info",
    cx.fields(),
  );
  let targetStream: ByteStream;
  const connecting = connectTarget(target, {
    client,
    path: request.target,
    headers: request.headers,
    secure: cx.peer.secure,
  }, cx.targetProxyHeader());
  try {
    targetStream = await cx.deadline.race(connecting);
  } catch (error) {
    if (error instanceof DeadlineExpired) {
      // Shutdown while connecting: a connection that still succeeds is closed at once.
      connecting.then(closeQuietly, () => {});
      throw error;
    }
    cx.server.metrics.count("websockify_target_connect_failures_total");
    log.request(
      client,
      `Failed to connect to ${targetText}: ${describeError(error)}`,
      "info",
      cx.fields(),
    );
    await refuseSession(cx, CloseCode.InternalError, "Failed to connect to downstream server");
    return;
  }

  const observer: RelayObserver = {};
  let recorder: SessionRecorder | undefined;
  if (settings.record) {
    try {
      recorder = SessionRecorder.open(settings.record, cx.number);
      log.request(client, `opening record file: ${recorder.path}`, "info", cx.fields());
      observer.fromClient = (bytes) => recorder!.fromClient(bytes);
      observer.fromTarget = (bytes) => recorder!.fromTarget(bytes);
    } catch (error) {
      log.request(
        client,
        `cannot open the record file: ${describeError(error)}`,
        "error",
        cx.fields(),
      );
    }
  }
  if (settings.traffic) {
    writeStdout(TRAFFIC_LEGEND);
    observer.traffic = writeStdout;
  }
  const relay = new Relay(cx.stream, targetStream, {
    framing: verdict.framing,
    closeTimeout: timeouts.close,
    stuckTarget: timeouts.stuckTarget,
    heartbeat: settings.heartbeat * 1000,
    maxMessageSize: settings.maxMessageSize,
    deflate: verdict.deflate && { windowBits: verdict.deflate.serverWindowBits },
    observer,
  });
  // From here on, shutdown goes through the relay (close 1001), not by closing the connection outright.
  cx.relay = relay;
  const { metrics } = cx.server;
  metrics.activeSessions++;
  metrics.count("websockify_sessions_total");
  // A continuation, not an await: no frame of this function stays suspended while the session lasts.
  return relay.run(rest).then((result) => {
    recorder?.close();
    metrics.activeSessions--;
    metrics.observe("websockify_session_duration_seconds", result.durationMs / 1000);
    metrics.count("websockify_bytes_total", 'direction="from_client"', result.bytesFromClient);
    metrics.count("websockify_bytes_total", 'direction="to_client"', result.bytesToClient);
    logSessionEnd(cx, targetText, result);
  }, (error) => {
    recorder?.close(); // (the relay never rejects; if it ever did, the record file would still be closed)
    metrics.activeSessions--;
    throw error;
  });
}

/** Closes a WebSocket that never got a target: the close frame, then a bounded wait for the reply. */
async function refuseSession(cx: Connection, code: number, reason: string): Promise<void> {
  try {
    cx.deadline.set(cx.server.timeouts.close);
    await cx.deadline.race(writeAll(cx.stream, closeFrame(code, reason)));
    await cx.drain(true);
  } catch (error) {
    // Client already gone.
    if (error instanceof DeadlineExpired && error.why === "shutdown") throw error;
  }
}

function logSessionEnd(cx: Connection, targetText: string, result: RelayResult): void {
  const { log } = cx.server;
  const { client } = cx;
  if (result.closedBy === "target") {
    log.request(client, `${targetText}: Target closed connection`, "debug", cx.fields());
  } else {
    log.request(client, `${targetText}: Client closed connection`, "debug", cx.fields());
  }
  log.request(client, `${targetText}: Closed target`, "debug", cx.fields());
  log.request(
    client,
    `${targetText}: session ended by ${result.closedBy} (${result.code} ${result.reason}): ` +
      `${result.bytesFromClient} bytes from client, ${result.bytesToClient} bytes to client, ` +
      `${(result.durationMs / 1000).toFixed(2)} s`,
    "info",
    cx.fields({
      bytes_up: result.bytesFromClient,
      bytes_down: result.bytesToClient,
      duration_ms: Math.round(result.durationMs),
      close_code: result.code,
      closed_by: result.closedBy,
    }),
  );
}

/** Printed on stdout at the start of each session with --traffic, as Python does. */
const TRAFFIC_LEGEND = `Traffic Legend:
    } - Client receive
    }. - Client receive partial
    { - Target receive

    > - Target send
    >. - Target send partial
    < - Client send
    <. - Client send partial
`;

const stdoutEncoder = new TextEncoder();

function writeStdout(text: string): void {
  try {
    Deno.stdout.writeSync(stdoutEncoder.encode(text));
  } catch {
    // stdout closed (daemonized): traffic glyphs are best effort.
  }
}
