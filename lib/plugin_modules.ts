/**
 * Token and auth plugins loaded from modules: `--token-plugin ./my_plugin.ts` (a path, absolute or relative to
 * the start directory), a `file:` URL, or an `npm:`/`jsr:`/`https:` specifier. The interface a module exports is
 * in plugin_api.ts; this module imports it, checks it, and wraps it as a TokenPlugin / AuthPlugin, so that what a
 * plugin does wrong (throws, answers garbage) becomes a refused session with a log line, never a crash.
 *
 *     const module = parsePluginModule("./my_plugin.ts", Deno.cwd()); // { given, specifier: "file:///..." }
 *     const plugin = await loadTokenModule(module, "--token-source value");
 *
 * (How long a call may take is the server's business: session.ts and connection.ts race each call against the
 * connection's deadline, `ServerTimeouts.plugin`.)
 *
 * @module
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parsePort } from "./hostport.ts";
import { type HttpRequest, STATUS_TEXT } from "./http.ts";
import type {
  AuthFunction,
  AuthRequest,
  InitFunction,
  LookupContext,
  LookupFunction,
  ReloadFunction,
  RequestInfo,
  SessionTarget,
} from "./plugin_api.ts";
import {
  type AuthContext,
  type AuthPlugin,
  type AuthRefusal,
  type Caller,
  parseTokenTarget,
  type TokenPlugin,
} from "./plugins.ts";
import type { PluginModule, TargetSpec } from "./settings.ts";

/** Module specifiers a plugin may be given as, besides paths. */
const SCHEMES = /^(file|npm|jsr|https?):/;
/** A bare name with one of these endings is a path (`plugins/mine.ts`), not a plugin name. */
const SCRIPT_ENDINGS = /\.(ts|mts|js|mjs|tsx|jsx)$/;

/**
 * A `--token-plugin` / `--auth-plugin` value that names a module: a path (`./x.ts`, `../x.ts`, `/abs/x.ts`, or any
 * name ending in .ts/.js/.mjs/...), resolved against `cwd` into a file: URL; or a `file:`, `npm:`, `jsr:`,
 * `http(s):` specifier, kept as given. Undefined for anything else (a plugin name).
 */
export function parsePluginModule(value: string, cwd: string): PluginModule | undefined {
  if (SCHEMES.test(value)) {
    if (!value.startsWith("file:")) return { given: value, specifier: value };
    if (!URL.canParse(value)) throw new Error("not a valid file: URL");
    return { given: value, specifier: new URL(value).href };
  }
  const isPath = value.startsWith("./") || value.startsWith("../") || value.startsWith("/") ||
    SCRIPT_ENDINGS.test(value);
  return isPath ? { given: value, specifier: pathToFileURL(resolve(cwd, value)).href } : undefined;
}

/** How long `init` may take before the start is given up. */
export const PLUGIN_INIT_TIMEOUT_MS = 30_000;

/** Options of the loaders (tests shorten the time limit). */
export interface LoadOptions {
  /** @default PLUGIN_INIT_TIMEOUT_MS */
  initTimeoutMs?: number;
  /** @default Deno.build.standalone (the single executable: its messages say what it cannot import) */
  standalone?: boolean;
}

/**
 * Loads a token plugin module: imports it, finds `lookup`, runs `init(source)`. Throws an Error whose message
 * names the option and the module (import failure, no lookup function, init failure).
 */
export async function loadTokenModule(
  module: PluginModule,
  source: string | undefined,
  options: LoadOptions = {},
): Promise<TokenPlugin> {
  const option = "--token-plugin";
  const namespace = await importPlugin(module, option, options);
  const lookup = exported<LookupFunction>(namespace, "lookup");
  if (!lookup) throw missingExport(module, option, "lookup", namespace);
  await runInit(namespace, module, option, source, options);
  const { given } = module;
  return {
    name: given,
    reload: reloader(namespace, source),
    async lookup(token, caller) {
      let answer: unknown;
      try {
        answer = await lookup(token, lookupContext(source, caller));
      } catch (error) {
        throw new Error(`${given}: ${reason(error)}`);
      }
      if (answer === undefined || answer === null) return undefined;
      try {
        return pluginTarget(answer);
      } catch (error) {
        throw new Error(`${given} answered ${describeValue(answer)}: ${reason(error)}`);
      }
    },
  };
}

/**
 * Loads an auth plugin module: imports it, finds `auth`, runs `init(source)`. Throws like loadTokenModule. The
 * plugin's answers become refusals (see authVerdict); a throw is a 403 with the reason in the log.
 */
export async function loadAuthModule(
  module: PluginModule,
  source: string | undefined,
  options: LoadOptions = {},
): Promise<AuthPlugin> {
  const option = "--auth-plugin";
  const namespace = await importPlugin(module, option, options);
  const auth = exported<AuthFunction>(namespace, "auth");
  if (!auth) throw missingExport(module, option, "auth", namespace);
  await runInit(namespace, module, option, source, options);
  const { given } = module;
  return {
    name: given,
    reload: reloader(namespace, source),
    async authenticate(context) {
      let verdict: unknown;
      try {
        verdict = await auth(authRequest(source, context));
      } catch (error) {
        return pluginError(`${given} threw: ${reason(error)}`);
      }
      return authVerdict(verdict, given);
    },
  };
}

/** The module's `reload(source)`, if it exports one (SIGHUP). */
function reloader(
  namespace: Record<string, unknown>,
  source: string | undefined,
): (() => Promise<void>) | undefined {
  const reload = exported<ReloadFunction>(namespace, "reload");
  return reload ? async () => await reload(source) : undefined;
}

/** The module's namespace; an import failure (missing file, syntax error, ...) is an Error naming it. */
async function importPlugin(
  module: PluginModule,
  option: string,
  options: LoadOptions,
): Promise<Record<string, unknown>> {
  try {
    return await import(module.specifier);
  } catch (error) {
    throw new Error(
      `${option} ${module.given}: cannot load it: ${importFailure(error)}${
        standaloneHint(module, options.standalone ?? Deno.build.standalone)
      }`,
    );
  }
}

/**
 * What the single executable can import, said where it matters: files on disk (TypeScript is transpiled at
 * import since Deno 2.8.2), and what was embedded when it was built; it fetches nothing.
 */
export function standaloneHint(module: PluginModule, standalone: boolean): string {
  if (!standalone || module.specifier.startsWith("file:")) return "";
  return " (the single executable cannot fetch npm:, jsr: or http(s): modules: give a plugin file, or run " +
    "websockify with deno)";
}

/**
 * The first line of an import error (Deno's messages add a code frame, colours, and the lockfile diff), with the
 * place of a syntax error.
 */
export function importFailure(error: unknown): string {
  // deno-lint-ignore no-control-regex
  const text = reasonText(error).replace(/\x1b\[[0-9;]*m/g, "");
  const lines = text.split("\n");
  const place = lines.slice(1).map((line) => line.match(/^\s*at (\S+)/)?.[1]).find((at) => at);
  const lockHint = lines[0].startsWith("The lockfile is out of date")
    ? " (an npm: or jsr: plugin must be in the project's deno.lock: deno add it first)"
    : "";
  return oneLine(lines[0]) + (place ? ` (at ${place})` : "") + lockHint;
}

/** A function the module exports by `name`, or that its default export has (a CommonJS npm package). */
function exported<F>(namespace: Record<string, unknown>, name: string): F | undefined {
  const direct = namespace[name];
  if (typeof direct === "function") return direct as F;
  const fallback = namespace.default;
  if (typeof fallback !== "object" && typeof fallback !== "function") return undefined;
  const method = (fallback as Record<string, unknown> | null)?.[name];
  return typeof method === "function" ? method.bind(fallback) as F : undefined;
}

function missingExport(
  module: PluginModule,
  option: string,
  name: "lookup" | "auth",
  namespace: Record<string, unknown>,
): Error {
  const other = name === "lookup" ? "auth" : "lookup";
  const hint = exported(namespace, other)
    ? ` (it exports ${other}: use it with ${other === "auth" ? "--auth-plugin" : "--token-plugin"})`
    : ` (a ${
      name === "lookup" ? "token" : "auth"
    } plugin exports function ${name}; see lib/plugin_api.ts)`;
  return new Error(`${option} ${module.given}: exports no ${name} function${hint}`);
}

/** `init(source)`, if exported, within `initTimeoutMs`; a throw or a timeout is an Error naming the module. */
async function runInit(
  namespace: Record<string, unknown>,
  module: PluginModule,
  option: string,
  source: string | undefined,
  options: LoadOptions,
): Promise<void> {
  const init = exported<InitFunction>(namespace, "init");
  if (!init) return;
  const limit = options.initTimeoutMs ?? PLUGIN_INIT_TIMEOUT_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      (async () => await init(source))(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not finished within ${limit / 1000} s`)),
          limit,
        );
      }),
    ]);
  } catch (error) {
    throw new Error(`${option} ${module.given}: init failed: ${reason(error)}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A plugin's answer as a target (see Target in plugin_api.ts). Throws an Error saying what is wrong with it; the
 * message does not repeat the value.
 */
export function pluginTarget(value: unknown): TargetSpec {
  if (typeof value === "string") {
    const target = parseTokenTarget(value);
    if (!target) throw new Error('not "host:port", "[v6]:port" or "unix_socket:/path"');
    if (target.kind === "tcp") checkHost(target.hostname);
    return target;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error('not a target ("host:port", { host, port } or { unixSocket })');
  }
  const { host, port, unixSocket } = value as Record<string, unknown>;
  if (unixSocket !== undefined) {
    if (host !== undefined) throw new Error("both host and unixSocket");
    if (typeof unixSocket !== "string" || unixSocket.trim() === "") {
      throw new Error("unixSocket is not a path");
    }
    return { kind: "unix", path: unixSocket };
  }
  if (host === undefined && port === undefined) {
    throw new Error("neither host and port nor unixSocket");
  }
  if (typeof host !== "string") throw new Error("host is not a string");
  const hostname = host.replace(/^\[(.*)\]$/, "$1");
  checkHost(hostname);
  if (typeof port !== "number" || parsePort(String(port)) === undefined) {
    throw new Error("port is not a whole number from 1 to 65535");
  }
  return { kind: "tcp", hostname, port };
}

function checkHost(hostname: string): void {
  // deno-lint-ignore no-control-regex
  if (hostname === "" || /[\s\x00-\x1f\x7f/]/.test(hostname)) {
    throw new Error("host is not a name or an address");
  }
}

/** A header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers of a refusal the proxy writes itself. */
const RESERVED_HEADERS = new Set(["content-length", "transfer-encoding", "connection"]);

/**
 * An auth plugin's answer as the proxy acts on it: undefined (allowed) for undefined or true; a refusal for false
 * (403) or a valid AuthRefusal; a plugin error (403, its reason logged) for anything else.
 */
export function authVerdict(value: unknown, given: string): AuthRefusal | undefined {
  if (value === undefined || value === true) return undefined;
  if (value === false) {
    return { status: 403, message: "Forbidden", headers: [], log: `refused by ${given}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return pluginError(
      `${given} answered ${
        describeValue(value)
      }: undefined or true allow, false or { status } refuses`,
    );
  }
  const { status, message, headers, log } = value as Record<string, unknown>;
  if (typeof status !== "number" || !Number.isInteger(status) || status < 400 || status > 599) {
    return pluginError(
      `${given} answered status ${describeValue(status)}: a refusal is 400 to 599`,
    );
  }
  if (message !== undefined && typeof message !== "string") {
    return pluginError(`${given} answered a message that is not a string`);
  }
  if (log !== undefined && typeof log !== "string") {
    return pluginError(`${given} answered a log that is not a string`);
  }
  const pairs = headerPairs(headers);
  if (typeof pairs === "string") return pluginError(`${given} answered ${pairs}`);
  return {
    status,
    message: message || (STATUS_TEXT[status] ?? "Refused"),
    headers: pairs,
    log: log ? oneLine(log) : `refused by ${given}`,
  };
}

/** A refusal's headers as pairs, or what is wrong with them. */
function headerPairs(headers: unknown): [string, string][] | string {
  if (headers === undefined) return [];
  if (typeof headers !== "object" || headers === null) {
    return "headers that are neither pairs nor a record";
  }
  const entries: unknown[] = Array.isArray(headers) ? headers : Object.entries(headers);
  const pairs: [string, string][] = [];
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2) {
      return "a header that is not a [name, value] pair";
    }
    const [name, value] = entry;
    if (typeof name !== "string" || !TOKEN.test(name)) {
      return `a header name that is not a token (${describeValue(name)})`;
    }
    if (RESERVED_HEADERS.has(name.toLowerCase())) return `the header ${name}, which the proxy sets`;
    if (typeof value !== "string") return `a value of ${name} that is not a string`;
    pairs.push([name, value]);
  }
  return pairs;
}

/** A plugin that failed: the session is refused with 403, the reason goes to the log. */
function pluginError(log: string): AuthRefusal {
  return { status: 403, message: "Forbidden", headers: [], log: `plugin error: ${oneLine(log)}` };
}

/** What a token plugin module is handed besides the token. */
function lookupContext(source: string | undefined, caller: Caller): LookupContext {
  return {
    source,
    client: caller.client,
    request: requestInfo(caller.request),
    ...(caller.clientCertCN !== undefined ? { clientCertCN: caller.clientCertCN } : {}),
  };
}

/** What an auth plugin module is handed. */
function authRequest(source: string | undefined, context: AuthContext): AuthRequest {
  const target = sessionTarget(context.target);
  return {
    ...requestInfo(context.request),
    client: context.client ?? { address: "unknown" },
    ...(context.clientCertCN !== undefined ? { clientCertCN: context.clientCertCN } : {}),
    ...(target ? { target } : {}),
    source,
  };
}

function requestInfo(request: HttpRequest): RequestInfo {
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    try {
      headers.append(name, value);
    } catch { /* a name or value the Headers class refuses is not handed on */ }
  }
  return { method: request.method, path: request.target, headers };
}

/** A target as auth plugins see it; undefined when a token plugin has not chosen one (a --web-auth file). */
function sessionTarget(target: TargetSpec): SessionTarget | undefined {
  switch (target.kind) {
    case "tcp":
      return { host: target.hostname, port: target.port };
    case "unix":
      return { unixSocket: target.path };
    case "command":
      return { command: target.command, port: target.port };
    case "token":
      return undefined;
  }
}

/** A plugin's error as one line. */
function reason(error: unknown): string {
  return oneLine(reasonText(error));
}

function reasonText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Line breaks folded, at most 300 characters (a plugin's message goes into one log line). */
function oneLine(text: string): string {
  const line = text.replace(/\s*[\r\n]+\s*/g, " ").trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

/** A value as a plugin's answer is quoted in a log line: JSON, at most 80 characters. */
function describeValue(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch { /* a cycle or a BigInt */ }
  text ??= typeof value;
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}
