// What one line's grammar returns to the parser (which adds the line number
// and the text). Pure types and constructors.
import type { Prefix } from '../cidr.js';
import type { LineErrorReason } from './types.js';

export type LineOutcome =
  | { readonly kind: 'prefixes'; readonly prefixes: Prefix[]; readonly unmapped: boolean }
  | { readonly kind: 'skip' }
  | { readonly kind: 'error'; readonly reason: LineErrorReason; readonly message: string; readonly canonical?: string };

export const SKIP: LineOutcome = { kind: 'skip' };

export function lineError(reason: LineErrorReason, message: string, canonical?: string): LineOutcome {
  return canonical === undefined ? { kind: 'error', reason, message } : { kind: 'error', reason, message, canonical };
}

/** Whole-line comments, the same in every format: `#`, `;` or `//` first (after blanks). */
export function isCommentLine(trimmed: string): boolean {
  return trimmed.startsWith('#') || trimmed.startsWith(';') || trimmed.startsWith('//');
}
