// Shared by the blocklist tests: parse a whole text and show results compactly.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { formatPrefix } from '../../common/src/cidr.js';
import { parseBlocklist } from '../../common/src/blocklist/parser.js';
import type { BlocklistOptions, BlocklistSummary, LineResult } from '../../common/src/blocklist/types.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'common', 'fixtures', 'blocklists');

export function fixture(name: string): string {
  return readFileSync(join(FIXTURES, name), 'utf8');
}

/** A result as one string: "5 1.10.16.0/20" or "5 HOST_BITS_SET did you mean ...". */
export function show(r: LineResult): string {
  return r.ok
    ? `${r.line} ${r.prefixes.map(formatPrefix).join(' ')}${r.unmapped ? ' (unmapped)' : ''}`
    : `${r.line} ${r.reason}: ${r.message}`;
}

export function assertLineOrder(results: readonly LineResult[]): void {
  for (let i = 1; i < results.length; i++) assert.ok(results[i]!.line > results[i - 1]!.line, `results out of line order at ${i}`);
}

export function parseAll(
  text: string,
  options: BlocklistOptions = {},
): { shown: string[]; results: LineResult[]; summary: BlocklistSummary } {
  const { results, summary } = parseBlocklist(text, options);
  assertLineOrder(results);
  return { shown: results.map(show), results, summary };
}
