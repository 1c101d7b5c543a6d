/**
 * A token plugin for tests whose token says how it misbehaves: throws, hangs, answers garbage or null. The token
 * "context" checks what the proxy hands over and answers 127.0.0.1 and the port of the X-Target-Port header.
 */
import type { LookupContext, Target } from "../../lib/plugin_api.ts";

let source: string | undefined;

export function init(given?: string): void {
  source = given;
}

export function lookup(
  token: string,
  context: LookupContext,
): Target | undefined | null | Promise<Target | undefined> {
  switch (token) {
    case "throw":
      throw new Error("backend down\nsecond line");
    case "hang":
      return new Promise(() => {});
    case "number":
      return 42 as unknown as Target;
    case "no-host":
      return { port: 5900 } as unknown as Target;
    case "port-big":
      return { host: "127.0.0.1", port: 70000 };
    case "port-zero":
      return "127.0.0.1:0";
    case "null":
      return null;
    case "context": {
      const { client, request } = context;
      const problems = [
        source === context.source ? "" : `source ${context.source}`,
        client.address === "127.0.0.1" ? "" : `address ${client.address}`,
        typeof client.port === "number" && client.port > 0 ? "" : `port ${client.port}`,
        request.method === "GET" ? "" : `method ${request.method}`,
        request.path === "/websockify?token=context" ? "" : `path ${request.path}`,
        request.headers.get("ssl_client_s_dn_cn") === null
          ? ""
          : "a forged SSL_ header was handed on",
      ].filter((problem) => problem);
      if (problems.length > 0) throw new Error(`unexpected context: ${problems.join(", ")}`);
      return `127.0.0.1:${request.headers.get("X-Target-Port")}`;
    }
  }
  return undefined;
}
