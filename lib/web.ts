/**
 * Static files for `--web DIR` on the proxy's own port (noVNC's pages, typically), with the semantics of Python's
 * SimpleHTTPRequestHandler plus byte ranges: index.html/index.htm, an HTML directory listing (404 with
 * `--file-only`), a 301 that adds a directory's trailing slash, Last-Modified / If-Modified-Since -> 304,
 * `Range: bytes=` -> 206 / 416, keep-alive. Nothing outside DIR is ever served: `..`, encoded `..`, NUL bytes
 * and symlinks that leave the root all give 404.
 *
 * @module
 */

import mime from "mime";
import { errorResponse, formatResponse, type HttpRequest } from "./http.ts";
import { type ByteStream, writeAll } from "./io.ts";

export interface WebOptions {
  /** The web root, absolute and real (symlinks resolved). */
  root: string;
  /** No directory listings. */
  fileOnly: boolean;
}

/** What the caller should do with the connection after the response. */
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

/**
 * The URL path as segments inside the root, or undefined when it cannot name a file there (bad escapes, NUL).
 * `..` removes the previous segment but never climbs above the root; `.` and empty segments vanish.
 */
export function urlPathSegments(target: string): string[] | undefined {
  let path = target.split(/[?#]/, 1)[0];
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    path = path.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, "");
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0")) return undefined;
  const segments: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      segments.pop();
      continue;
    }
    if (segment.includes("\\")) return undefined;
    segments.push(segment);
  }
  return segments;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
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
 * Serves one GET or HEAD request from the web root. Writes the whole response; tells whether the connection may
 * carry another request.
 */
export async function serveStatic(
  stream: ByteStream,
  request: HttpRequest,
  options: WebOptions,
): Promise<WebOutcome> {
  const withBody = request.method !== "HEAD";
  const keepAlive = wantsKeepAlive(request);
  const connection: [string, string] = ["Connection", keepAlive ? "keep-alive" : "close"];
  const after: AfterResponse = keepAlive ? "keep-alive" : "close";
  const notFound = async (): Promise<WebOutcome> => {
    await writeAll(stream, errorResponse(404, "File not found", [], withBody));
    return { status: 404, after: "close" };
  };

  const segments = urlPathSegments(request.target);
  if (!segments) return await notFound();
  let path = [options.root, ...segments].join("/");
  let info: Deno.FileInfo;
  try {
    // Confinement: the real path (symlinks resolved) must stay inside the real root.
    path = await Deno.realPath(path);
    if (path !== options.root && !path.startsWith(options.root + "/")) return await notFound();
    info = await Deno.stat(path);
  } catch {
    return await notFound();
  }

  if (info.isDirectory) {
    const [pathPart, query] = splitQuery(request.target);
    if (!pathPart.endsWith("/")) {
      const location = pathPart + "/" + (query ? `?${query}` : "");
      await writeAll(
        stream,
        formatResponse(301, "Moved Permanently", [
          ["Location", location],
          ["Content-Length", "0"],
          connection,
        ]),
      );
      return { status: 301, after };
    }
    for (const index of ["index.html", "index.htm"]) {
      try {
        const indexInfo = await Deno.stat(`${path}/${index}`);
        if (indexInfo.isFile) {
          return await sendFile(stream, request, `${path}/${index}`, indexInfo, connection, after);
        }
      } catch { /* try the next */ }
    }
    if (options.fileOnly) return await notFound();
    const body = await directoryListing(path, decodeURIComponent(pathPart));
    await writeAll(
      stream,
      formatResponse(200, "OK", [
        ["Content-Type", "text/html; charset=utf-8"],
        ["Content-Length", String(body.length)],
        connection,
      ], withBody ? body : undefined),
    );
    return { status: 200, after };
  }
  if (!info.isFile) return await notFound();
  return await sendFile(stream, request, path, info, connection, after);
}

function splitQuery(target: string): [string, string] {
  const at = target.indexOf("?");
  return at < 0
    ? [target.split("#")[0], ""]
    : [target.slice(0, at), target.slice(at + 1).split("#")[0]];
}

async function sendFile(
  stream: ByteStream,
  request: HttpRequest,
  path: string,
  info: Deno.FileInfo,
  connection: [string, string],
  after: AfterResponse,
): Promise<WebOutcome> {
  const withBody = request.method !== "HEAD";
  const size = info.size;
  const modified = info.mtime ?? new Date(0);
  const headers: [string, string][] = [
    ["Content-Type", mime.getType(path) ?? "application/octet-stream"],
    ["Last-Modified", modified.toUTCString()],
    ["Accept-Ranges", "bytes"],
  ];
  const since = request.headers.get("if-modified-since");
  if (since && !request.headers.has("if-none-match")) {
    const sinceTime = Date.parse(since);
    if (!Number.isNaN(sinceTime) && Math.floor(modified.getTime() / 1000) * 1000 <= sinceTime) {
      await writeAll(
        stream,
        formatResponse(304, "Not Modified", [...headers.slice(1), connection]),
      );
      return { status: 304, after };
    }
  }
  const range = parseRange(request.headers.get("range"), size);
  if (range === "unsatisfiable") {
    await writeAll(
      stream,
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
  await writeAll(stream, formatResponse(status, range ? "Partial Content" : "OK", headers));
  if (withBody && length > 0) {
    using file = await Deno.open(path, { read: true });
    await file.seek(start, Deno.SeekMode.Start);
    const buffer = new Uint8Array(Math.min(64 * 1024, length));
    let remaining = length;
    while (remaining > 0) {
      const n = await file.read(buffer.subarray(0, Math.min(buffer.length, remaining)));
      if (n === null) throw new Error(`${path} shrank while being sent`);
      await writeAll(stream, buffer.subarray(0, n));
      remaining -= n;
    }
  }
  return { status, after };
}
