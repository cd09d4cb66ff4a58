// The text grammar (formats `plain` and `range`), one line:
//
//   entry [anything]        entry = address | CIDR | start-end | start - end
//   start end [anything]    format `range` only: two bare addresses are a range
//
// Comments start with `#`, `;` or `//`, whole-line or trailing. After the entry,
// the rest of the line (Spamhaus's "; SBL256894", ipsum's count, a name) is
// ignored. Ranges become their minimal exact set of prefixes. Pure.
import { type Address, CidrError, formatAddress, parseAddress, unmapAddress } from '../cidr.js';
import { addressToBigint } from './address-int.js';
import { fastIpv4Key, v4KeyPrefix } from './fast-ipv4.js';
import { type LineOutcome, lineError, SKIP } from './line-outcome.js';
import { parsePrefixToken } from './prefix-token.js';
import { rangeToPrefixes } from './range-to-prefixes.js';
import type { HostBitsPolicy } from './types.js';

const TRAILING_COMMENT = /#|;|\/\//;
// "a-b", "a - b", "a -b", "a- b": the first dash after the first token.
const DASH_RANGE = /^(\S+?)\s*-\s*(\S+)/;
// What may start a range: address characters with a "." or ":" (so a name
// like evil-host.example is reported as not a CIDR, not as a broken range).
const RANGE_START = /^[0-9a-fA-F:./]*[.:][0-9a-fA-F:./]*$/;
const WHITESPACE = /\s+/;
const ADDRESS_CHARS = /^[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]*$/;

/** The line without its comment, trimmed. */
export function stripComment(text: string): string {
  const m = TRAILING_COMMENT.exec(text);
  return (m ? text.slice(0, m.index) : text).trim();
}

function bareAddress(token: string): Address | null {
  // Cheap refusal first: most second fields (ipsum's count, names) are not addresses.
  if (!ADDRESS_CHARS.test(token)) return null;
  try {
    return parseAddress(token, { unmap: false });
  } catch (e) {
    if (e instanceof CidrError) return null;
    throw e;
  }
}

function endpoint(token: string, shown: string): Address | string {
  const a = bareAddress(token);
  if (a) return a;
  return token.includes('/')
    ? `range "${shown}": the ends of a range are single addresses, "${token}" is a CIDR`
    : `range "${shown}": "${token}" is not an IP address`;
}

/** start..end inclusive as prefixes; IPv4-mapped ends are read as IPv4. */
export function parseRange(startText: string, endText: string, shown: string): LineOutcome {
  const s = endpoint(startText, shown);
  if (typeof s === 'string') return lineError('INVALID_RANGE', s);
  const e = endpoint(endText, shown);
  if (typeof e === 'string') return lineError('INVALID_RANGE', e);
  const us = unmapAddress(s);
  const ue = unmapAddress(e);
  const start = us ?? s;
  const end = ue ?? e;
  if (start.family !== end.family) {
    return lineError('INVALID_RANGE', `range "${shown}" mixes IPv${start.family} and IPv${end.family}: both ends must be of one family`);
  }
  if (addressToBigint(start.bytes) > addressToBigint(end.bytes)) {
    return lineError('INVALID_RANGE', `range "${shown}" starts after it ends: did you mean ${formatAddress(end)}-${formatAddress(start)}?`);
  }
  return { kind: 'prefixes', prefixes: rangeToPrefixes(start, end), unmapped: us !== null || ue !== null };
}

export type TextShape = 'dash-range' | 'pair' | 'single' | 'empty';

/** How a line reads, for format detection: a dash range or pair of addresses says `range`. */
export function textLineShape(text: string): TextShape {
  const body = stripComment(text);
  if (body === '') return 'empty';
  const m = DASH_RANGE.exec(body);
  if (m && bareAddress(m[1]!) && bareAddress(m[2]!)) return 'dash-range';
  const tokens = body.split(WHITESPACE, 2);
  if (tokens.length === 2 && bareAddress(tokens[0]!) && bareAddress(tokens[1]!)) return 'pair';
  return 'single';
}

const TAB = 9;
const SPACE = 32;
const HASH = 35;
const SEMICOLON = 59;
const DASH = 45;
const SLASH = 47;

/**
 * The common case without regular expressions: the line's first token is a
 * plain IPv4 address or CIDR (fast-ipv4.ts), ended by the end of the line, a
 * blank, `;` or `#`, and nothing after it could make the line a range (no
 * `-`; in `range`, no second field). Gives the prefix as fastIpv4Key's number
 * (the general path would give exactly that one prefix), or -1: take the
 * general path.
 */
export function fastTextLineKey(text: string, pairs: boolean): number {
  let i = 0;
  const n = text.length;
  while (i < n && (text.charCodeAt(i) === SPACE || text.charCodeAt(i) === TAB)) i++;
  const start = i;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === SPACE || c === TAB || c === SEMICOLON || c === HASH) break;
    if (c === DASH) return -1;
    i++;
  }
  const end = i;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === DASH) return -1;
    if (c === SEMICOLON || c === HASH || (c === SLASH && text.charCodeAt(i + 1) === SLASH)) break;
    if (pairs && c !== SPACE && c !== TAB) return -1;
  }
  return fastIpv4Key(text, start, end);
}

/** fastTextLineKey as the general path's outcome, or null. */
export function fastTextLine(text: string, pairs: boolean): LineOutcome | null {
  const k = fastTextLineKey(text, pairs);
  return k < 0 ? null : { kind: 'prefixes', prefixes: [v4KeyPrefix(k)], unmapped: false };
}

export function parseTextLine(text: string, pairs: boolean, hostBits: HostBitsPolicy): LineOutcome {
  return fastTextLine(text, pairs) ?? generalTextLine(text, pairs, hostBits);
}

/** Every line, by the grammar above (parseTextLine tries fastTextLine first; tests compare the two). */
export function generalTextLine(text: string, pairs: boolean, hostBits: HostBitsPolicy): LineOutcome {
  const body = stripComment(text);
  if (body === '') return SKIP;
  const m = DASH_RANGE.exec(body);
  if (m && RANGE_START.test(m[1]!)) return parseRange(m[1]!, m[2]!, `${m[1]}-${m[2]}`);
  const tokens = body.split(WHITESPACE, 2);
  const first = tokens[0]!;
  if (pairs && tokens.length === 2 && bareAddress(first) && bareAddress(tokens[1]!)) {
    return parseRange(first, tokens[1]!, `${first} ${tokens[1]}`);
  }
  return parsePrefixToken(first, hostBits);
}
