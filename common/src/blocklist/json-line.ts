// The JSON lines grammar (format `jsonl`), one line: one JSON object whose
// `cidr` field (else `ip`, or the field named by the `column` option) holds an
// address or CIDR, as Spamhaus's drop_v4.json / drop_v6.json:
//
//   {"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}
//   {"type":"metadata","timestamp":1716974498,"size":76868,"records":1478,...}
//
// An object without the field whose "type" is "metadata" is skipped. Pure.
import { type LineOutcome, lineError, SKIP } from './line-outcome.js';
import { parsePrefixToken } from './prefix-token.js';
import type { HostBitsPolicy } from './types.js';

const DEFAULT_FIELDS = ['cidr', 'ip'] as const;

function fieldList(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  return keys.length === 0 ? 'it has none' : `its fields are: ${keys.slice(0, 20).join(', ')}`;
}

export function parseJsonLine(text: string, field: string | undefined, hostBits: HostBitsPolicy): LineOutcome {
  const body = text.trim();
  if (body === '') return SKIP;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (e) {
    return lineError(
      'INVALID_JSON',
      `not valid JSON (${(e as Error).message}): each line must be one JSON object like {"cidr":"192.0.2.0/24"}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return lineError('INVALID_JSON', 'each line must be one JSON object like {"cidr":"192.0.2.0/24"}');
  }
  const obj = value as Record<string, unknown>;
  const names = field !== undefined ? [field] : DEFAULT_FIELDS;
  const name = names.find((n) => Object.hasOwn(obj, n));
  if (name === undefined) {
    if (obj.type === 'metadata') return SKIP;
    const wanted = names.map((n) => `"${n}"`).join(' or ');
    return lineError('MISSING_FIELD', `the object has no ${wanted} field; ${fieldList(obj)}`);
  }
  const v = obj[name];
  if (typeof v !== 'string') {
    return lineError('INVALID_CIDR', `"${name}" must be a string like "192.0.2.0/24", got ${v === null ? 'null' : typeof v}`);
  }
  return parsePrefixToken(v, hostBits);
}
