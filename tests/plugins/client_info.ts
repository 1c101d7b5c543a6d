/**
 * An auth plugin for the PROXY protocol tests: a request for /who is refused with a log line naming the client
 * as the plugin was told it (address and port); every other request is allowed.
 */
import type { AuthRequest, AuthVerdict } from "../../lib/plugin_api.ts";

export function auth(request: AuthRequest): AuthVerdict {
  if (request.path !== "/who") return undefined;
  return { status: 403, log: `client ${request.client.address} port ${request.client.port}` };
}
