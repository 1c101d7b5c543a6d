// Read buffers sized to the traffic.
import assert from "node:assert/strict";
import { LARGE_READ, ReadBuffers, SMALL_READ } from "../lib/io.ts";

Deno.test("an idle stream waits on a small buffer; a full read switches to large; a drained read goes back", () => {
  const buffers = new ReadBuffers(10);
  assert.equal(buffers.next().length, 10 + SMALL_READ);
  buffers.update(100);
  assert.equal(buffers.next().length, 10 + SMALL_READ, "small reads keep the small buffer");
  buffers.update(SMALL_READ);
  const large = buffers.next();
  assert.equal(large.length, 10 + LARGE_READ, "a full small read means more is waiting");
  buffers.update(LARGE_READ);
  assert.equal(buffers.next(), large, "full large reads keep the same buffer");
  buffers.update(LARGE_READ - 1);
  assert.equal(
    buffers.next().length,
    10 + SMALL_READ,
    "a drained socket waits on the small buffer",
  );
  buffers.update(SMALL_READ);
  assert.equal(buffers.next(), large, "the large buffer comes back from the pool");
  buffers.release();
});
