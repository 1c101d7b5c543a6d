// Generated from web/telnet.ts by `deno task build:web`: edit that file, then run the task.
/* @ts-self-types="./telnet.d.ts" */
/**
 * The client side of the telnet protocol (RFC 854), as pure code: bytes from the server go in, the data to show
 * comes out, and the negotiation answers go through `send`. Used by the `wstelnet` page, and by anything else
 * that talks to a telnet server through `Websock`.
 *
 * Options this client agrees to:
 * - the server's ECHO (RFC 857: the server echoes, so the page does not) and SUPPRESS-GO-AHEAD (RFC 858);
 * - TERMINAL-TYPE (RFC 1091: answered with `terminalType`, "xterm" by default);
 * - NAWS (RFC 1073: the window size, sent again on every `resize`);
 * - BINARY (RFC 856) both ways, so UTF-8 passes unchanged.
 *
 * Every other option is refused, and nothing already in force is acknowledged again (RFC 854's rule against
 * negotiation loops). IAC (255) in data is doubled on the way out and undoubled on the way in, also across
 * message boundaries. A server that never negotiates (a plain line service) leaves `remoteEcho` false: the page
 * then echoes and edits a line locally and sends it on Enter.
 *
 * ```ts
 * const telnet = new TelnetClient((bytes) => ws.send(bytes), { cols: 80, rows: 24 });
 * ws.on("message", () => terminal.write(telnet.receive(ws.rQshiftBytes())));
 * terminal.onData((text) => ws.send(telnet.encodeInput(text)));
 * ```
 *
 * @module
 */
/** Telnet commands (RFC 854). */
export const Cmd = {
  SE: 240,
  NOP: 241,
  DM: 242,
  BRK: 243,
  IP: 244,
  AO: 245,
  AYT: 246,
  EC: 247,
  EL: 248,
  GA: 249,
  SB: 250,
  WILL: 251,
  WONT: 252,
  DO: 253,
  DONT: 254,
  IAC: 255,
};
/** Telnet option codes this client knows by name. */
export const Opt = {
  BINARY: 0,
  ECHO: 1,
  SGA: 3,
  STATUS: 5,
  TTYPE: 24,
  NAWS: 31,
  TSPEED: 32,
  LFLOW: 33,
  LINEMODE: 34,
  XDISPLOC: 35,
  OLD_ENVIRON: 36,
  AUTHENTICATION: 37,
  ENCRYPT: 38,
  NEW_ENVIRON: 39,
};
/** TERMINAL-TYPE subnegotiation codes. */
const TTYPE_IS = 0;
const TTYPE_SEND = 1;
/** Options the server may enable on its side (WILL X answered with DO X). */
const REMOTE_OPTIONS = new Set([Opt.ECHO, Opt.SGA, Opt.BINARY]);
/** Options this client enables on its side when asked (DO X answered with WILL X). */
const LOCAL_OPTIONS = new Set([Opt.TTYPE, Opt.NAWS, Opt.SGA, Opt.BINARY]);
/** A subnegotiation longer than this is cut (its end is still found; the surplus is dropped). */
const MAX_SUBNEGOTIATION = 1024;
const encoder = new TextEncoder();
/** One telnet connection's client state. Feed it every byte the server sends, in order. */
export class TelnetClient {
  /** The terminal type sent on request. */
  terminalType;
  #send;
  #cols;
  #rows;
  /** Options in force on the server's side (it said WILL, we said DO). */
  #remote = new Set();
  /** Options in force on our side (it said DO, we said WILL). */
  #local = new Set();
  #state = "data";
  #verb = 0;
  #sb = [];
  /** True once the server has sent any telnet command: it is a telnet server, not a plain line service. */
  #negotiated = false;
  /** `send` is called with each answer to the server (already a complete telnet sequence). */
  constructor(send, options = {}) {
    this.#send = send;
    this.terminalType = options.terminalType ?? "xterm";
    if (!/^[\x21-\x7e]{1,40}$/.test(this.terminalType)) {
      throw new RangeError(
        `terminalType: 1 to 40 visible ASCII characters, not '${this.terminalType}'`,
      );
    }
    this.#cols = checkSize("cols", options.cols ?? 80);
    this.#rows = checkSize("rows", options.rows ?? 24);
  }
  /** The server echoes what is typed (it said WILL ECHO): the client must not echo locally. */
  get remoteEcho() {
    return this.#remote.has(Opt.ECHO);
  }
  /** The server has sent telnet commands (so it is a telnet server, not a plain line service). */
  get negotiated() {
    return this.#negotiated;
  }
  /** Whether an option is in force on the server's side (`remote`) or ours (`local`). */
  enabled(option, side) {
    return (side === "remote" ? this.#remote : this.#local).has(option);
  }
  /**
   * Takes bytes from the server; answers negotiations through `send`; returns the data bytes for the terminal
   * (IAC IAC undoubled, CR NUL made CR, commands removed).
   */
  receive(bytes) {
    const out = new Uint8Array(bytes.length);
    let n = 0;
    for (const byte of bytes) {
      switch (this.#state) {
        case "cr":
          // CR NUL is a bare CR (RFC 854); CR LF and CR anything pass as they are.
          this.#state = "data";
          if (byte === 0) {
            break;
          }
        // falls through
        case "data":
          if (byte === Cmd.IAC) {
            this.#state = "iac";
          } else {
            out[n++] = byte;
            if (byte === 13 && !this.#remote.has(Opt.BINARY)) {
              this.#state = "cr";
            }
          }
          break;
        case "iac":
          this.#negotiated = true;
          this.#state = "data";
          if (byte === Cmd.IAC) {
            out[n++] = Cmd.IAC;
          } else if (byte >= Cmd.WILL) {
            this.#verb = byte;
            this.#state = "verb";
          } else if (byte === Cmd.SB) {
            this.#sb = [];
            this.#state = "sb";
          } // NOP, GA, DM, AYT...: nothing to show, nothing to answer.
          break;
        case "verb":
          this.#state = "data";
          this.#negotiate(this.#verb, byte);
          break;
        case "sb":
          if (byte === Cmd.IAC) {
            this.#state = "sb-iac";
          } else if (this.#sb.length < MAX_SUBNEGOTIATION) {
            this.#sb.push(byte);
          }
          break;
        case "sb-iac":
          if (byte === Cmd.IAC) {
            if (this.#sb.length < MAX_SUBNEGOTIATION) {
              this.#sb.push(Cmd.IAC);
            }
            this.#state = "sb";
          } else if (byte === Cmd.SE) {
            this.#state = "data";
            this.#subnegotiation(this.#sb);
          } else {
            // A command inside a subnegotiation without SE: end it there, as most clients do.
            this.#state = "data";
            this.#subnegotiation(this.#sb);
          }
          break;
      }
    }
    return out.subarray(0, n);
  }
  /**
   * User data for the server: IAC doubled, and each Enter (CR) sent as CR NUL, or CR alone in BINARY mode
   * (RFC 854, 856). Text is sent as UTF-8.
   */
  encode(data) {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    const binary = this.#local.has(Opt.BINARY);
    let extra = 0;
    for (const byte of bytes) {
      if (byte === Cmd.IAC || (byte === 13 && !binary)) {
        extra++;
      }
    }
    if (extra === 0) {
      return bytes;
    }
    const out = new Uint8Array(bytes.length + extra);
    let n = 0;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i];
      out[n++] = byte;
      if (byte === Cmd.IAC) {
        out[n++] = Cmd.IAC;
      } // CR LF already in the data stays CR LF.
      else if (byte === 13 && !binary) {
        if (bytes[i + 1] === 10) {
          out[n++] = bytes[++i];
        } else {
          out[n++] = 0;
        }
      }
    }
    return out.subarray(0, n);
  }
  /** A new window size: remembered, and sent at once when NAWS is in force. */
  resize(cols, rows) {
    this.#cols = checkSize("cols", cols);
    this.#rows = checkSize("rows", rows);
    if (this.#local.has(Opt.NAWS)) {
      this.#sendWindowSize();
    }
  }
  /** The window size as NAWS sends it. */
  get size() {
    return { cols: this.#cols, rows: this.#rows };
  }
  #negotiate(verb, option) {
    switch (verb) {
      case Cmd.WILL:
        if (this.#remote.has(option)) {
          return; // already in force: no answer
        }
        if (REMOTE_OPTIONS.has(option)) {
          this.#remote.add(option);
          this.#command(Cmd.DO, option);
        } else {
          this.#command(Cmd.DONT, option);
        }
        return;
      case Cmd.WONT:
        if (!this.#remote.delete(option)) {
          return;
        }
        this.#command(Cmd.DONT, option);
        return;
      case Cmd.DO:
        if (this.#local.has(option)) {
          return;
        }
        if (LOCAL_OPTIONS.has(option)) {
          this.#local.add(option);
          this.#command(Cmd.WILL, option);
          if (option === Opt.NAWS) {
            this.#sendWindowSize();
          }
        } else {
          this.#command(Cmd.WONT, option);
        }
        return;
      case Cmd.DONT:
        if (!this.#local.delete(option)) {
          return;
        }
        this.#command(Cmd.WONT, option);
        return;
    }
  }
  #subnegotiation(body) {
    if (body[0] === Opt.TTYPE && body[1] === TTYPE_SEND && this.#local.has(Opt.TTYPE)) {
      this.#send(
        Uint8Array.of(
          Cmd.IAC,
          Cmd.SB,
          Opt.TTYPE,
          TTYPE_IS,
          ...encoder.encode(this.terminalType),
          Cmd.IAC,
          Cmd.SE,
        ),
      );
    }
  }
  #sendWindowSize() {
    const values = [this.#cols >> 8, this.#cols & 255, this.#rows >> 8, this.#rows & 255];
    // A 255 in the sizes is doubled like any IAC inside a subnegotiation.
    const escaped = values.flatMap((value) => value === Cmd.IAC ? [Cmd.IAC, Cmd.IAC] : [value]);
    this.#send(Uint8Array.of(Cmd.IAC, Cmd.SB, Opt.NAWS, ...escaped, Cmd.IAC, Cmd.SE));
  }
  #command(verb, option) {
    this.#send(Uint8Array.of(Cmd.IAC, verb, option));
  }
}
function checkSize(name, value) {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name}: an integer from 1 to 65535, not ${value}`);
  }
  return value;
}
