/**
 * Startup: what the command line asked for, resolved and tried before the proxy listens (and before `-D`
 * detaches), so a mistake stops it at once with the option and the path in the message, instead of failing on
 * every connection, or never.
 *
 *     const resolved = await resolveSettings(command.settings);
 *     if ("problem" in resolved) { console.error(`websockify: error: ${resolved.problem.message}`); ... }
 *     const problem = await checkStartup(resolved.settings);
 *
 * Resolution returns new settings (the given ones are never changed); the checks only look, and what they create
 * to try a path (an empty pid file, a probe in the --record directory) they remove.
 *
 * @module
 */

import dns from "node:dns";
import { dirname } from "node:path";
import { parseSyslogHost } from "./logsinks.ts";
import type { Settings } from "./settings.ts";
import { describeError } from "./targets.ts";
import { checkServerCertificate } from "./tls.ts";
import { parseRedisSource } from "./tokenredis.ts";

/** A startup mistake: the message names the option and the path; the exit code is the process's. */
export interface StartupProblem {
  message: string;
  exitCode: number;
}

/** What resolution gives: the settings to run with, or the problem that stops the start. */
export type Resolved = { settings: Settings } | { problem: StartupProblem };

/**
 * The settings resolved for running, after the checks that need the file system: a usable certificate (a wrong
 * key password or a key that does not belong to it is found now, not at the first client), `--ssl-only` with a
 * certificate, an existing `--web` directory. In the result, `web.root` is the directory's real path (for
 * confinement); `settings` itself is not changed.
 */
export async function resolveSettings(settings: Settings): Promise<Resolved> {
  const { tls, web } = settings;
  if (tls.only && !certificateExists(tls.cert)) {
    return {
      problem: { message: `--ssl-only and the certificate '${tls.cert}' not found`, exitCode: 2 },
    };
  }
  if (certificateExists(tls.cert)) {
    try {
      await checkServerCertificate(tls);
    } catch (error) {
      return {
        problem: {
          message: `cannot use the certificate '${tls.cert}': ${describeError(error)}`,
          exitCode: 1,
        },
      };
    }
  }
  if (!web) return { settings };
  let root = web.root;
  try {
    root = await Deno.realPath(web.root);
    if (!(await Deno.stat(root)).isDirectory) throw new Error("not a directory");
  } catch (error) {
    return { problem: { message: `--web '${root}': ${describeError(error)}`, exitCode: 2 } };
  }
  return { settings: { ...settings, web: { ...web, root } } };
}

/** Whether the certificate file is there (TLS is offered when it is). */
export function certificateExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** How long `--syslog host` may take to resolve at startup. */
const RESOLVE_TIMEOUT_MS = 5000;

/**
 * The OS reason of a file-system error, without Deno's trailing `: open '/path'` (the caller names the path),
 * and with the flag to add where Deno's permissions refused.
 */
export function fsReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const refused = error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.PermissionDenied;
  if (refused && /--allow-all/.test(message)) return `${message} (deno task start has it)`;
  return message.replace(/: [a-z_]+( '[^']*')?$/, "");
}

/** Runs every check; the first problem found, or undefined. */
export async function checkStartup(settings: Settings): Promise<StartupProblem | undefined> {
  const checks = [
    () => checkPidFile(settings.pidFile),
    () => checkLogFile(settings.logFile),
    () => checkRecord(settings.record),
    () => checkTokenSource(settings.target),
    () => checkSyslog(settings.syslog),
  ];
  for (const check of checks) {
    const message = await check();
    if (message !== undefined) return { message, exitCode: 1 };
  }
  return undefined;
}

/** `--pid-file`: the file can be created or written (an empty one made for the test is removed). */
async function checkPidFile(path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  let existed = true;
  try {
    await Deno.lstat(path);
  } catch {
    existed = false;
  }
  try {
    const file = await Deno.open(path, { write: true, create: true });
    file.close();
    if (!existed) await Deno.remove(path);
    return undefined;
  } catch (error) {
    return `--pid-file '${path}': ${fsReason(error)}`;
  }
}

/** `--log-file`: opened for appending, as the proxy will (it is created if missing). */
async function checkLogFile(path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  try {
    const file = await Deno.open(path, { append: true, create: true });
    file.close();
    return undefined;
  } catch (error) {
    return `--log-file '${path}': ${fsReason(error)}`;
  }
}

/** `--record BASE`: a file can be created in BASE's directory (tried with a probe file, removed at once). */
async function checkRecord(base: string | undefined): Promise<string | undefined> {
  if (base === undefined) return undefined;
  const dir = dirname(base);
  try {
    const probe = await Deno.makeTempFile({ dir, prefix: ".websockify-record-probe-" });
    await Deno.remove(probe);
    return undefined;
  } catch (error) {
    return `--record '${base}': cannot create files in '${dir}': ${fsReason(error)}`;
  }
}

/**
 * `--token-source` (or `--target-config`): what each built-in token plugin reads. TokenFile and ReadOnlyTokenFile
 * take a readable file or directory; TokenFileName and UnixDomainSocketDirectory a readable directory. Contents
 * are not judged here: TokenFile re-reads its file per connection, and the plugins report bad lines themselves.
 */
async function checkTokenSource(target: Settings["target"]): Promise<string | undefined> {
  // A module's source is the module's business (its init says what is wrong with it).
  if (target.kind !== "token" || typeof target.plugin !== "string") return undefined;
  const option = target.sourceOption ?? "--token-source";
  const source = target.source ?? ""; // (the command line requires one for a built-in plugin)
  if (target.plugin === "BaseTokenAPI" || target.plugin === "JSONTokenApi") {
    return checkTokenServiceUrl(option, source);
  }
  if (target.plugin === "TokenRedis") return await checkRedisPasswordFile(option, source);
  // An address, checked by the command line; the plugin says if it cannot listen there.
  if (target.plugin === "ReverseConnection") return undefined;
  try {
    const info = await Deno.stat(source);
    const needsDirectory = target.plugin === "TokenFileName" ||
      target.plugin === "UnixDomainSocketDirectory";
    if (info.isDirectory) {
      for await (const _ of Deno.readDir(source)) break;
    } else if (needsDirectory) {
      return `${option} '${source}': not a directory (${target.plugin} reads one file per token)`;
    } else {
      const file = await Deno.open(source, { read: true });
      file.close();
    }
    return undefined;
  } catch (error) {
    return `${option} '${source}': ${fsReason(error)}`;
  }
}

/** TokenRedis: a password given as `@FILE` must be readable (the address itself was checked by the CLI). */
async function checkRedisPasswordFile(option: string, source: string): Promise<string | undefined> {
  const { password } = parseRedisSource(source, "/");
  if (typeof password !== "object") return undefined;
  try {
    await Deno.readTextFile(password.file);
    return undefined;
  } catch (error) {
    return `${option}: the Redis password file '${password.file}': ${fsReason(error)}`;
  }
}

/** A token service's URL: http or https, with `%s` where the token goes. */
function checkTokenServiceUrl(option: string, source: string): string | undefined {
  let url: URL;
  try {
    url = new URL(source.replaceAll("%s", "token"));
  } catch {
    return `${option} '${source}': not a URL (expected e.g. http://host:8080/targets/%s)`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `${option} '${source}': not an http or https URL`;
  }
  if (!source.includes("%s")) {
    return `${option} '${source}': no %s where the token goes (e.g. http://host:8080/targets/%s)`;
  }
  return undefined;
}

/**
 * `--syslog`: a unix socket path must exist and be a socket; a host must resolve (the same lookup the UDP sends
 * use). Whether a syslog daemon reads the datagrams cannot be known.
 */
async function checkSyslog(address: string | undefined): Promise<string | undefined> {
  if (address === undefined) return undefined;
  if (address.includes("/")) {
    try {
      const info = await Deno.stat(address);
      if (!info.isSocket) return `--syslog '${address}': not a socket`;
      return undefined;
    } catch (error) {
      return `--syslog '${address}': ${fsReason(error)}`;
    }
  }
  let host: string;
  try {
    host = parseSyslogHost(address).host;
  } catch (error) {
    return describeError(error);
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      dns.promises.lookup(host),
      new Promise((_, reject) => {
        const limit = new Error(`no answer within ${RESOLVE_TIMEOUT_MS / 1000} s`);
        timer = setTimeout(() => reject(limit), RESOLVE_TIMEOUT_MS);
      }),
    ]);
    return undefined;
  } catch (error) {
    // node:dns rejects with an Error that carries the resolver's code.
    const code = error instanceof Error && "code" in error ? error.code : undefined;
    const reason = code === "ENOTFOUND" || code === "EAI_NONAME"
      ? "host not found"
      : error instanceof Error
      ? error.message
      : String(error);
    return `--syslog '${address}': cannot resolve '${host}': ${reason}`;
  } finally {
    clearTimeout(timer);
  }
}
