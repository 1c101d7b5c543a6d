/**
 * An auth plugin for tests: the X-Behaviour header says what it answers (allow, refuse, a bad status, a throw,
 * a hang, garbage); "show" refuses with a log that quotes what the proxy handed over.
 */
import type { AuthRequest, AuthVerdict } from "../../lib/plugin_api.ts";

export function auth(request: AuthRequest): AuthVerdict | Promise<AuthVerdict> {
  switch (request.headers.get("x-behaviour")) {
    case "true":
      return true;
    case "false":
      return false;
    case "teapot":
      return {
        status: 418,
        message: "I'm a teapot",
        headers: [["X-Why", "tea only"]],
        log: "no coffee",
      };
    case "bad-status":
      return { status: 200 };
    case "bad-header":
      return { status: 401, headers: { "Bad Name": "x" } };
    case "throw":
      throw new Error("directory unreachable");
    case "hang":
      return new Promise(() => {});
    case "garbage":
      return 42 as unknown as AuthVerdict;
    case "show":
      return {
        status: 403,
        log: JSON.stringify({
          target: request.target,
          source: request.source,
          address: request.client.address,
        }),
      };
  }
  return undefined;
}
