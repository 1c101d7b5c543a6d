// A connection's time limit (lib/deadline.ts): race, set, clear, expire, with short timers and promises that
// never settle; no socket.
import assert from "node:assert/strict";
import { Deadline, DeadlineExpired, sleep } from "../../lib/deadline.ts";

/** A promise that never settles: what a wait on a vanished peer looks like. */
const never = () => new Promise<never>(() => {});

Deno.test("Deadline.race: the promise's value or error while time remains; the timer released", async () => {
  const deadline = new Deadline();
  deadline.set(10_000);
  assert.equal(await deadline.race(Promise.resolve(7)), 7);
  await assert.rejects(deadline.race(Promise.reject(new Error("reset"))), /^Error: reset$/);
  assert.equal(await deadline.race(sleep(5).then(() => "late but in time")), "late but in time");
  assert.equal(deadline.expired, undefined);
  assert.equal(deadline.signal.aborted, false);
  deadline.clear();
});

Deno.test("Deadline.set: a wait that never settles ends with DeadlineExpired('timeout'); onExpire runs once", async () => {
  let expirations = 0;
  const deadline = new Deadline(() => expirations++);
  deadline.set(20);
  const started = performance.now();
  const error = await deadline.race(never()).catch((e) => e);
  assert.ok(error instanceof DeadlineExpired);
  assert.equal(error.why, "timeout");
  assert.ok(performance.now() - started >= 15, "not before its time");
  assert.equal(expirations, 1);
  assert.equal(deadline.expired, error);
  assert.equal(deadline.signal.aborted, true);
  assert.equal(deadline.signal.reason, error);
  // Expired stays expired: a later wait ends at once, setting a new limit or expiring again changes nothing.
  deadline.set(10_000);
  deadline.expire("shutdown");
  await assert.rejects(deadline.race(never()), (e) => e === error);
  assert.equal(expirations, 1);
  deadline.clear();
});

Deno.test("Deadline.set replaces the earlier limit; clear removes it; expire('shutdown') still ends every wait", async () => {
  let expirations = 0;
  const deadline = new Deadline(() => expirations++);
  deadline.set(20);
  deadline.set(10_000);
  await sleep(60);
  assert.equal(deadline.expired, undefined, "the later set replaced the 20 ms limit");
  deadline.set(20);
  deadline.clear();
  await sleep(60);
  assert.equal(deadline.expired, undefined, "clear removed the limit");
  const waits = [deadline.race(never()), deadline.race(never())];
  deadline.expire("shutdown");
  for (const wait of waits) {
    await assert.rejects(wait, (e) => e instanceof DeadlineExpired && e.why === "shutdown");
  }
  assert.equal(expirations, 1);
  assert.match(String(deadline.expired), /server shutting down/);
});

Deno.test("Deadline.race with `within`: a shorter limit for one wait, which expires the deadline; cleared when the wait ends", async () => {
  const kept = new Deadline();
  kept.set(10_000);
  assert.equal(await kept.race(Promise.resolve("quick"), 20), "quick");
  await sleep(60);
  assert.equal(kept.expired, undefined, "a settled wait's own limit is cleared");
  kept.clear();

  const cut = new Deadline();
  cut.set(10_000);
  const error = await cut.race(never(), 20).catch((e) => e);
  assert.ok(error instanceof DeadlineExpired && error.why === "timeout");
  assert.equal(cut.expired, error, "the whole deadline expired");
  cut.clear();
});

Deno.test("Deadline: once expired, a wait's own rejection is DeadlineExpired, and a late rejection is not unhandled", async () => {
  // onExpire closes the resource, which makes the pending wait fail with its own error: the caller sees why.
  let fail!: (error: Error) => void;
  const read = new Promise<never>((_, reject) => fail = reject);
  const deadline = new Deadline(() => fail(new Error("BadResource: closed")));
  const waiting = deadline.race(read);
  deadline.expire("timeout");
  await assert.rejects(waiting, (e) => e instanceof DeadlineExpired && e.why === "timeout");
  // A race begun after expiry rejects at once; the given promise's later failure goes nowhere.
  let failLater!: (error: Error) => void;
  const later = deadline.race(new Promise<never>((_, reject) => failLater = reject));
  await assert.rejects(later, DeadlineExpired);
  failLater(new Error("after the deadline"));
  await sleep(0);
});
