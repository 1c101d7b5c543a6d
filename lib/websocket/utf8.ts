/**
 * A streaming UTF-8 validator: text messages arrive in pieces that can split a character, and checking them must
 * not allocate strings. It rejects what WHATWG/RFC 3629 reject: overlong forms, surrogates, code points past
 * U+10FFFF and stray continuation bytes.
 *
 * @module
 */

/** Validates UTF-8 fed in pieces. `push` returns false at the first invalid byte; `end` checks completeness. */
export class Utf8Validator {
  /** Continuation bytes still expected for the current character. */
  #needed = 0;
  /** Allowed range of the next continuation byte (narrowed right after some lead bytes). */
  #lower = 0x80;
  #upper = 0xbf;

  /** Feeds a piece; false means the stream is invalid UTF-8 (the validator must then be reset). */
  push(bytes: Uint8Array): boolean {
    let needed = this.#needed;
    let lower = this.#lower;
    let upper = this.#upper;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i];
      if (needed === 0) {
        if (byte < 0x80) continue;
        if (byte >= 0xc2 && byte <= 0xdf) {
          needed = 1;
        } else if (byte >= 0xe0 && byte <= 0xef) {
          if (byte === 0xe0) lower = 0xa0; // no overlong 3-byte forms
          if (byte === 0xed) upper = 0x9f; // no surrogates
          needed = 2;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          if (byte === 0xf0) lower = 0x90; // no overlong 4-byte forms
          if (byte === 0xf4) upper = 0x8f; // nothing past U+10FFFF
          needed = 3;
        } else {
          return false;
        }
        continue;
      }
      if (byte < lower || byte > upper) return false;
      lower = 0x80;
      upper = 0xbf;
      needed--;
    }
    this.#needed = needed;
    this.#lower = lower;
    this.#upper = upper;
    return true;
  }

  /** True if the stream so far ends on a character boundary. Resets the validator for the next message. */
  end(): boolean {
    const complete = this.#needed === 0;
    this.reset();
    return complete;
  }

  reset(): void {
    this.#needed = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
  }
}
