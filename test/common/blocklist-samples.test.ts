// Table tests over the sample files (test/common/fixtures/blocklists/, written
// by hand in the shape of the public lists): the detected format, every
// prefix with its line number, and the same results whatever the line endings,
// a BOM, the chunking, or when the format is forced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { formatPrefix } from '../../common/src/cidr.js';
import { v4KeyPrefix } from '../../common/src/blocklist/fast-ipv4.js';
import { BlocklistParser } from '../../common/src/blocklist/parser.js';
import { localOverlaps, specialOverlaps } from '../../common/src/blocklist/special-ranges.js';
import type { BlocklistFormat, LineResult } from '../../common/src/blocklist/types.js';
import { FIXTURES, fixture, parseAll, show } from '../support/blocklist-helpers.js';

interface Sample {
  readonly file: string;
  readonly format: BlocklistFormat;
  readonly column?: string;
  readonly lines: number;
  readonly skipped: number;
  readonly results: readonly string[];
}

const SAMPLES: readonly Sample[] = [
  {
    file: 'spamhaus-drop.txt',
    format: 'plain',
    lines: 8,
    skipped: 4,
    results: ['5 1.10.16.0/20', '6 192.0.2.0/24', '7 198.51.100.0/25', '8 203.0.113.64/26'],
  },
  {
    file: 'spamhaus-dropv6.txt',
    format: 'plain',
    lines: 7,
    skipped: 4,
    results: ['5 2001:db8:1000::/36', '6 2001:db8:4400::/40', '7 3fff:a00::/24'],
  },
  {
    file: 'spamhaus-drop-v4.jsonl',
    format: 'jsonl',
    lines: 5,
    skipped: 1,
    results: ['1 1.10.16.0/20', '2 192.0.2.0/24', '3 198.51.100.0/25', '4 203.0.113.64/26'],
  },
  {
    file: 'spamhaus-drop-v6.jsonl',
    format: 'jsonl',
    lines: 4,
    skipped: 1,
    results: ['1 2001:db8:1000::/36', '2 2001:db8:4400::/40', '3 3fff:a00::/24'],
  },
  {
    file: 'ipsum.txt',
    format: 'plain',
    lines: 15,
    skipped: 7,
    results: [
      '8 45.148.10.95/32',
      '9 192.0.2.17/32',
      '10 198.51.100.201/32',
      '11 203.0.113.9/32',
      '12 192.0.2.130/32',
      '13 203.0.113.254/32',
      '14 198.51.100.7/32',
      '15 192.0.2.3/32',
    ],
  },
  {
    file: 'blocklist-de-all.txt',
    format: 'plain',
    lines: 7,
    skipped: 0,
    results: [
      '1 192.0.2.1/32',
      '2 192.0.2.45/32',
      '3 198.51.100.23/32',
      '4 2001:db8:85a3::8a2e:370:7334/128',
      '5 203.0.113.200/32',
      '6 2001:db8:4:1::25/128',
      '7 198.51.100.160/32',
    ],
  },
  {
    file: 'firehol-level1.netset',
    format: 'plain',
    lines: 48,
    skipped: 33,
    results: [
      '34 0.0.0.0/8',
      '35 1.10.16.0/20',
      '36 10.0.0.0/8',
      '37 45.148.10.95/32',
      '38 100.64.0.0/10',
      '39 127.0.0.0/8',
      '40 169.254.0.0/16',
      '41 172.16.0.0/12',
      '42 192.0.0.0/24',
      '43 192.0.2.0/24',
      '44 192.168.0.0/16',
      '45 198.18.0.0/15',
      '46 198.51.100.0/24',
      '47 203.0.113.0/24',
      '48 224.0.0.0/3',
    ],
  },
  {
    file: 'ranges-dash.txt',
    format: 'range',
    lines: 8,
    skipped: 2,
    results: [
      '3 192.0.2.0/24',
      '4 198.51.100.5/32 198.51.100.6/31 198.51.100.8/31 198.51.100.10/32',
      '5 203.0.113.7/32',
      '6 203.0.113.32/27 203.0.113.64/27',
      '7 2001:db8::/112',
      '8 2001:db8:1::10/124',
    ],
  },
  {
    file: 'ranges-pairs.txt',
    format: 'range',
    lines: 5,
    skipped: 1,
    results: [
      '2 192.0.2.0/25',
      '3 198.51.100.1/32 198.51.100.2/31 198.51.100.4/30 198.51.100.8/29 198.51.100.16/29 198.51.100.24/30 198.51.100.28/31 198.51.100.30/32',
      '4 203.0.113.128/25',
      '5 2001:db8::1/128 2001:db8::2/127 2001:db8::4/127 2001:db8::6/128',
    ],
  },
  {
    file: 'abuseipdb-blacklist.csv',
    format: 'csv',
    column: 'ipAddress',
    lines: 5,
    skipped: 1,
    results: ['2 192.0.2.44/32', '3 198.51.100.9/32', '4 2001:db8::dead:beef/128', '5 203.0.113.77/32'],
  },
  {
    file: 'abuseipdb-bulk-report.csv',
    format: 'csv',
    column: 'IP',
    lines: 4,
    skipped: 1,
    results: ['2 192.0.2.61/32', '3 198.51.100.14/32', '4 203.0.113.3/32'],
  },
];

test('every sample file is in the table', () => {
  assert.deepEqual(readdirSync(FIXTURES).sort(), SAMPLES.map((s) => s.file).sort());
});

test('sample files: detected format, prefixes and line numbers', () => {
  for (const s of SAMPLES) {
    const { shown, summary } = parseAll(fixture(s.file));
    assert.deepEqual(shown, s.results, s.file);
    const prefixes = s.results.reduce((n, r) => n + r.split(' ').length - 1, 0);
    assert.deepEqual(
      summary,
      {
        format: s.format,
        formatSource: 'detected',
        ...(s.column !== undefined ? { column: s.column } : {}),
        lines: s.lines,
        entries: s.results.length,
        prefixes,
        errors: 0,
        skipped: s.skipped,
        unmapped: 0,
      },
      s.file,
    );
  }
});

test('sample files: the same results when the format (and column) is forced', () => {
  for (const s of SAMPLES) {
    const { shown, summary } = parseAll(fixture(s.file), { format: s.format, ...(s.column !== undefined ? { column: s.column } : {}) });
    assert.deepEqual(shown, s.results, s.file);
    assert.equal(summary.formatSource, 'option', s.file);
    assert.equal(summary.format, s.format, s.file);
  }
});

test('sample files: Windows line endings, a BOM and trailing blanks change nothing', () => {
  for (const s of SAMPLES) {
    const text = `\uFEFF${fixture(s.file).replaceAll('\n', ' \t\r\n')}`;
    assert.deepEqual(parseAll(text).shown, s.results, s.file);
  }
});

test('sample files: fed in chunks of every size from 1 to 64 characters, or line by line', () => {
  for (const s of SAMPLES) {
    const text = fixture(s.file);
    for (let size = 1; size <= 64; size++) {
      const p = new BlocklistParser();
      const got: LineResult[] = [];
      for (let i = 0; i < text.length; i += size) got.push(...p.pushText(text.slice(i, i + size)));
      got.push(...p.end().results);
      assert.deepEqual(got.map(show), s.results, `${s.file} in chunks of ${size}`);
    }
    const p = new BlocklistParser();
    const got: LineResult[] = [];
    for (const line of text.replace(/\n$/, '').split('\n')) got.push(...p.pushLine(line));
    const end = p.end();
    got.push(...end.results);
    assert.deepEqual(got.map(show), s.results, `${s.file} line by line`);
    assert.equal(end.summary.lines, s.lines, `${s.file} line by line`);
  }
});

test('sample files: with a V4Sink, the fast IPv4 lines come as numbers and the rest as results: the same prefixes and summary', () => {
  let numbers = 0;
  for (const s of SAMPLES) {
    const text = fixture(s.file);
    for (const size of [7, 64, text.length + 1]) {
      const p = new BlocklistParser();
      const got: { line: number; shown: string }[] = [];
      const sink = (key: number, line: number) => {
        numbers++;
        got.push({ line, shown: `${line} ${formatPrefix(v4KeyPrefix(key))}` });
      };
      for (let i = 0; i < text.length; i += size)
        for (const r of p.pushText(text.slice(i, i + size), sink)) got.push({ line: r.line, shown: show(r) });
      const end = p.end(sink);
      for (const r of end.results) got.push({ line: r.line, shown: show(r) });
      got.sort((a, b) => a.line - b.line);
      assert.deepEqual(
        got.map((g) => g.shown),
        s.results,
        `${s.file} in chunks of ${size}`,
      );
      assert.deepEqual(end.summary, parseAll(text).summary, `${s.file}: the summary`);
    }
  }
  assert.ok(numbers > 0, 'some lines took the fast path');
});

test('firehol_level1: the classifier picks out the local ranges a deny list must not name, and only those', () => {
  const { results } = parseAll(fixture('firehol-level1.netset'));
  const local: string[] = [];
  const specialOnly: string[] = [];
  for (const r of results) {
    assert.ok(r.ok);
    const p = r.prefixes[0]!;
    if (localOverlaps(p).length > 0) local.push(formatPrefix(p));
    else if (specialOverlaps(p).length > 0) specialOnly.push(formatPrefix(p));
  }
  assert.deepEqual(local, ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16']);
  // Special (bogons) but not local: documentation and the like stay blockable.
  assert.deepEqual(specialOnly, ['192.0.0.0/24', '192.0.2.0/24', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/3']);
});
