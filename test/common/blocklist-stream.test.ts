// The parser as a stream: BOM, line endings, empty input, comments only,
// very long lines (capped and reported, never held whole), NUL bytes, the
// format detection (what decides, how much is held back, result order), and
// the options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DETECT_SAMPLE_LINES } from '../../common/src/blocklist/detect.js';
import { BlocklistError } from '../../common/src/blocklist/errors.js';
import { LineSplitter } from '../../common/src/blocklist/line-splitter.js';
import { BlocklistParser, DEFAULT_MAX_LINE_LENGTH, parseBlocklist } from '../../common/src/blocklist/parser.js';
import type { BlocklistOptions, LineResult } from '../../common/src/blocklist/types.js';
import { assertLineOrder, parseAll, show } from '../support/blocklist-helpers.js';

test('empty input, blank lines, comments only: nothing, counted, format by default', () => {
  for (const [text, lines] of [
    ['', 0],
    ['\n', 1],
    ['\r\n\r\n', 2],
    ['# only\n; comments\n// here\n\n', 4],
    ['\uFEFF# a BOM and a comment', 1],
  ] as const) {
    const { results, summary } = parseAll(text);
    assert.deepEqual(results, [], JSON.stringify(text));
    assert.deepEqual(
      summary,
      { format: 'plain', formatSource: 'default', lines, entries: 0, prefixes: 0, errors: 0, skipped: lines, unmapped: 0 },
      JSON.stringify(text),
    );
  }
});

test('a BOM, CRLF, a last line without newline, tabs and trailing spaces', () => {
  const { shown, summary } = parseAll('\uFEFF192.0.2.1\r\n\t198.51.100.0/24 \t\r\n2001:db8::1');
  assert.deepEqual(shown, ['1 192.0.2.1/32', '2 198.51.100.0/24', '3 2001:db8::1/128']);
  assert.equal(summary.lines, 3);
  // The BOM is not part of the first line's text.
  const bom = parseAll('\uFEFFhello\n').results[0]!;
  assert.ok(!bom.ok);
  assert.equal(bom.text, 'hello');
  assert.equal(bom.message.startsWith('"hello" is not a CIDR'), true);
  // pushLine drops a trailing "\r" too: not in the text, not counted in the length.
  const lp = new BlocklistParser({ format: 'plain', maxLineLength: 64 });
  const crError = lp.pushLine('hello\r')[0]!;
  assert.ok(!crError.ok);
  assert.equal(crError.text, 'hello');
  assert.deepEqual(lp.pushLine(`192.0.2.1${' '.repeat(55)}\r`).map(show), ['2 192.0.2.1/32']);
  // "\r\n" split across two chunks is still one line end.
  const p = new BlocklistParser();
  const got = [...p.pushText('192.0.2.1\r'), ...p.pushText('\n192.0.2.2\r'), ...p.pushText('\n'), ...p.end().results];
  assert.deepEqual(got.map(show), ['1 192.0.2.1/32', '2 192.0.2.2/32']);
});

test('mixed IPv4 and IPv6, with mapped addresses counted in the summary', () => {
  const { shown, summary } = parseAll('192.0.2.1\n2001:db8::/48\n::ffff:198.51.100.7\n203.0.113.0/24\n');
  assert.deepEqual(shown, ['1 192.0.2.1/32', '2 2001:db8::/48', '3 198.51.100.7/32 (unmapped)', '4 203.0.113.0/24']);
  assert.equal(summary.unmapped, 1);
  assert.equal(summary.entries, 4);
});

test('a line longer than the limit is reported with its length, the next line is read', () => {
  const long = `192.0.2.1 ${'x'.repeat(99_990)}`;
  for (const feed of ['whole', 'chunks'] as const) {
    const p = new BlocklistParser({ maxLineLength: 64 });
    const text = `192.0.2.7\n${long}\n198.51.100.1\n`;
    const got: LineResult[] = [];
    if (feed === 'whole') got.push(...p.pushText(text));
    else for (let i = 0; i < text.length; i += 1000) got.push(...p.pushText(text.slice(i, i + 1000)));
    const { results, summary } = p.end();
    got.push(...results);
    assert.equal(got.length, 3, feed);
    const e = got[1]!;
    assert.ok(!e.ok, feed);
    assert.equal(e.line, 2);
    assert.equal(e.reason, 'LINE_TOO_LONG');
    assert.equal(e.message, 'the line is 100000 characters long, more than the limit of 64: is this a list of addresses?');
    assert.equal(e.text, long.slice(0, 200));
    assert.equal(show(got[2]!), '3 198.51.100.1/32', feed);
    assert.equal(summary.errors, 1);
  }
  // Exactly at the limit (with or without "\r") is fine; one more is not.
  const at = `192.0.2.1${' '.repeat(64 - 9)}`;
  assert.deepEqual(parseAll(`${at}\r\n${at}\n${at} \n`, { maxLineLength: 64 }).shown, [
    '1 192.0.2.1/32',
    '2 192.0.2.1/32',
    '3 LINE_TOO_LONG: the line is 65 characters long, more than the limit of 64: is this a list of addresses?',
  ]);
  assert.equal(DEFAULT_MAX_LINE_LENGTH, 4096);
  assert.deepEqual(
    parseAll(`${'1'.repeat(4097)}\n`).results.map((r) => !r.ok && r.reason),
    ['LINE_TOO_LONG'],
  );
  // pushLine applies the same limit.
  const p = new BlocklistParser({ maxLineLength: 64 });
  const r = p.pushLine(long);
  assert.equal(r.length + p.end().results.length, 1);
});

test('a long line is never held whole: the splitter keeps at most 200 characters of it', () => {
  const s = new LineSplitter(64);
  const lines: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    s.push('y'.repeat(1000), (l) => lines.push(l.text));
    assert.ok((s as any).pending.length <= 200, `after ${i + 1} chunks`);
  }
  s.push('\n', (l) => lines.push(`${l.length} ${l.tooLong}`));
  assert.deepEqual(lines, ['10000000 true']);
});

test('NUL bytes make the line invalid, shown as \\0', () => {
  const { shown, results } = parseAll('192.0.2.1\n192.0.2.2\0\n\0\0\n198.51.100.1\n');
  assert.deepEqual(shown, [
    '1 192.0.2.1/32',
    '2 NUL_BYTE: the line contains a NUL byte: is this a binary or UTF-16 file? Lists must be UTF-8 text',
    '3 NUL_BYTE: the line contains a NUL byte: is this a binary or UTF-16 file? Lists must be UTF-8 text',
    '4 198.51.100.1/32',
  ]);
  const e = results[1]!;
  assert.ok(!e.ok);
  assert.equal(e.text, '192.0.2.2\\0');
});

test('detection: the first data line decides JSON lines and CSV; comments before it do not count', () => {
  const cases: Array<[string, BlocklistOptions, string, string | undefined]> = [
    ['# x\n{"cidr":"192.0.2.0/24"}\n', {}, 'jsonl', undefined],
    ['ipAddress,countryCode\n192.0.2.1,US\n', {}, 'csv', 'ipAddress'],
    ['; x\n\nIP,Categories\n192.0.2.1,"18,22"\n', {}, 'csv', 'IP'],
    // Commas but an address in the first line: not a CSV header (text; the line is invalid).
    ['192.0.2.1,US\n', {}, 'plain', undefined],
    // A column named: JSON lines or CSV only.
    ['addr\n192.0.2.1\n', { column: 'addr' }, 'csv', 'addr'],
    ['{"addr":"192.0.2.1"}\n', { column: 'addr' }, 'jsonl', 'addr'],
  ];
  for (const [text, options, format, column] of cases) {
    const { summary } = parseAll(text, options);
    assert.equal(summary.format, format, JSON.stringify(text));
    assert.equal(summary.formatSource, 'detected', JSON.stringify(text));
    assert.equal(summary.column, column, JSON.stringify(text));
  }
});

test('detection: text is `range` if one of the first data lines is a range, else `plain`', () => {
  const plain = Array.from({ length: 40 }, (_, i) => `192.0.2.${i}`);
  const at = (i: number, line: string): string => [...plain.slice(0, i), line, ...plain.slice(i)].join('\n');
  // A pair within the sample: range, and the pair is a range.
  const early = parseAll(at(DETECT_SAMPLE_LINES - 1, '198.51.100.1 198.51.100.2'));
  assert.equal(early.summary.format, 'range');
  assert.equal(early.shown[DETECT_SAMPLE_LINES - 1], `${DETECT_SAMPLE_LINES} 198.51.100.1/32 198.51.100.2/32`);
  // A pair after the sample: plain was decided, the second address is a trailing field.
  const late = parseAll(at(DETECT_SAMPLE_LINES, '198.51.100.1 198.51.100.2'));
  assert.equal(late.summary.format, 'plain');
  assert.equal(late.shown[DETECT_SAMPLE_LINES], `${DETECT_SAMPLE_LINES + 1} 198.51.100.1/32`);
  // A dash range decides range too, and is read wherever it is.
  assert.equal(parseAll(at(3, '198.51.100.1-198.51.100.2')).summary.format, 'range');
  const dashLate = parseAll(at(35, '198.51.100.1-198.51.100.2'));
  assert.equal(dashLate.summary.format, 'plain');
  assert.equal(dashLate.shown[35], '36 198.51.100.1/32 198.51.100.2/32');
  // ipsum's count and Spamhaus's SBL id are not ranges.
  assert.equal(parseAll('45.148.10.95\t10\n192.0.2.1 ; SBL1\n').summary.format, 'plain');
});

test('detection holds back at most the sample, and results keep line order', () => {
  const p = new BlocklistParser();
  assert.deepEqual(p.pushLine('# header'), []);
  assert.deepEqual(p.pushLine('192.0.2.0'), []);
  const bad = p.pushLine('192.0.2.1\0');
  assert.deepEqual(bad, [], 'an error during detection is held to keep the order');
  for (let i = 2; i < DETECT_SAMPLE_LINES - 1; i++) assert.deepEqual(p.pushLine(`192.0.2.${i}`), [], `line ${i}`);
  const released = p.pushLine('192.0.2.250');
  assert.equal(released.length, DETECT_SAMPLE_LINES);
  assertLineOrder(released);
  assert.equal(released[0]!.line, 2);
  assert.equal(released[1]!.ok, false);
  // Decided: each line now gives its result at once.
  assert.deepEqual(p.pushLine('198.51.100.1').map(show), [`${DETECT_SAMPLE_LINES + 2} 198.51.100.1/32`]);
  const { results, summary } = p.end();
  assert.deepEqual(results, []);
  assert.equal(summary.format, 'plain');
  assert.equal(summary.formatSource, 'detected');
});

test('a short file is decided at the end', () => {
  const p = new BlocklistParser();
  assert.deepEqual(p.pushText('192.0.2.1\n192.0.2.2\n'), []);
  const { results, summary } = p.end();
  assert.deepEqual(results.map(show), ['1 192.0.2.1/32', '2 192.0.2.2/32']);
  assert.equal(summary.formatSource, 'detected');
});

test('a forced format is used as is', () => {
  const { shown, summary } = parseAll('192.0.2.1\n', { format: 'jsonl' });
  assert.equal(summary.format, 'jsonl');
  assert.equal(summary.formatSource, 'option');
  assert.match(shown[0]!, /^1 INVALID_JSON: not valid JSON/);
  // Forced plain: no results are held back.
  const p = new BlocklistParser({ format: 'plain' });
  assert.deepEqual(p.pushLine('192.0.2.1').map(show), ['1 192.0.2.1/32']);
});

test('bad options and misuse are errors', () => {
  const bad: Array<[BlocklistOptions, RegExp]> = [
    [{ format: 'xml' as never }, /unknown format "xml": use auto, plain, range, jsonl or csv/],
    [{ format: 'plain', column: 'ip' }, /the column option names a CSV column or a JSON field/],
    [{ column: ' ' }, /the column option names a CSV column or a JSON field/],
    [{ hostBits: 'widen' as never }, /unknown hostBits "widen": use reject or mask/],
    [{ maxLineLength: 10 }, /maxLineLength must be an integer of at least 64, got 10/],
    [{ maxLineLength: 100.5 }, /maxLineLength must be an integer of at least 64/],
  ];
  for (const [options, message] of bad) {
    assert.throws(
      () => new BlocklistParser(options),
      (e: unknown) => e instanceof BlocklistError && e.reason === 'INVALID_OPTION' && message.test(e.message),
      JSON.stringify(options),
    );
  }
  const p = new BlocklistParser();
  p.pushText('192.0.2.1\n');
  assert.throws(() => p.pushLine('192.0.2.2'), /feed one parser with pushText or with pushLine, not both/);
  p.end();
  assert.throws(() => p.pushText('192.0.2.3\n'), /the parser has ended/);
  assert.deepEqual(p.end().results, [], 'a second end gives nothing new');
  assert.equal(parseBlocklist('192.0.2.1').summary.entries, 1);
});
