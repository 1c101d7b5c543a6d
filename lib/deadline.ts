/**
 * Waiting: `sleep`, a plain pause, and `Deadline`, a connection's time limit and its cancellation at shutdown, as
 * one object every wait of a connection goes through.
 *
 * Closing a socket does not end every wait on it: a TLS handshake whose peer vanished may never settle. So a
 * deadline does not rely on the awaited promise: `race` ends the wait itself, at once, when the time is up or
 * the server stops, and `onExpire` releases what the connection holds.
 *
 *     const deadline = new Deadline(() => conn.close());
 *     deadline.set(10_000);
 *     const head = await deadline.race(readRequestHead(conn)); // throws DeadlineExpired after 10 s
 *
 * @module
 */

/** Resolves after `ms` milliseconds. A pause that a shutdown must be able to cut goes through a Deadline. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The wait was cut: the time was up, or the server is stopping. */
export class DeadlineExpired extends Error {
  override name = "DeadlineExpired";
  /** "timeout" when the time was up, "shutdown" when the server stopped. */
  readonly why: "timeout" | "shutdown";
  constructor(cause: "timeout" | "shutdown") {
    super(cause === "timeout" ? "timed out" : "server shutting down");
    this.why = cause;
  }
}

export class Deadline {
  readonly #onExpire: () => void;
  /** Made when someone asks for `signal` (idle sessions are counted in thousands: each byte counts). */
  #controller: AbortController | undefined;
  /** What the pending races do when the deadline expires. */
  #waiters: Set<() => void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #expired: DeadlineExpired | undefined;

  /** `onExpire` runs once, when the deadline first expires (close the connection there). */
  constructor(onExpire: () => void = () => {}) {
    this.#onExpire = onExpire;
  }

  /** Aborted when the deadline expires: for APIs that take a signal. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#expired) this.#controller.abort(this.#expired);
    }
    return this.#controller.signal;
  }

  /** Why it expired, if it has. */
  get expired(): DeadlineExpired | undefined {
    return this.#expired;
  }

  /** Expires `ms` from now (replacing any earlier limit); an expired deadline stays expired. */
  set(ms: number): void {
    if (this.#expired) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.expire("timeout"), ms);
  }

  /** No time limit for now (or any more: the connection is done); `expire("shutdown")` still ends every wait. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Ends every wait now. */
  expire(cause: "timeout" | "shutdown"): void {
    if (this.#expired) return;
    clearTimeout(this.#timer);
    this.#expired = new DeadlineExpired(cause);
    this.#controller?.abort(this.#expired);
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters) { for (const cut of waiters) cut(); }
    this.#onExpire();
  }

  /**
   * `promise`'s outcome, unless the deadline expires first: then DeadlineExpired, at once. With `within`, a
   * shorter limit applies to this wait alone (and expires the deadline too).
   */
  race<T>(promise: Promise<T>, within?: number): Promise<T> {
    if (this.#expired) {
      promise.catch(() => {}); // its outcome no longer matters
      return Promise.reject(this.#expired);
    }
    return new Promise<T>((resolve, reject) => {
      const local = within === undefined
        ? undefined
        : setTimeout(() => this.expire("timeout"), within);
      const onExpire = () => {
        clearTimeout(local);
        reject(this.#expired);
      };
      const waiters = this.#waiters ??= new Set();
      waiters.add(onExpire);
      const settled = () => {
        clearTimeout(local);
        this.#waiters?.delete(onExpire);
        if (this.#waiters?.size === 0) this.#waiters = undefined;
      };
      promise.then(
        (value) => {
          settled();
          resolve(value);
        },
        (error) => {
          settled();
          reject(this.#expired ?? error);
        },
      );
    });
  }
}
