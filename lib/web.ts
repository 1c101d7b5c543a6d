/**
 * Static files for `--web DIR` on the proxy's own port (noVNC's pages, typically), with the semantics of Python's
 * SimpleHTTPRequestHandler plus byte ranges: index.html/index.htm, an HTML directory listing (404 with
 * `--file-only`), a 301 that adds a directory's trailing slash, Last-Modified / If-Modified-Since -> 304,
 * `Range: bytes=` -> 206 / 416, keep-alive. Nothing outside DIR is ever served: `..`, encoded `..`, NUL bytes
 * and symlinks that leave the root all give 404. A request target that is not a valid origin-form or http(s)
 * absolute-form URL (bad `%` escape, fragment, control or non-ASCII byte, `*`) gets 400. A write to the client
 * that makes no progress for `writeTimeout` ms ends the response and closes the connection.
 *
 * @module
 */

import mime from "mime";
import { errorResponse, formatResponse, type HttpRequest } from "./http.ts";
import { type ByteStream, closeQuietly } from "./io.ts";
import type { WebSettings } from "./settings.ts";
import { escapeHtml } from "./text.ts";

/** A static-file response whose writes make no progress for this long (ms) is abandoned. */
export const WEB_WRITE_TIMEOUT = 30_000;

/** What the caller should do with the connection after the reply. */
export type AfterResponse = "keep-alive" | "close";

/** A response's status and message, for the log line. */
export interface WebOutcome {
  status: number;
  after: AfterResponse;
}

const encoder = new TextEncoder();

/**
 * Whether the connection may carry another request: the client asked for it (HTTP/1.1 default yes, HTTP/1.0
 * default no) and the request had no body (which is never read, so it would be mistaken for the next request).
 */
export function wantsKeepAlive(request: HttpRequest): boolean {
  const length = request.headers.get("content-length");
  if (request.headers.has("transfer-encoding") || (length !== undefined && length.trim() !== "0")) {
    return false;
  }
  const connection = (request.headers.get("connection") ?? "").toLowerCase();
  if (request.version === "HTTP/1.0") return /\bkeep-alive\b/.test(connection);
  return !/\bclose\b/.test(connection);
}

/** A request target, checked and split: the path as segments inside the root, and the raw query. */
export type WebTarget =
  | { kind: "bad"; reason: string }
  | {
    kind: "path";
    /** Undefined when the path cannot name a file in the root (NUL byte, backslash): 404. */
    segments: string[] | undefined;
    /** The path as sent ended with `/` (a directory without it gets the 301). */
    trailingSlash: boolean;
    /** The query as sent, without `?`; undefined when there is none. */
    query: string | undefined;
  };

/**
 * Checks and splits a request target. Origin-form (`/path?query`) and http(s) absolute-form are accepted; the
 * target must be visible ASCII without a fragment (RFC 9112 3.2), its path must start with `/` and its `%`
 * escapes must decode as UTF-8, else it is "bad" (400). `..` removes the previous segment but never climbs above
 * the root; `.` and empty segments vanish.
 */
export function parseWebTarget(target: string): WebTarget {
  if (!/^[\x21-\x7e]+$/.test(target)) return { kind: "bad", reason: "Bad request target" };
  if (target.includes("#")) return { kind: "bad", reason: "Fragment in the request target" };
  let rest = target;
  const absolute = target.match(/^([a-z][a-z0-9+.-]*):\/\/[^/?]*/i);
  if (absolute) {
    if (!/^https?$/i.test(absolute[1])) return { kind: "bad", reason: "Bad request target" };
    rest = target.slice(absolute[0].length);
    if (!rest.startsWith("/")) rest = `/${rest}`;
  } else if (!target.startsWith("/")) {
    return { kind: "bad", reason: "Bad request target" };
  }
  const at = rest.indexOf("?");
  const path = at < 0 ? rest : rest.slice(0, at);
  const query = at < 0 || at === rest.length - 1 ? undefined : rest.slice(at + 1);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return { kind: "bad", reason: "Bad percent-encoding in the request path" };
  }
  const trailingSlash = path.endsWith("/");
  if (decoded.includes("\0")) return { kind: "path", segments: undefined, trailingSlash, query };
  const segments: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      segments.pop();
      continue;
    }
    if (segment.includes("\\")) return { kind: "path", segments: undefined, trailingSlash, query };
    segments.push(segment);
  }
  return { kind: "path", segments, trailingSlash, query };
}

/** The URL path as segments inside the root, or undefined when it cannot name a file there. */
export function urlPathSegments(target: string): string[] | undefined {
  const parsed = parseWebTarget(target);
  return parsed.kind === "path" ? parsed.segments : undefined;
}

/**
 * The `Location` of the 301 that adds a directory's slash: rebuilt from the normalised segments, each
 * percent-encoded, so it is always a single-slash path on this server (never `//host`, never a backslash),
 * followed by the query as sent.
 */
export function directoryLocation(segments: string[], query: string | undefined): string {
  const path = "/" + segments.map((segment) => `${encodeURIComponent(segment)}/`).join("");
  return query === undefined ? path : `${path}?${query}`;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
const MONTH = `(${MONTHS.join("|")})`;
const TIME = "(\\d\\d):(\\d\\d):(\\d\\d)";
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d\\d) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^${LONG_DAY}, (\\d\\d)-${MONTH}-(\\d\\d) ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/**
 * An HTTP-date (RFC 9110 5.6.7: IMF-fixdate, or the obsolete RFC 850 and asctime forms) in ms since the epoch,
 * or undefined when the text is not one (wrong form, impossible day or time). Two-digit years more than 50 years
 * ahead of `now` are taken from the previous century.
 */
export function parseHttpDate(text: string, now = Date.now()): number | undefined {
  let day: string, month: string, year: number, hour: string, minute: string, second: string;
  let match = text.match(IMF_FIXDATE);
  if (match) {
    [, day, month, , hour, minute, second] = match;
    year = Number(match[3]);
  } else if ((match = text.match(RFC850_DATE))) {
    [, day, month, , hour, minute, second] = match;
    const thisYear = new Date(now).getUTCFullYear();
    year = Math.floor(thisYear / 100) * 100 + Number(match[3]);
    if (year > thisYear + 50) year -= 100;
  } else if ((match = text.match(ASCTIME_DATE))) {
    [, month, day, hour, minute, second] = match;
    year = Number(match[6]);
  } else {
    return undefined;
  }
  const monthIndex = MONTHS.indexOf(month);
  const [d, h, m, s] = [Number(day.trim()), Number(hour), Number(minute), Number(second)];
  if (h > 23 || m > 59 || s > 60) return undefined;
  const time = Date.UTC(year, monthIndex, d, h, m, Math.min(s, 59));
  const date = new Date(time);
  if (date.getUTCDate() !== d || date.getUTCMonth() !== monthIndex) return undefined; // e.g. 31 Feb
  return time;
}

/**
 * Whether `If-Modified-Since` allows a 304 for a file modified at `modified`: the value must be a valid
 * HTTP-date, not later than now (RFC 9110 13.1.3 calls that invalid), and not earlier than the modification
 * time (to the second, as Last-Modified has it).
 */
export function notModifiedSince(
  header: string | undefined,
  modified: Date,
  now = Date.now(),
): boolean {
  if (header === undefined) return false;
  const since = parseHttpDate(header.trim(), now);
  if (since === undefined || since > now) return false;
  return Math.floor(modified.getTime() / 1000) * 1000 <= since;
}

/** The client made no progress reading a response for the write timeout. */
export class WriteStalledError extends Error {
  override name = "WriteStalledError";
}

/**
 * Writes every byte of `data`; when one write makes no progress within `ms`, closes the stream and rejects with
 * WriteStalledError at once (the deadline ends the wait itself; the pending write is left to fail on the closed
 * stream).
 */
export async function writeWithin(stream: ByteStream, data: Uint8Array, ms: number): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const pending = stream.write(data.subarray(offset));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        pending.catch(() => {});
        // The verdict first: closing a node:net or node:tls socket fails its pending write at once (write
        // ECANCELED), which would otherwise win the race below.
        reject(new WriteStalledError(`the client read nothing for ${ms} ms`));
        closeQuietly(stream);
      }, ms);
    });
    try {
      offset += await Promise.race([pending, stalled]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Python http.server's listing page, names escaped, sorted case-insensitively, `/` after directories. */
export async function directoryListing(dir: string, urlPath: string): Promise<Uint8Array> {
  const entries: { name: string; display: string; link: string }[] = [];
  for await (const entry of Deno.readDir(dir)) {
    let isDir = entry.isDirectory;
    if (entry.isSymlink) {
      try {
        isDir = (await Deno.stat(`${dir}/${entry.name}`)).isDirectory;
      } catch { /* dangling link */ }
    }
    const suffix = isDir ? "/" : entry.isSymlink ? "@" : "";
    entries.push({
      name: entry.name,
      display: entry.name + suffix,
      link: encodeURIComponent(entry.name) + (isDir ? "/" : ""),
    });
  }
  entries.sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  const title = `Directory listing for ${escapeHtml(urlPath)}`;
  const items = entries.map((e) =>
    `<li><a href="${escapeHtml(e.link)}">${escapeHtml(e.display)}</a></li>`
  );
  return encoder.encode(
    `<!DOCTYPE HTML>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${title}</title>\n` +
      `</head>\n<body>\n<h1>${title}</h1>\n<hr>\n<ul>\n${items.join("\n")}${
        items.length ? "\n" : ""
      }` +
      `</ul>\n<hr>\n</body>\n</html>\n`,
  );
}

/** A single `bytes=` range of a file of `size` bytes: [start, end] inclusive; "unsatisfiable"; or undefined. */
export function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const match = header.match(/^bytes=(\d*)-(\d*)$/);
  if (!match || (match[1] === "" && match[2] === "")) return undefined; // several ranges or garbage: whole file
  let start: number;
  let end: number;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (end < start && match[2] !== "") return undefined;
  }
  if (start >= size) return "unsatisfiable";
  return [start, end];
}

/**
 * `path` with its symlinks resolved, if that stays inside `root` (itself a real path); undefined when it leaves
 * the root or does not exist. Every file served goes through this.
 */
async function confined(root: string, path: string): Promise<string | undefined> {
  try {
    const real = await Deno.realPath(path);
    return real === root || real.startsWith(root + "/") ? real : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Serves one GET or HEAD request from the web root (`web.root` must be real, symlinks resolved, as
 * resolveSettings gives it: confinement compares paths). Writes the whole response; tells whether the connection
 * may carry another request. Every write must make progress within `writeTimeout` ms: a client that stops reading
 * has its connection closed (and the file too), and the outcome says "close".
 */
export async function serveStatic(
  stream: ByteStream,
  request: HttpRequest,
  web: WebSettings,
  writeTimeout = WEB_WRITE_TIMEOUT,
): Promise<WebOutcome> {
  const reply: Reply = {
    stream,
    request,
    write: (data) => writeWithin(stream, data, writeTimeout),
    status: 0,
  };
  try {
    return await respond(reply, web);
  } catch (error) {
    if (!(error instanceof WriteStalledError)) throw error;
    return { status: reply.status, after: "close" };
  }
}

/** One response under way: `status` is the one being sent. */
interface Reply {
  stream: ByteStream;
  request: HttpRequest;
  write(data: Uint8Array): Promise<void>;
  status: number;
}

async function respond(reply: Reply, web: WebSettings): Promise<WebOutcome> {
  const { request } = reply;
  const withBody = request.method !== "HEAD";
  const keepAlive = wantsKeepAlive(request);
  const connection: [string, string] = ["Connection", keepAlive ? "keep-alive" : "close"];
  const after: AfterResponse = keepAlive ? "keep-alive" : "close";
  const fail = async (status: number, message: string): Promise<WebOutcome> => {
    reply.status = status;
    await reply.write(errorResponse(status, message, [], withBody));
    return { status, after: "close" };
  };

  const target = parseWebTarget(request.target);
  if (target.kind === "bad") return await fail(400, target.reason);
  const { segments, trailingSlash, query } = target;
  if (!segments) return await fail(404, "File not found");
  const path = await confined(web.root, [web.root, ...segments].join("/"));
  if (!path) return await fail(404, "File not found");
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info) return await fail(404, "File not found");

  if (info.isDirectory) {
    if (!trailingSlash) {
      reply.status = 301;
      await reply.write(
        formatResponse(301, "Moved Permanently", [
          ["Location", directoryLocation(segments, query)],
          ["Content-Length", "0"],
          connection,
        ]),
      );
      return { status: 301, after };
    }
    for (const index of ["index.html", "index.htm"]) {
      // An index file is a path like any other: a symlink out of the root is not followed.
      const indexPath = await confined(web.root, `${path}/${index}`);
      if (!indexPath) continue;
      const indexInfo = await Deno.stat(indexPath).catch(() => undefined);
      if (indexInfo?.isFile) return await sendFile(reply, indexPath, indexInfo, connection, after);
    }
    if (web.fileOnly) return await fail(404, "File not found");
    const body = await directoryListing(path, `/${segments.map((name) => `${name}/`).join("")}`);
    reply.status = 200;
    await reply.write(
      formatResponse(200, "OK", [
        ["Content-Type", "text/html; charset=utf-8"],
        ["Content-Length", String(body.length)],
        connection,
      ], withBody ? body : undefined),
    );
    return { status: 200, after };
  }
  if (!info.isFile) return await fail(404, "File not found");
  return await sendFile(reply, path, info, connection, after);
}

async function sendFile(
  reply: Reply,
  path: string,
  info: Deno.FileInfo,
  connection: [string, string],
  after: AfterResponse,
): Promise<WebOutcome> {
  const { request } = reply;
  const withBody = request.method !== "HEAD";
  const size = info.size;
  const modified = info.mtime ?? new Date(0);
  const headers: [string, string][] = [
    ["Content-Type", mime.getType(path) ?? "application/octet-stream"],
    ["Last-Modified", modified.toUTCString()],
    ["Accept-Ranges", "bytes"],
  ];
  if (
    !request.headers.has("if-none-match") &&
    notModifiedSince(request.headers.get("if-modified-since"), modified)
  ) {
    reply.status = 304;
    await reply.write(formatResponse(304, "Not Modified", [...headers.slice(1), connection]));
    return { status: 304, after };
  }
  const range = parseRange(request.headers.get("range"), size);
  if (range === "unsatisfiable") {
    reply.status = 416;
    await reply.write(
      errorResponse(
        416,
        "Requested Range Not Satisfiable",
        [["Content-Range", `bytes */${size}`]],
        withBody,
      ),
    );
    return { status: 416, after: "close" };
  }
  const [start, end] = range ?? [0, size - 1];
  const length = size === 0 ? 0 : end - start + 1;
  const status = range ? 206 : 200;
  headers.push(["Content-Length", String(length)], connection);
  if (range) headers.push(["Content-Range", `bytes ${start}-${end}/${size}`]);
  reply.status = status;
  await reply.write(formatResponse(status, range ? "Partial Content" : "OK", headers));
  if (withBody && length > 0) {
    // Closed on every way out, a stalled client's included.
    using file = await Deno.open(path, { read: true });
    await file.seek(start, Deno.SeekMode.Start);
    const buffer = new Uint8Array(Math.min(64 * 1024, length));
    let remaining = length;
    while (remaining > 0) {
      const n = await file.read(buffer.subarray(0, Math.min(buffer.length, remaining)));
      if (n === null) throw new Error(`${path} shrank while being sent`);
      await reply.write(buffer.subarray(0, n));
      remaining -= n;
    }
  }
  return { status, after };
}
