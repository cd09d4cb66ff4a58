// Text from the control plane (comments, node names, labels, error
// messages quoting what someone stored) is printed to a terminal: escape
// sequences in it could move the cursor, rewrite earlier lines, retitle the
// window or hide text. Printed text keeps only what is printable: complete
// ESC/CSI/OSC sequences are removed, other control characters (C0, DEL, C1)
// and bidirectional overrides show as U+FFFD. JSON output escapes them
// instead (jsonSafe), so it stays exact and parseable. Pure.

const SEQUENCE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escape sequences are what this removes
  /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[PX^_][^\u001b]*(?:\u001b\\)?|\u001b[@-Z\\-_]|\u009b[0-?]*[ -/]*[@-~]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
const CONTROL_ONE_LINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** For multi-line output: newlines and tabs stay. */
export function sanitizeText(text: string): string {
  return text.replace(SEQUENCE, '').replace(CONTROL, '\ufffd');
}

/** For one table cell or one line: newlines and tabs show as U+FFFD too. */
export function sanitizeCell(text: string): string {
  return text.replace(SEQUENCE, '').replace(CONTROL_ONE_LINE, '\ufffd');
}

const JSON_UNSAFE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text with the characters JSON.stringify leaves raw but a terminal may act on escaped (\u009b, ...). */
export function jsonSafe(json: string): string {
  return json.replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
