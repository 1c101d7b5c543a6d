// Generated from web/telnet.ts by `deno task build:web`: edit that file, then run the task.
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
export declare const Cmd: {
  readonly SE: 240;
  readonly NOP: 241;
  readonly DM: 242;
  readonly BRK: 243;
  readonly IP: 244;
  readonly AO: 245;
  readonly AYT: 246;
  readonly EC: 247;
  readonly EL: 248;
  readonly GA: 249;
  readonly SB: 250;
  readonly WILL: 251;
  readonly WONT: 252;
  readonly DO: 253;
  readonly DONT: 254;
  readonly IAC: 255;
};
/** Telnet option codes this client knows by name. */
export declare const Opt: {
  readonly BINARY: 0;
  readonly ECHO: 1;
  readonly SGA: 3;
  readonly STATUS: 5;
  readonly TTYPE: 24;
  readonly NAWS: 31;
  readonly TSPEED: 32;
  readonly LFLOW: 33;
  readonly LINEMODE: 34;
  readonly XDISPLOC: 35;
  readonly OLD_ENVIRON: 36;
  readonly AUTHENTICATION: 37;
  readonly ENCRYPT: 38;
  readonly NEW_ENVIRON: 39;
};
/** Settings of a telnet client. */
export interface TelnetOptions {
  /**
   * The TERMINAL-TYPE answer.
   * @default "xterm"
   */
  terminalType?: string;
  /**
   * The window width in characters, for NAWS.
   * @default 80
   */
  cols?: number;
  /**
   * The window height in lines, for NAWS.
   * @default 24
   */
  rows?: number;
}
/** One telnet connection's client state. Feed it every byte the server sends, in order. */
export declare class TelnetClient {
  #private;
  /** The terminal type sent on request. */
  readonly terminalType: string;
  /** `send` is called with each answer to the server (already a complete telnet sequence). */
  constructor(send: (bytes: Uint8Array) => void, options?: TelnetOptions);
  /** The server echoes what is typed (it said WILL ECHO): the client must not echo locally. */
  get remoteEcho(): boolean;
  /** The server has sent telnet commands (so it is a telnet server, not a plain line service). */
  get negotiated(): boolean;
  /** Whether an option is in force on the server's side (`remote`) or ours (`local`). */
  enabled(option: number, side: "remote" | "local"): boolean;
  /**
   * Takes bytes from the server; answers negotiations through `send`; returns the data bytes for the terminal
   * (IAC IAC undoubled, CR NUL made CR, commands removed).
   */
  receive(bytes: Uint8Array): Uint8Array;
  /**
   * User data for the server: IAC doubled, and each Enter (CR) sent as CR NUL, or CR alone in BINARY mode
   * (RFC 854, 856). Text is sent as UTF-8.
   */
  encode(data: Uint8Array | string): Uint8Array;
  /** A new window size: remembered, and sent at once when NAWS is in force. */
  resize(cols: number, rows: number): void;
  /** The window size as NAWS sends it. */
  get size(): {
    cols: number;
    rows: number;
  };
}
