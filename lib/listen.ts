/**
 * Where connections come from: a TCP socket (dual-stack for a bare port), a unix socket, or, with --inetd, the
 * already-listening socket inherited on standard input.
 *
 * @module
 */

import net from "node:net";
import { formatHostPort } from "./hostport.ts";
import type { ByteStream } from "./io.ts";
import { NodeSocketStream } from "./nodesocket.ts";
import type { ListenSpec } from "./settings.ts";

/** An accepted client connection. `Deno.Conn` is one. */
export interface ClientConn extends ByteStream {
  readonly remoteAddr: Deno.Addr;
  /** The address the client connected to (the PROXY protocol's destination, for --target-proxy-protocol). */
  readonly localAddr?: Deno.Addr;
}

/** A source of client connections. `Deno.Listener` is one. */
export interface Acceptor {
  accept(): Promise<ClientConn>;
  close(): void;
  readonly addr: Deno.Addr;
}

/** Opens the listening socket. Throws (with the OS reason) when it cannot. */
export async function openListener(spec: ListenSpec): Promise<Acceptor> {
  if (spec.kind === "inetd") return await InetdAcceptor.open();
  if (spec.kind === "unix") {
    await removeStaleSocket(spec.path);
    const listener = Deno.listen({ transport: "unix", path: spec.path });
    await Deno.chmod(spec.path, spec.mode);
    return listener;
  }
  // SO_REUSEPORT (workers) is an unstable option of Deno.listen: the workers run with --unstable-net.
  const listen = (hostname: string) =>
    Deno.listen(
      spec.reusePort
        ? { hostname, port: spec.port, reusePort: true } as Deno.TcpListenOptions
        : { hostname, port: spec.port },
    );
  if (spec.hostname === "") {
    // Every interface: one dual-stack socket on "::" serves IPv4 and IPv6 alike; where IPv6 is off, IPv4 only.
    try {
      return listen("::");
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) throw error;
      return listen("0.0.0.0");
    }
  }
  return listen(spec.hostname);
}

/** How long a server already at the socket path has to accept a probe connection. */
const PROBE_MS = 1000;

/**
 * Makes way for our socket at `path`: a socket file nobody listens on (left by a crash) is removed; a socket a
 * live server answers on is refused, never taken over. Anything else there is left for `listen` to fail on.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) return;
  if (await answers(path)) {
    throw new Deno.errors.AddrInUse(
      "another server is listening there (not taken over)",
    );
  }
  await Deno.remove(path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/** Whether a server accepts connections on the unix socket at `path` (bounded wait: a hung one counts too). */
async function answers(path: string): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ transport: "unix", path });
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(resolve, PROBE_MS, "timeout")
  );
  try {
    const outcome = await Promise.race([connecting, timeout]);
    if (outcome === "timeout") {
      connecting.then((conn) => conn.close(), () => {});
      return true;
    }
    outcome.close();
    return true;
  } catch (error) {
    // ECONNREFUSED: a socket file with nobody behind it (or gone meanwhile).
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    if (error instanceof Deno.errors.NotFound) return false;
    // Anything else (no permission, a full backlog) cannot prove the socket stale: it is left alone.
    throw new Error(
      `cannot tell whether a server is listening on the unix socket '${path}' (${
        (error as Error).message
      }); not replacing it`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** `:6080`, `127.0.0.1:6080`, `[::1]:6080`, the socket path, or `inetd`, as the banner shows it. */
export function describeListener(spec: ListenSpec, acceptor: Acceptor): string {
  if (spec.kind === "unix") return spec.path;
  const address = acceptor.addr as Deno.NetAddr;
  if (spec.kind === "inetd") return formatHostPort(address.hostname, address.port);
  return spec.hostname === "" ? `:${address.port}` : formatHostPort(spec.hostname, address.port);
}

/** A client of the inherited socket, as a ByteStream with its address. */
class InetdConn extends NodeSocketStream implements ClientConn {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  constructor(socket: net.Socket) {
    super(socket);
    socket.setNoDelay(true);
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "unknown",
      port: socket.remotePort ?? 0,
    };
    this.localAddr = {
      transport: "tcp",
      hostname: socket.localAddress ?? "unknown",
      port: socket.localPort ?? 0,
    };
  }
}

/**
 * `--inetd` ("wait" style): file descriptor 0 is a listening socket, adopted with node:net's `listen({fd})` (Deno
 * has no native API for it).
 */
class InetdAcceptor implements Acceptor {
  readonly #server: net.Server;
  readonly #queue: net.Socket[] = [];
  #waiting: { resolve(conn: ClientConn): void; reject(error: Error): void } | undefined;
  /** An accept failure (e.g. out of file descriptors) for the next `accept` to report. */
  #failure: Error | undefined;
  #closed = false;
  addr: Deno.Addr = { transport: "tcp", hostname: "inetd", port: 0 };

  private constructor(server: net.Server) {
    this.#server = server;
    server.on("connection", (socket: net.Socket) => {
      socket.pause();
      if (this.#waiting) {
        const waiting = this.#waiting;
        this.#waiting = undefined;
        waiting.resolve(new InetdConn(socket));
      } else {
        this.#queue.push(socket);
      }
    });
  }

  static open(): Promise<InetdAcceptor> {
    return new Promise((resolve, reject) => {
      // Half-open like a Deno.Conn: a client that ends its side still gets everything owed to it.
      const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
      const acceptor = new InetdAcceptor(server);
      let listening = false;
      server.on("error", (error: Error) => {
        if (listening) return acceptor.#failed(error);
        server.close();
        reject(new Error(`--inetd: standard input is not a listening socket (${error.message})`));
      });
      server.listen({ fd: 0 }, () => {
        listening = true;
        const address = server.address();
        if (address && typeof address === "object") {
          acceptor.addr = { transport: "tcp", hostname: address.address, port: address.port };
        }
        resolve(acceptor);
      });
    });
  }

  #failed(error: Error): void {
    if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting.reject(error);
    } else {
      this.#failure = error;
    }
  }

  accept(): Promise<ClientConn> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    const failure = this.#failure;
    this.#failure = undefined;
    if (failure) return Promise.reject(failure);
    const socket = this.#queue.shift();
    if (socket) return Promise.resolve(new InetdConn(socket));
    return new Promise((resolve, reject) => this.#waiting = { resolve, reject });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const socket of this.#queue.splice(0)) socket.destroy();
    this.#waiting?.reject(new Deno.errors.BadResource("listener closed"));
    this.#waiting = undefined;
  }
}
