// The blocklist parser's options from a request (ImportRulesHeader,
// RuleList): the format enum and the column, validated at the edge, and the
// parser's whole-file errors (BlocklistError) as catalogued FleetwallErrors.
import { BlocklistError } from '../../../common/src/blocklist/errors.js';
import { BlocklistParser } from '../../../common/src/blocklist/parser.js';
import type { BlocklistFormat as ParserFormat, BlocklistSummary } from '../../../common/src/blocklist/types.js';
import { BlocklistFormat } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';

const MAX_COLUMN_LENGTH = 128;

const TO_PARSER: Readonly<Record<number, ParserFormat | 'auto'>> = {
  [BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED]: 'auto',
  [BlocklistFormat.BLOCKLIST_FORMAT_PLAIN]: 'plain',
  [BlocklistFormat.BLOCKLIST_FORMAT_RANGE]: 'range',
  [BlocklistFormat.BLOCKLIST_FORMAT_JSONL]: 'jsonl',
  [BlocklistFormat.BLOCKLIST_FORMAT_CSV]: 'csv',
};

const FROM_PARSER: Readonly<Record<ParserFormat, BlocklistFormat>> = {
  plain: BlocklistFormat.BLOCKLIST_FORMAT_PLAIN,
  range: BlocklistFormat.BLOCKLIST_FORMAT_RANGE,
  jsonl: BlocklistFormat.BLOCKLIST_FORMAT_JSONL,
  csv: BlocklistFormat.BLOCKLIST_FORMAT_CSV,
};

/** The short names the CLI and HTTP query parameters use. */
export const FORMAT_NAMES = ['auto', 'plain', 'range', 'jsonl', 'csv'] as const;

export interface BlocklistRequestOptions {
  readonly format: number;
  readonly column: string;
}

/** Checks format and column; returns a parser for them (throws catalogued errors). */
export function blocklistParser(o: BlocklistRequestOptions, field: string): BlocklistParser {
  const format = TO_PARSER[o.format];
  if (format === undefined) {
    throw new FleetwallError(
      'INVALID_ENUM',
      `${field}.format ${o.format} is not a known value; use one of ${Object.keys(BlocklistFormat)
        .filter((k) => k.startsWith('BLOCKLIST_FORMAT_') && k !== 'BLOCKLIST_FORMAT_UNSPECIFIED')
        .join(', ')}, or leave it unset to detect it`,
      { field: `${field}.format`, value: String(o.format) },
    );
  }
  if (o.column.length > MAX_COLUMN_LENGTH || /[\p{Cc}]/u.test(o.column)) {
    throw new FleetwallError(
      'INVALID_FORMAT_OPTION',
      `${field}.column must be a column header of at most ${MAX_COLUMN_LENGTH} characters without control characters`,
      { field: `${field}.column` },
    );
  }
  try {
    return new BlocklistParser({ format, ...(o.column !== '' ? { column: o.column } : {}) });
  } catch (e) {
    throw blocklistFailure(e, field);
  }
}

/** A BlocklistError as the catalogue's error (anything else is rethrown as is). */
export function blocklistFailure(e: unknown, field: string): unknown {
  if (!(e instanceof BlocklistError)) return e;
  const at = e.line > 0 ? `line ${e.line}: ` : '';
  switch (e.reason) {
    case 'UNKNOWN_COLUMN':
      return new FleetwallError('UNKNOWN_COLUMN', `${at}${e.message}`, { field: `${field}.column`, line: String(e.line) });
    case 'NO_ADDRESS_COLUMN':
      return new FleetwallError('NO_ADDRESS_COLUMN', `${at}${e.message}`, { field: `${field}.column`, line: String(e.line) });
    default:
      return new FleetwallError('INVALID_FORMAT_OPTION', `${field}: ${e.message}`, { field });
  }
}

/** The format a parse used, as the API's enum, and whether it was detected. */
export function formatOfSummary(s: BlocklistSummary): { format: BlocklistFormat; formatDetected: boolean; column: string } {
  return { format: FROM_PARSER[s.format], formatDetected: s.formatSource === 'detected', column: s.column ?? '' };
}

/** "csv", "plain", ... for messages and audit rows. */
export function formatName(f: BlocklistFormat): string {
  return TO_PARSER[f] ?? 'auto';
}
