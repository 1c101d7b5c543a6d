// wstest's records: the format, and every kind of damage the checker must see.
import assert from "node:assert/strict";
import { makeRecord, MAX_RECORD_DIGITS, RecordChecker } from "../../web/wstest_records.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);
/** A fixed digit sequence 0,1,...,9,0,... for reproducible records. */
const counting = () => {
  let i = 0;
  return () => (i++ % 10) / 10 + 0.01;
};

Deno.test("makeRecord: ^seq:length:checksum:digits$ with the digits' sum", () => {
  assert.equal(text(makeRecord(0, 12, counting())), "^0:12:46:012345678901$");
  assert.equal(text(makeRecord(41, 1, () => 0.95)), "^41:1:9:9$");
});

Deno.test("RecordChecker: records split and joined in any way are all good", () => {
  const random = counting();
  const stream = Array.from({ length: 50 }, (_, seq) => text(makeRecord(seq, 1 + seq * 7, random)))
    .join("");
  for (const step of [1, 3, 17, 1000, stream.length]) {
    const checker = new RecordChecker();
    for (let at = 0; at < stream.length; at += step) {
      checker.push(bytes(stream.slice(at, at + step)));
    }
    assert.deepEqual(checker.counts, { good: 50, errors: 0, nextSeq: 50 }, `pieces of ${step}`);
    assert.equal(checker.partial, false);
  }
});

Deno.test("RecordChecker: lost, repeated, altered, cut, foreign and endless input are errors", () => {
  const cases: [string, RegExp][] = [
    ["^0:1:1:1$^2:1:1:1$", /expected record 1, got 2/],
    ["^0:1:1:1$^0:1:1:1$", /expected record 1, got 0/],
    ["^0:3:6:124$", /record 0: checksum 6 expected, digits add up to 7/],
    ["^0:3:6:12$", /record 0: expected 3 digits, got 2/],
    ["^0:3:6:1^1:1:1:1$", /cut short/],
    ["x^0:1:1:1$", /byte 120 outside a record/],
    ["^0:1:1:a$", /not a digit/],
    ["^zero:1:1:1$", /malformed record/],
  ];
  for (const [input, why] of cases) {
    const messages: string[] = [];
    const checker = new RecordChecker((message) => messages.push(message));
    checker.push(bytes(input));
    assert.ok(checker.counts.errors >= 1, input);
    assert.ok(messages.some((message) => why.test(message)), `${input}: ${messages}`);
  }
  const endless = new RecordChecker();
  endless.push(bytes("^0:9:9:"));
  endless.push(new Uint8Array(MAX_RECORD_DIGITS + 100).fill(0x31));
  assert.equal(endless.counts.errors, 1, "a record without end is one error, not unbounded memory");
  const cut = new RecordChecker();
  cut.push(bytes("^0:5:5:11"));
  assert.equal(cut.partial, true);
});
