// Generated from web/wstest_records.ts by `deno task build:web`: edit that file, then run the task.
/* @ts-self-types="./wstest_records.d.ts" */
/**
 * wstest's integrity records, as websockify's load test writes them: `^<seq>:<length>:<checksum>:<digits>$`,
 * where `digits` is `length` decimal digits and `checksum` their sum. Numbered from 0, so a lost, repeated,
 * reordered, cut or altered record shows. Pure code with no Deno API: the browser page uses it too.
 *
 * The checker reads a byte stream, not messages: websockify relays bytes, and a target or the relay may join or
 * split messages, so records are found by their `^` and `$`.
 *
 * @module
 */
/** The longest record the checker accepts (a longer run without `$` is an error, not a buffer that grows). */
export const MAX_RECORD_DIGITS = 1_000_000;
const CARET = 0x5e;
const DOLLAR = 0x24;
const COLON = 0x3a;
const ZERO = 0x30;
/**
 * Record `seq` with `length` digits taken from `random` (a function giving numbers in [0, 1), e.g.
 * Math.random).
 */
export function makeRecord(seq, length, random) {
  const digits = new Uint8Array(length);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const digit = Math.floor(random() * 10) % 10;
    digits[i] = ZERO + digit;
    sum += digit;
  }
  const head = new TextEncoder().encode(`^${seq}:${length}:${sum}:`);
  const record = new Uint8Array(head.length + length + 1);
  record.set(head);
  record.set(digits, head.length);
  record[record.length - 1] = DOLLAR;
  return record;
}
/**
 * Checks records arriving as a byte stream, in pieces of any size. Each problem is counted and described to
 * `onError`; after a sequence error the checker follows the sequence it sees (as websockify's load test does),
 * so one lost record is one error, not one per record after it.
 */
export class RecordChecker {
  onError;
  counts = { good: 0, errors: 0, nextSeq: 0 };
  #record = [];
  #inRecord = false;
  #stray = false;
  constructor(onError = () => {}) {
    this.onError = onError;
  }
  push(bytes) {
    for (const byte of bytes) {
      if (!this.#inRecord) {
        if (byte === CARET) {
          this.#inRecord = true;
          this.#stray = false;
          this.#record = [];
        } else if (!this.#stray) {
          // One error for a run of bytes outside records (up to the next '^'), not one per byte.
          this.#stray = true;
          this.#error(`byte ${byte} outside a record`);
        }
        continue;
      }
      if (byte === DOLLAR) {
        this.#inRecord = false;
        this.#check(this.#record);
        this.#record = [];
      } else if (byte === CARET) {
        this.#error("record cut short (a new one starts before its '$')");
        this.#record = [];
      } else if (this.#record.length > MAX_RECORD_DIGITS + 64) {
        this.#error(`record longer than ${MAX_RECORD_DIGITS} digits`);
        this.#inRecord = false;
        this.#stray = true; // the rest of it is skipped silently
        this.#record = [];
      } else {
        this.#record.push(byte);
      }
    }
  }
  /** Whether a record has begun and not ended (at the end of a test: a cut). */
  get partial() {
    return this.#inRecord;
  }
  #error(message) {
    this.counts.errors++;
    this.onError(message);
  }
  #check(body) {
    const fields = [];
    let field = "";
    let colons = 0;
    let digitsStart = -1;
    for (let i = 0; i < body.length; i++) {
      if (body[i] === COLON && colons < 3) {
        fields.push(field);
        field = "";
        colons++;
        if (colons === 3) {
          digitsStart = i + 1;
        }
      } else if (colons < 3) {
        field += String.fromCharCode(body[i]);
      }
    }
    if (colons < 3 || !fields.every((f) => /^\d{1,15}$/.test(f))) {
      this.#error("malformed record");
      return;
    }
    const [seq, length, checksum] = fields.map(Number);
    if (seq !== this.counts.nextSeq) {
      this.#error(`expected record ${this.counts.nextSeq}, got ${seq}`);
      this.counts.nextSeq = seq + 1;
      return;
    }
    this.counts.nextSeq++;
    const digits = body.length - digitsStart;
    if (digits !== length) {
      this.#error(`record ${seq}: expected ${length} digits, got ${digits}`);
      return;
    }
    let sum = 0;
    for (let i = digitsStart; i < body.length; i++) {
      const digit = body[i] - ZERO;
      if (digit < 0 || digit > 9) {
        this.#error(`record ${seq}: a byte that is not a digit`);
        return;
      }
      sum += digit;
    }
    if (sum !== checksum) {
      this.#error(`record ${seq}: checksum ${checksum} expected, digits add up to ${sum}`);
      return;
    }
    this.counts.good++;
  }
}
