/**
 * The proxy's own pages and browser modules, served under the reserved prefix `/websockify/` without `--web`:
 * the `Websock` module (`websock.js` and its types), the telnet client (`wstelnet.html`, `telnet.js`, and
 * xterm.js from npm `@xterm/xterm` and `@xterm/addon-fit`), the echo page (`wsecho.html`), the integrity test
 * page (`wstest.html` with `wstest_records.js`) and an index.
 *
 * Every file is a text import with a literal specifier, so it is part of the module graph: `deno run` fetches
 * the npm files like any dependency (only when first asked for), and `deno compile` embeds them in the single
 * executable with no `--include`. Files are loaded on first request and kept.
 *
 * Under the prefix these files win over `--web`: the modules must match the proxy that serves them. A path under
 * the prefix that names none of them is 404. Responses carry an ETag (a hash of the content) and
 * `Cache-Control: no-cache`, so browsers revalidate and get 304 until the proxy is upgraded.
 *
 * @module
 */

import { errorResponse, formatResponse, type HttpRequest } from "./http.ts";
import type { ByteStream } from "./io.ts";
import {
  parseWebTarget,
  wantsKeepAlive,
  WEB_WRITE_TIMEOUT,
  type WebOutcome,
  WriteStalledError,
  writeWithin,
} from "./web.ts";

/** The reserved path prefix of the built-in files. */
export const BUILTIN_PREFIX = "/websockify/";

const HTML = "text/html; charset=utf-8";
const JS = "text/javascript; charset=utf-8";
const TS = "application/typescript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

type Load = () => Promise<{ default: string }>;

/**
 * Each built-in file by its name under the prefix: content type and loader. The specifiers must stay literal
 * (that is what puts them in the module graph, hence in the executable).
 */
export const BUILTIN_FILES: ReadonlyMap<string, { type: string; load: Load }> = new Map([
  ["", { type: HTML, load: () => import("../web/index.html", { with: { type: "text" } }) }],
  ["wstelnet.html", {
    type: HTML,
    load: () => import("../web/wstelnet.html", { with: { type: "text" } }),
  }],
  ["wsecho.html", {
    type: HTML,
    load: () => import("../web/wsecho.html", { with: { type: "text" } }),
  }],
  ["wstest.html", {
    type: HTML,
    load: () => import("../web/wstest.html", { with: { type: "text" } }),
  }],
  ["wstest_records.js", {
    type: JS,
    load: () => import("../web/wstest_records.js", { with: { type: "text" } }),
  }],
  ["wstest_records.d.ts", {
    type: TS,
    load: () => import("../web/wstest_records.d.ts", { with: { type: "text" } }),
  }],
  ["websock.js", {
    type: JS,
    load: () => import("../web/websock.js", { with: { type: "text" } }),
  }],
  ["websock.d.ts", {
    type: TS,
    load: () => import("../web/websock.d.ts", { with: { type: "text" } }),
  }],
  ["telnet.js", {
    type: JS,
    load: () => import("../web/telnet.js", { with: { type: "text" } }),
  }],
  ["telnet.d.ts", {
    type: TS,
    load: () => import("../web/telnet.d.ts", { with: { type: "text" } }),
  }],
  ["xterm/xterm.mjs", {
    type: JS,
    load: () => import("@xterm/xterm/lib/xterm.mjs", { with: { type: "text" } }),
  }],
  ["xterm/xterm.css", {
    type: CSS,
    load: () => import("@xterm/xterm/css/xterm.css", { with: { type: "text" } }),
  }],
  ["xterm/addon-fit.mjs", {
    type: JS,
    load: () => import("@xterm/addon-fit/lib/addon-fit.mjs", { with: { type: "text" } }),
  }],
]);

/** A loaded file: its bytes and their ETag. */
interface Loaded {
  body: Uint8Array;
  etag: string;
}

const loaded = new Map<string, Promise<Loaded>>();
const encoder = new TextEncoder();

/** The file's bytes and ETag, loaded once (a failed load is tried again on the next request). */
export function loadBuiltin(name: string): Promise<Loaded> | undefined {
  const file = BUILTIN_FILES.get(name);
  if (!file) return undefined;
  let entry = loaded.get(name);
  if (!entry) {
    entry = (async () => {
      // Source maps point at files not served; the browser would only ask for them and get 404.
      const text = (await file.load()).default.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
      const body = encoder.encode(text);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
      const hex = Array.from(digest.subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join(
        "",
      );
      return { body, etag: `"${hex}"` };
    })();
    entry.catch(() => loaded.delete(name));
    loaded.set(name, entry);
  }
  return entry;
}

/**
 * The name under the prefix that a request target asks for (`""` for the prefix itself), or undefined when the
 * target is not under the prefix (then the request goes where it went before: `--web`, or an HTTP error). `..`
 * is resolved first, so `/websockify/../x` is not under it.
 */
export function builtinName(target: string): string | undefined {
  const parsed = parseWebTarget(target);
  if (parsed.kind !== "path" || !parsed.segments) return undefined;
  const [first, ...rest] = parsed.segments;
  if (first !== BUILTIN_PREFIX.slice(1, -1)) return undefined;
  if (rest.length === 0 && !parsed.trailingSlash) return undefined; // `/websockify` itself: not the prefix
  return rest.join("/");
}

/**
 * Answers a GET or HEAD for a built-in file (`name` from builtinName): 200 with the file, 304 when the client's
 * `If-None-Match` has its ETag, 404 for a name that is no built-in file, 500 when the file cannot be loaded (an
 * npm file under `deno run` without network, say). Writes must make progress within `writeTimeout` ms.
 */
export async function serveBuiltin(
  stream: ByteStream,
  request: HttpRequest,
  name: string,
  writeTimeout = WEB_WRITE_TIMEOUT,
): Promise<WebOutcome & { error?: unknown }> {
  const write = (data: Uint8Array) => writeWithin(stream, data, writeTimeout);
  const withBody = request.method !== "HEAD";
  const keepAlive = wantsKeepAlive(request);
  const after = keepAlive ? "keep-alive" : "close";
  const connection: [string, string] = ["Connection", keepAlive ? "keep-alive" : "close"];
  const type = BUILTIN_FILES.get(name)?.type;
  let status = 0;
  try {
    if (type === undefined) {
      status = 404;
      await write(errorResponse(404, "File not found", [], withBody));
      return { status, after: "close" };
    }
    let file: Loaded;
    try {
      file = await loadBuiltin(name)!;
    } catch (error) {
      status = 500;
      await write(errorResponse(500, "Built-in file not available", [], withBody));
      return { status, after: "close", error };
    }
    const headers: [string, string][] = [
      ["ETag", file.etag],
      ["Cache-Control", "no-cache"],
      ["X-Content-Type-Options", "nosniff"],
    ];
    if (etagMatches(request.headers.get("if-none-match"), file.etag)) {
      status = 304;
      await write(formatResponse(304, "Not Modified", [...headers, connection]));
      return { status, after };
    }
    status = 200;
    await write(
      formatResponse(200, "OK", [
        ["Content-Type", type],
        ["Content-Length", String(file.body.length)],
        ...headers,
        connection,
      ], withBody ? file.body : undefined),
    );
    return { status, after };
  } catch (error) {
    if (!(error instanceof WriteStalledError)) throw error;
    return { status, after: "close" };
  }
}

/** Whether an `If-None-Match` value lists `etag` (weak comparison, RFC 9110 13.1.2), or is `*`. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag);
}
