/**
 * The `base64` subprotocol of old websockify clients: every message is base64 text. Messages arrive in pieces
 * that can split a 4-character quantum, so decoding carries up to 3 characters between pieces. Pure code.
 *
 * @module
 */

// Uint8Array.fromBase64 / toBase64 (TC39, shipped in V8) are not yet in TypeScript's lib for this Deno.
const fromBase64 = (Uint8Array as unknown as { fromBase64(text: string): Uint8Array }).fromBase64;

/** Encodes bytes as standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  return (bytes as unknown as { toBase64(): string }).toBase64();
}

const ascii = new TextDecoder("latin1");

/** Decodes one base64 message fed in pieces. Throws `SyntaxError` on characters outside the alphabet. */
export class Base64MessageDecoder {
  #carry = "";

  /**
   * Decodes the complete quanta in `piece` (plus any carried characters) and keeps the rest for later. At the
   * message end everything is decoded; missing padding is accepted, as browsers' `atob` does.
   */
  push(piece: Uint8Array, messageEnd: boolean): Uint8Array {
    const text = this.#carry + ascii.decode(piece);
    const usable = messageEnd ? text.length : text.length - (text.length % 4);
    this.#carry = text.slice(usable);
    return usable === 0 ? new Uint8Array(0) : fromBase64(text.slice(0, usable));
  }
}
