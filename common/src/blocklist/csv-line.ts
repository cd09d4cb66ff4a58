// The CSV grammar (format `csv`): RFC 4180 fields on one line (quoted fields
// with "" for a quote; a quoted field may not span lines), a header line, and
// one column that holds the address or CIDR. Pure.
import { BlocklistError } from './errors.js';
import { type LineOutcome, lineError } from './line-outcome.js';
import { parsePrefixToken } from './prefix-token.js';
import type { HostBitsPolicy } from './types.js';

/** Header names read without a `column` option (case-insensitive). */
export const ADDRESS_COLUMNS: readonly string[] = ['ip', 'ipaddress', 'ip_address', 'ip address', 'address', 'cidr', 'network', 'prefix'];

/** The fields of one CSV line, or a message saying what is wrong. */
export function splitCsvLine(line: string): string[] | string {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (line[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) return 'a quoted field is not closed (a field cannot span lines)';
        value += line.slice(i, q);
        if (line[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (i < line.length && line[i] !== ',') return `unexpected text after a closing quote at column ${i + 1}`;
      out.push(value);
    } else {
      const c = line.indexOf(',', i);
      const end = c < 0 ? line.length : c;
      out.push(line.slice(i, end).trim());
      i = end;
    }
    if (i >= line.length) return out;
    i++; // the comma
  }
}

export interface CsvColumn {
  readonly index: number;
  readonly name: string;
}

/** Picks the address column from the header. Throws BlocklistError naming the columns that exist. */
export function resolveColumn(headerLine: string, requested: string | undefined, lineNo: number): CsvColumn {
  const fields = splitCsvLine(headerLine);
  if (typeof fields === 'string') throw new BlocklistError('UNKNOWN_COLUMN', `the CSV header on line ${lineNo}: ${fields}`, lineNo);
  const names = fields.map((f) => f.trim());
  const shown = names.map((n) => JSON.stringify(n)).join(', ');
  if (requested !== undefined) {
    let index = names.indexOf(requested);
    if (index < 0) {
      const lower = requested.toLowerCase();
      const matches = names.flatMap((n, i) => (n.toLowerCase() === lower ? [i] : []));
      if (matches.length === 1) index = matches[0]!;
    }
    if (index < 0) {
      throw new BlocklistError(
        'UNKNOWN_COLUMN',
        `the CSV header (line ${lineNo}) has no column "${requested}"; its columns are: ${shown}`,
        lineNo,
      );
    }
    return { index, name: names[index]! };
  }
  const matches = names.flatMap((n, i) => (ADDRESS_COLUMNS.includes(n.toLowerCase()) ? [i] : []));
  if (matches.length !== 1) {
    throw new BlocklistError(
      'NO_ADDRESS_COLUMN',
      `${matches.length === 0 ? 'no' : 'more than one'} column of the CSV header (line ${lineNo}) looks like an address; name one with the column option; the columns are: ${shown}`,
      lineNo,
    );
  }
  return { index: matches[0]!, name: names[matches[0]!]! };
}

export function parseCsvLine(text: string, column: CsvColumn, hostBits: HostBitsPolicy): LineOutcome {
  const fields = splitCsvLine(text);
  if (typeof fields === 'string') return lineError('INVALID_CSV', fields);
  if (fields.length <= column.index) {
    return lineError('INVALID_CSV', `the row has ${fields.length} field(s); column "${column.name}" is field ${column.index + 1}`);
  }
  const value = fields[column.index]!.trim();
  if (value === '') return lineError('MISSING_FIELD', `column "${column.name}" is empty`);
  return parsePrefixToken(value, hostBits);
}
