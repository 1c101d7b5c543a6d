/**
 * Client-sent text made safe for where it goes: a log line or a header value (`escapeControls`), an HTML page
 * (`escapeHtml`).
 *
 *     escapeControls("GET /\x1b[2J");  // "GET /\\x1b[2J"
 *     escapeHtml("<a href='x'>");      // "&#60;a href=&#39;x&#39;&#62;"
 *
 * @module
 */

/**
 * Characters that never appear raw in a log line or a header value: C0 controls, DEL, C1 controls, the Unicode line and paragraph
 * separators, and the bidirectional embedding/override/isolate controls (they reorder what a terminal shows).
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * A line with its control characters made visible: `\n`, `\r`, `\t`, `\xNN` (other C0, DEL, C1), `\uNNNN`
 * (U+2028, U+2029, bidi controls). Everything else, backslashes included, is kept as is.
 */
export function escapeControls(line: string): string {
  return line.replace(CONTROL, (c) => {
    const short = SHORT_ESCAPES[c];
    if (short) return short;
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** Text for HTML element content or a quoted attribute value: `& < > " '` as numeric character references. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
