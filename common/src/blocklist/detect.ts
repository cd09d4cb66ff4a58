// Format detection from the data lines (comments and blank lines are not
// looked at). The first data line decides JSON lines ("{") and CSV (a header:
// commas and no field that is an address). Otherwise the file is text, and it
// is `range` as soon as a sampled line is a range (a-b, or two addresses),
// `plain` if none of the first DETECT_SAMPLE_LINES is. Pure.
import { CidrError, parseCidr } from '../cidr.js';
import { splitCsvLine } from './csv-line.js';
import { textLineShape } from './text-line.js';

/** Data lines held back, at most, before deciding `plain`. */
export const DETECT_SAMPLE_LINES = 32;

function isPrefix(s: string): boolean {
  try {
    parseCidr(s);
    return true;
  } catch (e) {
    if (e instanceof CidrError) return false;
    throw e;
  }
}

/** A CSV header: at least two fields, none of them an address, CIDR or range. */
export function looksLikeCsvHeader(trimmed: string): boolean {
  if (!trimmed.includes(',')) return false;
  const fields = splitCsvLine(trimmed);
  if (typeof fields === 'string' || fields.length < 2) return false;
  return fields.every((f) => !isPrefix(f) && textLineShape(f) !== 'dash-range');
}

/**
 * What the first data line alone decides: `jsonl`, `csv`, or null (text: keep
 * sampling). With a `column` option the file must be JSON lines or CSV.
 */
export function formatFromFirstDataLine(trimmed: string, columnGiven: boolean): 'jsonl' | 'csv' | null {
  if (trimmed.startsWith('{')) return 'jsonl';
  if (columnGiven || looksLikeCsvHeader(trimmed)) return 'csv';
  return null;
}

/** True if a text line is a range (so the file is `range`, not `plain`). */
export function textLineSaysRange(trimmed: string): boolean {
  const shape = textLineShape(trimmed);
  return shape === 'dash-range' || shape === 'pair';
}
