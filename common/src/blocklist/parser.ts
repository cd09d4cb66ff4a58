// The blocklist parser: text chunks (pushText) or lines (pushLine) in, per-line
// results out, a summary at the end. Streaming with bounded memory: lines are
// capped (LINE_TOO_LONG), and while the format is being detected at most
// DETECT_SAMPLE_LINES data lines are held back. Results come in line order;
// lines that carry nothing (blank, comments, CSV header, JSON metadata) give
// no result and are counted as skipped. Pure: no I/O.
//
//   const p = new BlocklistParser({ format: 'auto' });
//   for await (const chunk of decodedStream) handle(p.pushText(chunk));
//   const { results, summary } = p.end();
//
// A caller that takes IPv4 prefixes as numbers passes a V4Sink to pushText
// and end(): a plain/range line whose entry is one plain IPv4 address or CIDR
// (the fast path of text-line.ts) then goes to the sink as fastIpv4Key's
// number, at once, instead of becoming a result (no objects per line: a
// million-line list in a few hundred ms); every other line is a result as
// before. Counts and the summary are the same either way.
import { type CsvColumn, parseCsvLine, resolveColumn } from './csv-line.js';
import { DETECT_SAMPLE_LINES, formatFromFirstDataLine, textLineSaysRange } from './detect.js';
import { BlocklistError } from './errors.js';
import { parseJsonLine } from './json-line.js';
import { isCommentLine, type LineOutcome } from './line-outcome.js';
import { KEPT_OF_LONG_LINE, LineSplitter, type RawLine } from './line-splitter.js';
import { fastTextLineKey, parseTextLine } from './text-line.js';
import type { BlocklistFormat, BlocklistOptions, BlocklistSummary, HostBitsPolicy, LineErrorReason, LineResult } from './types.js';

export const DEFAULT_MAX_LINE_LENGTH = 4096;
const FORMATS: readonly string[] = ['auto', 'plain', 'range', 'jsonl', 'csv'];

/** Receives a line's one IPv4 prefix as fastIpv4Key's number (address * 64 + length) and its line number. */
export type V4Sink = (key: number, line: number) => void;

/** A data line held back during detection, or an error result held to keep line order. */
type Held = { readonly line: number; readonly text: string } | { readonly line: number; readonly result: LineResult };

function shownText(text: string): string {
  const cut = text.length > KEPT_OF_LONG_LINE ? text.slice(0, KEPT_OF_LONG_LINE) : text;
  return cut.includes('\0') ? cut.replaceAll('\0', '\\0') : cut;
}

export class BlocklistParser {
  private readonly hostBits: HostBitsPolicy;
  private readonly maxLineLength: number;
  private readonly column: string | undefined;
  private format: BlocklistFormat | null = null;
  private formatSource: BlocklistSummary['formatSource'] = 'default';
  private csvColumn: CsvColumn | null = null;
  private held: Held[] = [];
  private heldData = 0;
  private readonly splitter: LineSplitter;
  private input: 'none' | 'text' | 'lines' = 'none';
  private ended = false;
  private lineNo = 0;
  private entries = 0;
  private prefixes = 0;
  private errors = 0;
  private skipped = 0;
  private unmapped = 0;
  /** The sink of the pushText / end call in progress. */
  private v4: V4Sink | undefined;

  constructor(options: BlocklistOptions = {}) {
    const format = options.format ?? 'auto';
    if (!FORMATS.includes(format)) {
      throw new BlocklistError('INVALID_OPTION', `unknown format "${format}": use auto, plain, range, jsonl or csv`, 0);
    }
    if (options.column !== undefined && (options.column.trim() === '' || format === 'plain' || format === 'range')) {
      throw new BlocklistError(
        'INVALID_OPTION',
        'the column option names a CSV column or a JSON field: use it with format auto, csv or jsonl',
        0,
      );
    }
    const hostBits = options.hostBits ?? 'reject';
    if (hostBits !== 'reject' && hostBits !== 'mask') {
      throw new BlocklistError('INVALID_OPTION', `unknown hostBits "${String(hostBits)}": use reject or mask`, 0);
    }
    const max = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
    if (!Number.isInteger(max) || max < 64) {
      throw new BlocklistError('INVALID_OPTION', `maxLineLength must be an integer of at least 64, got ${max}`, 0);
    }
    this.hostBits = hostBits;
    this.maxLineLength = max;
    this.column = options.column;
    this.splitter = new LineSplitter(max);
    if (format !== 'auto') {
      this.format = format;
      this.formatSource = 'option';
    }
  }

  /** Feeds text with any chunk boundaries. Returns the results that became ready. */
  pushText(chunk: string, v4?: V4Sink): LineResult[] {
    this.use('text');
    const out: LineResult[] = [];
    this.v4 = v4;
    try {
      this.splitter.push(chunk, (l) => this.take(l, out));
    } finally {
      this.v4 = undefined;
    }
    return out;
  }

  /** Feeds one line (without its newline; a trailing "\r" is dropped). */
  pushLine(line: string): LineResult[] {
    this.use('lines');
    const out: LineResult[] = [];
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    const tooLong = text.length > this.maxLineLength;
    this.take({ text: tooLong ? text.slice(0, KEPT_OF_LONG_LINE) : text, length: text.length, tooLong }, out);
    return out;
  }

  /** Ends the input: the remaining results and the summary. */
  end(v4?: V4Sink): { results: LineResult[]; summary: BlocklistSummary } {
    const out: LineResult[] = [];
    if (!this.ended) {
      this.ended = true;
      this.v4 = v4;
      try {
        if (this.input === 'text') this.splitter.end((l) => this.take(l, out));
        if (this.format === null) this.decide('plain', this.heldData > 0 ? 'detected' : 'default', out);
      } finally {
        this.v4 = undefined;
      }
    }
    return { results: out, summary: this.summary() };
  }

  private summary(): BlocklistSummary {
    const column = this.csvColumn?.name ?? (this.format === 'jsonl' ? this.column : undefined);
    return {
      format: this.format ?? 'plain',
      formatSource: this.formatSource,
      ...(column !== undefined ? { column } : {}),
      lines: this.lineNo,
      entries: this.entries,
      prefixes: this.prefixes,
      errors: this.errors,
      skipped: this.skipped,
      unmapped: this.unmapped,
    };
  }

  private use(kind: 'text' | 'lines'): void {
    if (this.ended) throw new BlocklistError('INVALID_OPTION', 'the parser has ended: make a new one for the next list', this.lineNo);
    if (this.input !== 'none' && this.input !== kind) {
      throw new BlocklistError('INVALID_OPTION', 'feed one parser with pushText or with pushLine, not both', this.lineNo);
    }
    this.input = kind;
  }

  private take(raw: RawLine, out: LineResult[]): void {
    const line = ++this.lineNo;
    const text = line === 1 && raw.text.charCodeAt(0) === 0xfeff ? raw.text.slice(1) : raw.text;
    if (raw.tooLong) {
      this.fail(
        line,
        'LINE_TOO_LONG',
        `the line is ${raw.length} characters long, more than the limit of ${this.maxLineLength}: is this a list of addresses?`,
        text,
        out,
      );
      return;
    }
    if (text.includes('\0')) {
      this.fail(line, 'NUL_BYTE', 'the line contains a NUL byte: is this a binary or UTF-16 file? Lists must be UTF-8 text', text, out);
      return;
    }
    const trimmed = text.trim();
    if (trimmed === '' || isCommentLine(trimmed)) {
      this.skipped++;
      return;
    }
    if (this.format === null) this.detect(line, text, trimmed, out);
    else this.parse(line, text, out);
  }

  private detect(line: number, text: string, trimmed: string, out: LineResult[]): void {
    if (this.heldData === 0) {
      const f = formatFromFirstDataLine(trimmed, this.column !== undefined);
      if (f !== null) {
        this.decide(f, 'detected', out);
        this.parse(line, text, out);
        return;
      }
    }
    this.held.push({ line, text });
    this.heldData++;
    if (textLineSaysRange(trimmed)) this.decide('range', 'detected', out);
    else if (this.held.length >= DETECT_SAMPLE_LINES) this.decide('plain', 'detected', out);
  }

  private decide(format: BlocklistFormat, source: BlocklistSummary['formatSource'], out: LineResult[]): void {
    this.format = format;
    this.formatSource = source;
    const held = this.held;
    this.held = [];
    for (const h of held) {
      if ('result' in h) out.push(h.result);
      else this.parse(h.line, h.text, out);
    }
  }

  private parse(line: number, text: string, out: LineResult[]): void {
    let o: LineOutcome;
    switch (this.format) {
      case 'plain':
      case 'range':
        if (this.v4) {
          const key = fastTextLineKey(text, this.format === 'range');
          if (key >= 0) {
            this.entries++;
            this.prefixes++;
            this.v4(key, line);
            return;
          }
        }
        o = parseTextLine(text, this.format === 'range', this.hostBits);
        break;
      case 'jsonl':
        o = parseJsonLine(text, this.column, this.hostBits);
        break;
      case 'csv':
        if (this.csvColumn === null) {
          this.csvColumn = resolveColumn(text, this.column, line);
          this.skipped++;
          return;
        }
        o = parseCsvLine(text, this.csvColumn, this.hostBits);
        break;
      default:
        throw new Error('parse before the format is known');
    }
    if (o.kind === 'skip') this.skipped++;
    else if (o.kind === 'error') this.fail(line, o.reason, o.message, text, out, o.canonical);
    else {
      this.entries++;
      this.prefixes += o.prefixes.length;
      if (o.unmapped) this.unmapped++;
      out.push({ line, ok: true, prefixes: o.prefixes, unmapped: o.unmapped });
    }
  }

  private fail(line: number, reason: LineErrorReason, message: string, text: string, out: LineResult[], canonical?: string): void {
    this.errors++;
    const result: LineResult = {
      line,
      ok: false,
      reason,
      message,
      text: shownText(text),
      ...(canonical !== undefined ? { canonical } : {}),
    };
    if (this.format === null) this.held.push({ line, result });
    else out.push(result);
  }
}

/** The whole text at once: every result and the summary. */
export function parseBlocklist(text: string, options: BlocklistOptions = {}): { results: LineResult[]; summary: BlocklistSummary } {
  const p = new BlocklistParser(options);
  const results = p.pushText(text);
  const end = p.end();
  return { results: results.concat(end.results), summary: end.summary };
}
