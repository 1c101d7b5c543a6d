// Read buffers sized to the traffic, lent one at a time.
import assert from "node:assert/strict";
import { LARGE_READ, ReadBuffers, SMALL_READ } from "../../lib/io.ts";

Deno.test("an idle stream waits on a small buffer; a full read switches to large; a drained read goes back", () => {
  const buffers = new ReadBuffers(10);
  assert.equal(buffers.lend().length, 10 + SMALL_READ);
  buffers.giveBack(100);
  assert.equal(buffers.lend().length, 10 + SMALL_READ, "small reads keep the small buffer");
  buffers.giveBack(SMALL_READ);
  const large = buffers.lend();
  assert.equal(large.length, 10 + LARGE_READ, "a full small read means more is waiting");
  buffers.giveBack(LARGE_READ);
  assert.equal(buffers.lend(), large, "full large reads keep the same buffer");
  buffers.giveBack(LARGE_READ - 1);
  assert.equal(
    buffers.lend().length,
    10 + SMALL_READ,
    "a drained socket waits on the small buffer",
  );
  buffers.giveBack(SMALL_READ);
  assert.equal(buffers.lend(), large, "the large buffer comes back from the pool");
  buffers.giveBack(0);
  buffers.dispose();
});

Deno.test("a buffer is lent to one reader at a time and pooled only once given back", () => {
  const first = new ReadBuffers(10);
  first.lend();
  first.giveBack(SMALL_READ);
  const held = first.lend(); // large, and its bytes are still "being written"
  assert.equal(held.length, 10 + LARGE_READ);
  assert.throws(() => first.lend(), /not given back/, "no second buffer while one is out");
  // Another session asking for a large buffer now must not get the one still lent out.
  const second = new ReadBuffers(10);
  second.lend();
  second.giveBack(SMALL_READ);
  const other = second.lend();
  assert.notEqual(other, held);
  // A stream that ends while its buffer is still lent (a failed write may hold it) never pools it.
  first.dispose();
  second.giveBack(0); // `other` goes to the pool: it was given back
  second.dispose();
  const third = new ReadBuffers(10);
  third.lend();
  third.giveBack(SMALL_READ);
  const reused = third.lend();
  assert.equal(reused, other, "the buffer given back is reused");
  assert.notEqual(reused, held);
  third.giveBack(0);
  third.dispose();
  const fourth = new ReadBuffers(10);
  fourth.lend();
  fourth.giveBack(SMALL_READ);
  assert.notEqual(fourth.lend(), held, "the buffer never given back never reaches the pool");
  fourth.giveBack(0);
  fourth.dispose();
  assert.throws(() => new ReadBuffers().giveBack(1), /nothing was lent/);
});
