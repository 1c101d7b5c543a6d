/**
 * Where a session's token travels (`--token-from`), and reading it from a request. Pure code.
 *
 *     const sources = parseTokenFrom("cookie:vnc_token,path,query");
 *     findToken(request, sources, { fromTrustedProxy: false });  // { token: "desk-42", source: {kind: "path"} }
 *
 * - `query`: the first non-blank `token=` of the query, as Python's `parse_qs` reads it.
 * - `host`: the Host header without its port (what `--host-token` does).
 * - `path`: the last segment of a path of two segments or more (`/websockify/TOKEN`), percent-decoded;
 *   `/websockify` alone carries no token, so the usual endpoint is never taken for one.
 * - `cookie:NAME`: the first cookie NAME in the Cookie header, its double quotes dropped, percent-decoded where
 *   that is valid (what JavaScript's `encodeURIComponent` writes).
 * - `header:NAME`: that header's value, honoured only on a connection from a trusted proxy (`--trusted-proxy`):
 *   from anyone else it is ignored, since a client may send any header.
 * - `protocol`: an offered subprotocol `token.VALUE` (VALUE as offered). It is never selected: the handshake is
 *   negotiated as if it had not been offered (see `withoutTokenProtocols`).
 *
 * A source that has nothing (or only a blank value) passes to the next one.
 *
 * @module
 */

import type { HttpRequest } from "./http.ts";
import type { TargetSpec, TokenSource } from "./settings.ts";

/** What `--token-from` defaults to: `?token=`, as in Python. */
export const DEFAULT_TOKEN_FROM: readonly TokenSource[] = [{ kind: "query" }];

/** The prefix of a subprotocol that carries a token (`token.VALUE`). */
export const TOKEN_PROTOCOL_PREFIX = "token.";

/** An HTTP token (RFC 9110 §5.6.2): what header and cookie names are made of. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses `--token-from`: comma-separated sources. Throws an Error saying what is wrong. */
export function parseTokenFrom(text: string): TokenSource[] {
  const sources: TokenSource[] = [];
  for (const entry of text.split(",").map((part) => part.trim())) {
    if (entry === "") continue;
    const colon = entry.indexOf(":");
    const kind = colon < 0 ? entry : entry.slice(0, colon);
    const name = colon < 0 ? undefined : entry.slice(colon + 1);
    let source: TokenSource;
    if (kind === "query" || kind === "host" || kind === "path" || kind === "protocol") {
      if (name !== undefined) throw new Error(`'${entry}': ${kind} takes no name`);
      source = { kind };
    } else if (kind === "cookie" || kind === "header") {
      if (!name || !HTTP_TOKEN.test(name)) {
        throw new Error(
          `'${entry}': ${kind}:NAME needs a ${kind} name (letters, digits, -, _ ...)`,
        );
      }
      source = { kind, name: kind === "header" ? name.toLowerCase() : name };
    } else {
      throw new Error(
        `'${entry}': not a token source (query, host, path, cookie:NAME, header:NAME, protocol)`,
      );
    }
    const written = formatTokenSource(source);
    if (sources.some((known) => formatTokenSource(known) === written)) {
      throw new Error(`'${entry}' is listed twice`);
    }
    sources.push(source);
  }
  if (sources.length === 0) throw new Error("no token source given");
  return sources;
}

/** A source as `--token-from` writes it. */
export function formatTokenSource(source: TokenSource): string {
  return "name" in source ? `${source.kind}:${source.name}` : source.kind;
}

/** Whether tokens travel in paths with this target (`--token-from path`): log lines then hide the path's. */
export function hidesPathTokens(target: TargetSpec): boolean {
  return target.kind === "token" && target.tokenFrom.some((source) => source.kind === "path");
}

/** Whether tokens travel as subprotocols with this target (`--token-from protocol`). */
export function takesProtocolTokens(target: TargetSpec): boolean {
  return target.kind === "token" && target.tokenFrom.some((source) => source.kind === "protocol");
}

/** What the request's connection tells about it. */
export interface TokenContext {
  /** The connection comes from a trusted proxy (`--trusted-proxy`): `header:` sources are honoured. */
  readonly fromTrustedProxy: boolean;
}

/** The token and where it was found; or none, with the `header:` sources present but ignored (untrusted peer). */
export type FoundToken =
  | { readonly token: string; readonly source: TokenSource }
  | { readonly token: undefined; readonly ignored: readonly string[] };

/** The request's token: the first source (in order) that has one. */
export function findToken(
  request: HttpRequest,
  sources: readonly TokenSource[],
  context: TokenContext,
): FoundToken {
  const ignored: string[] = [];
  for (const source of sources) {
    let token: string | undefined;
    switch (source.kind) {
      case "query":
        token = queryToken(request.target);
        break;
      case "host":
        token = hostToken(request.headers.get("host"));
        break;
      case "path":
        token = pathToken(request.target);
        break;
      case "cookie":
        token = cookieToken(request.headers.get("cookie"), source.name);
        break;
      case "header": {
        const value = request.headers.get(source.name)?.trim();
        if (value && !context.fromTrustedProxy) {
          ignored.push(formatTokenSource(source));
          continue;
        }
        token = value;
        break;
      }
      case "protocol":
        token = protocolToken(request.headers.get("sec-websocket-protocol"));
        break;
    }
    if (token) return { token, source };
  }
  return { token: undefined, ignored };
}

/**
 * The first non-blank `token=` of the query: all after the first '?' up to a '#', names and values decoded,
 * `+` as a space, trailing newlines dropped (Python's `parse_qs(urlparse(path).query)`). The hash in log lines
 * (secrets.ts redactTokens) is of this same token.
 */
export function queryToken(target: string): string | undefined {
  const question = target.indexOf("?");
  if (question === -1) return undefined;
  const query = target.slice(question + 1).split("#")[0];
  const token = new URLSearchParams(query).getAll("token").find((value) => value !== "");
  return token?.replace(/[\r\n]+$/, "");
}

/** The Host header without its port (an IPv6 literal without its brackets). */
export function hostToken(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const bracketed = host.match(/^\[([^\]]+)\](?::\d+)?$/);
  return bracketed ? bracketed[1] : host.replace(/:\d*$/, "");
}

/**
 * The raw last segment of the request target's path when the path has two segments or more (`/websockify/T`,
 * `/vnc/desks/T`); undefined for `/`, `/websockify` or a path ending in `/`. An absolute-form target
 * (`http://host/...`) is read from its path.
 */
export function rawPathToken(target: string): string | undefined {
  const path = target.split(/[?#]/)[0].replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/, "");
  const segments = path.split("/");
  // "/a/b" splits as ["", "a", "b"]: two segments or more after the leading slash.
  if (segments.length < 3 || segments[0] !== "") return undefined;
  const last = segments.at(-1)!;
  return last === "" ? undefined : last;
}

/** The path's token (`rawPathToken`), percent-decoded; undefined when its percent-encoding is broken. */
export function pathToken(target: string): string | undefined {
  const raw = rawPathToken(target);
  if (raw === undefined) return undefined;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** The first cookie `name` of a Cookie header: double quotes around it dropped, percent-decoded when valid. */
export function cookieToken(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  // Repeated Cookie lines were joined with ", " (lib/http.ts); cookies are separated by ";".
  for (const pair of header.split(/;|, (?=[^=;,]+=)/)) {
    const equals = pair.indexOf("=");
    if (equals < 0 || pair.slice(0, equals).trim() !== name) continue;
    const value = pair.slice(equals + 1).trim().replace(/^"(.*)"$/, "$1");
    if (value === "") continue;
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}

/** VALUE of the first offered subprotocol `token.VALUE` (with a non-empty VALUE). */
export function protocolToken(offered: string | undefined): string | undefined {
  if (!offered) return undefined;
  for (const protocol of offered.split(",").map((p) => p.trim())) {
    if (
      protocol.startsWith(TOKEN_PROTOCOL_PREFIX) && protocol.length > TOKEN_PROTOCOL_PREFIX.length
    ) {
      return protocol.slice(TOKEN_PROTOCOL_PREFIX.length);
    }
  }
  return undefined;
}

/**
 * The request as the handshake should see it when tokens may travel as subprotocols: the `token.` ones
 * removed from Sec-WebSocket-Protocol (the header removed if nothing else was offered), so a token is never the
 * selected subprotocol, never echoed back.
 */
export function withoutTokenProtocols(request: HttpRequest): HttpRequest {
  const offered = request.headers.get("sec-websocket-protocol");
  if (offered === undefined) return request;
  const kept = offered.split(",").map((p) => p.trim()).filter((p) =>
    !p.startsWith(TOKEN_PROTOCOL_PREFIX)
  );
  const headers = new Map(request.headers);
  if (kept.length === 0) headers.delete("sec-websocket-protocol");
  else headers.set("sec-websocket-protocol", kept.join(", "));
  return { ...request, headers };
}
