/**
 * RFC 6455 frame encoding: opcodes, close codes, frame headers and close payloads.
 *
 * Pure code, no I/O. The decoder lives in `receiver.ts`.
 *
 * @module
 */

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** Close status codes this proxy sends or inspects (RFC 6455 §7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidData: 1007,
  TooBig: 1009,
  InternalError: 1011,
} as const;

/** Control frames carry at most this many payload bytes (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** The largest header a server frame can need: 2 bytes + a 64-bit length. Unmasked. */
export const MAX_SERVER_HEADER = 10;

/** Length of an unmasked frame header for a payload of `length` bytes (minimal encoding). */
export function headerLength(length: number): number {
  return length < 126 ? 2 : length < 0x10000 ? 4 : 10;
}

/**
 * Writes an unmasked frame header so that it ends exactly at `end`, which lets a caller keep headroom in front
 * of a payload it already holds and send header + payload as one contiguous write.
 *
 * @returns the offset where the header starts.
 */
export function writeHeaderBefore(
  target: Uint8Array,
  end: number,
  opcode: number,
  length: number,
  fin = true,
): number {
  const start = end - headerLength(length);
  if (start < 0) throw new RangeError("not enough headroom for the frame header");
  target[start] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) {
    target[start + 1] = length;
  } else if (length < 0x10000) {
    target[start + 1] = 126;
    target[start + 2] = length >>> 8;
    target[start + 3] = length & 0xff;
  } else {
    target[start + 1] = 127;
    const view = new DataView(target.buffer, target.byteOffset + start + 2, 8);
    view.setUint32(0, Math.floor(length / 0x100000000));
    view.setUint32(4, length >>> 0);
  }
  return start;
}

/**
 * Encodes one whole frame. The server sends unmasked frames; clients (tests, the benchmark) pass a 4-byte `mask`.
 * The payload is copied, never modified.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array = new Uint8Array(0),
  options: { fin?: boolean; mask?: Uint8Array; rsv?: number } = {},
): Uint8Array {
  const { fin = true, mask, rsv = 0 } = options;
  const unmaskedHeader = headerLength(payload.length);
  const maskLength = mask ? 4 : 0;
  const frame = new Uint8Array(unmaskedHeader + maskLength + payload.length);
  writeHeaderBefore(frame, unmaskedHeader, opcode, payload.length, fin);
  frame[0] |= (rsv & 0x7) << 4;
  if (mask) {
    frame[1] |= 0x80;
    frame.set(mask.subarray(0, 4), unmaskedHeader);
    const body = frame.subarray(unmaskedHeader + 4);
    body.set(payload);
    applyMask(body, mask, 0);
  } else {
    frame.set(payload, unmaskedHeader);
  }
  return frame;
}

/**
 * XORs `data` in place with the 4-byte `mask`, starting at position `offset` of the mask cycle (a payload can
 * arrive in pieces). Works a 32-bit word at a time where the alignment allows.
 *
 * @returns the mask offset that follows the last byte.
 */
export function applyMask(data: Uint8Array, mask: Uint8Array, offset: number): number {
  const length = data.length;
  let i = 0;
  let phase = offset & 3;
  // Bytes up to a 4-byte boundary of the underlying buffer.
  while (i < length && ((data.byteOffset + i) & 3) !== 0) {
    data[i++] ^= mask[phase];
    phase = (phase + 1) & 3;
  }
  const words = (length - i) >>> 2;
  if (words > 0) {
    // The mask rotated to the current phase, as a little-endian word in memory order.
    const word = (mask[phase] | (mask[(phase + 1) & 3] << 8) | (mask[(phase + 2) & 3] << 16) |
      (mask[(phase + 3) & 3] << 24)) | 0;
    const view = new Int32Array(data.buffer, data.byteOffset + i, words);
    if (isLittleEndian) {
      for (let w = 0; w < words; w++) view[w] ^= word;
    } else {
      for (let w = 0; w < words; w++) view[w] ^= swap32(word);
    }
    i += words * 4;
  }
  while (i < length) {
    data[i++] ^= mask[phase];
    phase = (phase + 1) & 3;
  }
  return phase;
}

const isLittleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function swap32(x: number): number {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | ((x >>> 24) & 0xff);
}

const encoder = new TextEncoder();

/**
 * The payload of a close frame: a 2-byte big-endian code and a UTF-8 reason, cut so the frame stays within the
 * 125-byte control limit (never in the middle of a character).
 */
export function encodeClosePayload(code: number, reason = ""): Uint8Array {
  let reasonBytes = encoder.encode(reason);
  if (reasonBytes.length > MAX_CONTROL_PAYLOAD - 2) {
    let cut = MAX_CONTROL_PAYLOAD - 2;
    while (cut > 0 && (reasonBytes[cut] & 0xc0) === 0x80) cut--;
    reasonBytes = reasonBytes.subarray(0, cut);
  }
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}

/** True for close codes an endpoint may put on the wire (RFC 6455 §7.4; 1005, 1006 and 1015 are reserved). */
export function isSendableCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}
