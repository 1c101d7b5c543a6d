/**
 * The server side of the RFC 6455 opening handshake: deciding whether a request is an upgrade, validating it,
 * choosing the subprotocol, and writing the 101 response. Pure code.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { formatResponse, type HttpRequest } from "../http.ts";
import { type DeflateAgreement, negotiateDeflate, parseExtensions } from "./deflate.ts";

/** How payload travels: raw binary frames, or base64 text in both directions (old websockify clients). */
export type Framing = "binary" | "base64";

/** A valid upgrade: what to answer and how to frame data. */
export interface Accepted {
  accept: string;
  /** The subprotocol to announce, if any. */
  protocol: string | undefined;
  framing: Framing;
  /** permessage-deflate, when the client offered it and --compress is on. */
  deflate?: DeflateAgreement;
}

/** An upgrade refused with an HTTP status. `message` is the reason phrase. */
export interface Rejected {
  status: number;
  message: string;
  headers: [string, string][];
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** A base64 encoding of exactly 16 bytes. */
const KEY_PATTERN = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** A request asks for a WebSocket when it is a GET whose `Upgrade` header names `websocket`. Any path. */
export function isUpgradeRequest(request: HttpRequest): boolean {
  if (request.method !== "GET") return false;
  const upgrade = request.headers.get("upgrade");
  return upgrade !== undefined && headerTokens(upgrade).includes("websocket");
}

/** Splits a comma-separated header value into trimmed, lower-cased tokens. */
function headerTokens(value: string): string[] {
  return value.split(",").map((token) => token.trim().toLowerCase()).filter((t) => t !== "");
}

/**
 * Chooses the subprotocol: `binary` whenever offered (any order, any spacing); else `base64` selects the base64
 * framing; else the first offered name that is in `accepted` (`--subprotocol`, names compared exactly), relayed
 * as binary; nothing offered means raw binary and no header; only unknown protocols is a refusal.
 */
export function chooseSubprotocol(
  offered: string | undefined,
  accepted: readonly string[] = [],
): { protocol: string | undefined; framing: Framing } | undefined {
  if (offered === undefined || offered.trim() === "") {
    return { protocol: undefined, framing: "binary" };
  }
  const protocols = offered.split(",").map((p) => p.trim());
  if (protocols.includes("binary")) return { protocol: "binary", framing: "binary" };
  if (protocols.includes("base64")) return { protocol: "base64", framing: "base64" };
  const extra = protocols.find((protocol) => protocol !== "" && accepted.includes(protocol));
  if (extra !== undefined) return { protocol: extra, framing: "binary" };
  return undefined;
}

/**
 * Validates an upgrade request (after `isUpgradeRequest`). Checks run in websockify's order, after one Python
 * skips: RFC 6455 §4.2.1 wants `Connection` to list `Upgrade`, and a request that asks for a WebSocket without it
 * is refused with 400 (never served as a plain request). `subprotocols`: more names accepted (`--subprotocol`).
 */
export function negotiate(
  request: HttpRequest,
  subprotocols: readonly string[] = [],
  compress = false,
): Accepted | Rejected {
  const connection = request.headers.get("connection");
  if (connection === undefined || !headerTokens(connection).includes("upgrade")) {
    return reject(400, "Missing Connection: Upgrade header");
  }
  const version = request.headers.get("sec-websocket-version");
  if (version === undefined) return reject(400, "Missing Sec-WebSocket-Version header");
  if (version.trim() !== "13") {
    return reject(426, `Unsupported protocol version ${version.slice(0, 20)}`, [
      ["Sec-WebSocket-Version", "13"],
    ]);
  }
  const key = request.headers.get("sec-websocket-key");
  if (key === undefined) return reject(400, "Missing Sec-WebSocket-Key header");
  if (!KEY_PATTERN.test(key)) return reject(400, "Invalid Sec-WebSocket-Key header");
  const choice = chooseSubprotocol(request.headers.get("sec-websocket-protocol"), subprotocols);
  if (!choice) return reject(400, "Invalid protocol selected");
  // An offer we cannot read or honour is declined (the session runs uncompressed), never an error.
  const extensions = compress ? request.headers.get("sec-websocket-extensions") : undefined;
  const offers = extensions === undefined ? undefined : parseExtensions(extensions);
  const deflate = offers ? negotiateDeflate(offers) : undefined;
  return { accept: acceptKey(key), ...choice, ...(deflate ? { deflate } : {}) };
}

function reject(status: number, message: string, headers: [string, string][] = []): Rejected {
  return { status, message, headers };
}

/** The `101 Switching Protocols` response head. */
export function switchingProtocols(accepted: Accepted): Uint8Array {
  const headers: [string, string][] = [
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Accept", accepted.accept],
  ];
  if (accepted.protocol) headers.push(["Sec-WebSocket-Protocol", accepted.protocol]);
  if (accepted.deflate) headers.push(["Sec-WebSocket-Extensions", accepted.deflate.response]);
  return formatResponse(101, "Switching Protocols", headers);
}
