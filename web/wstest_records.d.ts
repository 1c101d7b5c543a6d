// Generated from web/wstest_records.ts by `deno task build:web`: edit that file, then run the task.
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
export declare const MAX_RECORD_DIGITS = 1000000;
/**
 * Record `seq` with `length` digits taken from `random` (a function giving numbers in [0, 1), e.g.
 * Math.random).
 */
export declare function makeRecord(seq: number, length: number, random: () => number): Uint8Array;
/** What the checker found so far. */
export interface RecordCounts {
  /** Records that arrived whole, in order, with the right length and checksum. */
  good: number;
  /** Every problem found (each also reported to `onError`). */
  errors: number;
  /** The next sequence number expected. */
  nextSeq: number;
}
/**
 * Checks records arriving as a byte stream, in pieces of any size. Each problem is counted and described to
 * `onError`; after a sequence error the checker follows the sequence it sees (as websockify's load test does),
 * so one lost record is one error, not one per record after it.
 */
export declare class RecordChecker {
  #private;
  readonly onError: (message: string) => void;
  readonly counts: RecordCounts;
  constructor(onError?: (message: string) => void);
  push(bytes: Uint8Array): void;
  /** Whether a record has begun and not ended (at the end of a test: a cut). */
  get partial(): boolean;
}
