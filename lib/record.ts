/**
 * Session recording (`--record FILE`) in noVNC's playback format: one JavaScript file `FILE.<n>` per WebSocket
 * session, `n` being the server's connection counter.
 *
 *     var VNC_frame_data = [
 *     '{2{RFB 003.008\n',          <- target -> client, 2 ms after the session started
 *     '}15}\x01',                  <- client -> target (decoded payload)
 *     'EOF'];
 *
 * Payload bytes are written as Latin-1 characters escaped like Python's `unicode_escape` plus `'` -> `\'`, so the
 * files are byte-identical to Python websockify's.
 *
 * @module
 */

const HEX = "0123456789abcdef";

/** A payload as the body of a single-quoted JS string literal, escaped as Python websockify does. */
export function escapeRecordPayload(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) {
    if (byte === 0x5c) out += "\\\\";
    else if (byte === 0x27) out += "\\'";
    else if (byte === 0x0a) out += "\\n";
    else if (byte === 0x0d) out += "\\r";
    else if (byte === 0x09) out += "\\t";
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += "\\x" + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

const FLUSH_AT = 64 * 1024;
const encoder = new TextEncoder();

/** Writes one session's record file. Entries are buffered and flushed in 64 KiB pieces. */
export class SessionRecorder {
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #started = performance.now();
  #pending = "";
  #closed = false;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Creates `<base>.<n>` and writes the opening line. The file must not exist yet: an existing file is never
   * overwritten, and a symbolic link (even a dangling one) is never followed (O_CREAT|O_EXCL refuses both).
   * Throws with a clear message otherwise.
   */
  static open(base: string, n: number): SessionRecorder {
    const path = `${base}.${n}`;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { write: true, createNew: true });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        throw new Error(`'${path}' already exists (not overwritten, links not followed)`);
      }
      throw error;
    }
    const recorder = new SessionRecorder(path, file);
    recorder.#pending = "var VNC_frame_data = [\n";
    return recorder;
  }

  /** Data from the target to the client. */
  fromTarget(bytes: Uint8Array): void {
    this.#entry("{", bytes);
  }

  /** Data from the client to the target. */
  fromClient(bytes: Uint8Array): void {
    this.#entry("}", bytes);
  }

  #entry(direction: "{" | "}", bytes: Uint8Array): void {
    if (this.#closed) return;
    const ms = Math.floor(performance.now() - this.#started);
    this.#pending += `'${direction}${ms}${direction}${escapeRecordPayload(bytes)}',\n`;
    if (this.#pending.length >= FLUSH_AT) this.#flush();
  }

  #flush(): void {
    if (this.#pending === "") return;
    const bytes = encoder.encode(this.#pending);
    this.#pending = "";
    for (let offset = 0; offset < bytes.length;) {
      offset += this.#file.writeSync(bytes.subarray(offset));
    }
  }

  /** Writes the closing `'EOF'];` and closes the file. */
  close(): void {
    if (this.#closed) return;
    this.#pending += "'EOF'];\n";
    this.#flush();
    this.#closed = true;
    this.#file.close();
  }
}
