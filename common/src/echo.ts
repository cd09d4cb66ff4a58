// User input quoted into a message: JSON-quoted (control characters escaped)
// and cut to a few dozen characters, with the full length said, so an error
// never sends a 200 KB request field back to its sender or into a log. Pure.

export const ECHO_MAX = 64;

/** `"203.0.113.0/33"`, or `"aaaa…" (200000 characters)` for long input. */
export function echo(input: string, max = ECHO_MAX): string {
  if (input.length <= max) return JSON.stringify(input);
  return `${JSON.stringify(input.slice(0, max))}… (${input.length} characters)`;
}
