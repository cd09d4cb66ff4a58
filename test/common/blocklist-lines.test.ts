// Table tests, one line (or a few) at a time: the text grammar (plain and
// range), JSON lines and CSV, each with what is accepted, what each part of a
// line does, and the error a bad line gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitCsvLine } from '../../common/src/blocklist/csv-line.js';
import { BlocklistError } from '../../common/src/blocklist/errors.js';
import { parseBlocklist } from '../../common/src/blocklist/parser.js';
import type { BlocklistOptions } from '../../common/src/blocklist/types.js';
import { parseAll } from '../support/blocklist-helpers.js';

/** [input line, expected result without the line number] for one format. */
type Row = readonly [string, string];

function check(rows: readonly Row[], options: BlocklistOptions, prefix = ''): void {
  for (const [input, want] of rows) {
    const { shown } = parseAll(`${prefix}${input}\n`, options);
    const line = prefix.split('\n').length;
    assert.deepEqual(shown, want === '' ? [] : [`${line} ${want}`], JSON.stringify(input));
  }
}

const TEXT_BOTH: readonly Row[] = [
  // Trailing fields and comments.
  ['1.10.16.0/20 ; SBL256894', '1.10.16.0/20'],
  ['1.10.16.0/20;SBL256894', '1.10.16.0/20'],
  ['45.148.10.95\t10', '45.148.10.95/32'],
  ['192.0.2.1 some name here', '192.0.2.1/32'],
  ['  192.0.2.1  \t', '192.0.2.1/32'],
  ['192.0.2.1 # note', '192.0.2.1/32'],
  ['192.0.2.1#note', '192.0.2.1/32'],
  ['192.0.2.1 // note', '192.0.2.1/32'],
  ['192.0.2.1//note', '192.0.2.1/32'],
  ['# 192.0.2.1', ''],
  ['; 192.0.2.1', ''],
  ['// 192.0.2.1', ''],
  ['   ', ''],
  // Families, canonical text.
  ['2001:DB8::1', '2001:db8::1/128'],
  ['2001:0db8:0000:0000:0000:0000:0000:0000/32', '2001:db8::/32'],
  ['0.0.0.0/0', '0.0.0.0/0'],
  // IPv4-mapped IPv6 is read as IPv4 (Go's netip Unmap).
  ['::ffff:192.0.2.1', '192.0.2.1/32 (unmapped)'],
  ['::FFFF:c000:0201', '192.0.2.1/32 (unmapped)'],
  ['::ffff:192.0.2.0/120', '192.0.2.0/24 (unmapped)'],
  ['::ffff:0:0/96', '0.0.0.0/0 (unmapped)'],
  ['::/64', '::/64'],
  ['::192.0.2.1', '::c000:201/128'],
  // Dash ranges are read in both formats, exactly.
  ['192.0.2.5-192.0.2.10', '192.0.2.5/32 192.0.2.6/31 192.0.2.8/31 192.0.2.10/32'],
  ['192.0.2.5 - 192.0.2.10 ; note', '192.0.2.5/32 192.0.2.6/31 192.0.2.8/31 192.0.2.10/32'],
  ['192.0.2.5 -192.0.2.6', '192.0.2.5/32 192.0.2.6/32'],
  ['192.0.2.0- 192.0.2.255', '192.0.2.0/24'],
  ['2001:db8::-2001:db8::ffff:ffff', '2001:db8::/96'],
  ['::ffff:192.0.2.1-::ffff:192.0.2.3', '192.0.2.1/32 192.0.2.2/31 (unmapped)'],
  // Errors.
  ['10.1.2.3/8', 'HOST_BITS_SET: "10.1.2.3/8" has host bits set after /8: did you mean 10.0.0.0/8?'],
  ['2001:db8::1/32 ; x', 'HOST_BITS_SET: "2001:db8::1/32" has host bits set after /32: did you mean 2001:db8::/32?'],
  ['192.0.2.10-192.0.2.5', 'INVALID_RANGE: range "192.0.2.10-192.0.2.5" starts after it ends: did you mean 192.0.2.5-192.0.2.10?'],
  ['192.0.2.1-2001:db8::1', 'INVALID_RANGE: range "192.0.2.1-2001:db8::1" mixes IPv4 and IPv6: both ends must be of one family'],
  [
    '192.0.2.0/24-192.0.3.0/24',
    'INVALID_RANGE: range "192.0.2.0/24-192.0.3.0/24": the ends of a range are single addresses, "192.0.2.0/24" is a CIDR',
  ],
  ['192.0.2.1-banana', 'INVALID_RANGE: range "192.0.2.1-banana": "banana" is not an IP address'],
  ['2001:db8::/48-x', 'INVALID_RANGE: range "2001:db8::/48-x": the ends of a range are single addresses, "2001:db8::/48" is a CIDR'],
  [
    'evil-host.example',
    'INVALID_CIDR: "evil-host.example" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
  ],
  [
    'hello',
    'INVALID_CIDR: "hello" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
  ],
  ['10.0.0.0/33', 'INVALID_CIDR: "10.0.0.0/33" has an invalid prefix length "33": IPv4 prefix lengths are 0 to 32'],
  [
    '010.0.0.1',
    'INVALID_CIDR: "010.0.0.1" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
  ],
  [
    'fe80::1%eth0',
    'INVALID_CIDR: "fe80::1%eth0" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
  ],
  [
    '192.0.2.1,192.0.2.2',
    'INVALID_CIDR: "192.0.2.1,192.0.2.2" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
  ],
];

test('text lines (plain and range formats)', () => {
  check(TEXT_BOTH, { format: 'plain' });
  check(TEXT_BOTH, { format: 'range' });
});

test('two addresses on a line: a range in the range format, the second ignored in plain', () => {
  check(
    [
      ['192.0.2.1 192.0.2.9', '192.0.2.1/32 192.0.2.2/31 192.0.2.4/30 192.0.2.8/31'],
      ['192.0.2.1\t192.0.2.1', '192.0.2.1/32'],
      ['2001:db8::1 2001:db8::3 comment', '2001:db8::1/128 2001:db8::2/127'],
      ['192.0.2.9 192.0.2.1', 'INVALID_RANGE: range "192.0.2.9 192.0.2.1" starts after it ends: did you mean 192.0.2.1-192.0.2.9?'],
      ['192.0.2.1 2001:db8::1', 'INVALID_RANGE: range "192.0.2.1 2001:db8::1" mixes IPv4 and IPv6: both ends must be of one family'],
      ['45.148.10.95\t10', '45.148.10.95/32'],
      ['192.0.2.0/24 192.0.2.9', '192.0.2.0/24'],
    ],
    { format: 'range' },
  );
  check([['192.0.2.1 192.0.2.9', '192.0.2.1/32']], { format: 'plain' });
});

test('host bits set: rejected naming the canonical form by default, masked only when asked', () => {
  const rejected = parseBlocklist('10.1.2.3/8\n{"cidr":"10.1.2.3/8"}\n').results;
  assert.equal(rejected.length, 2);
  const r = rejected[0]!;
  assert.ok(!r.ok);
  assert.equal(r.reason, 'HOST_BITS_SET');
  assert.equal(r.canonical, '10.0.0.0/8');
  assert.equal(r.text, '10.1.2.3/8');
  check([['10.1.2.3/8 ; x', '10.0.0.0/8']], { hostBits: 'mask' });
  check([['{"cidr":"10.1.2.3/8"}', '10.0.0.0/8']], { hostBits: 'mask' });
  check([['10.1.2.3/8', '10.0.0.0/8']], { hostBits: 'mask', column: 'ip' }, 'ip\n');
  // A range is exact whatever the policy: its own prefixes, never a widened one.
  check([['10.1.2.3-10.1.2.4', '10.1.2.3/32 10.1.2.4/32']], { hostBits: 'mask' });
});

test('JSON lines', () => {
  check(
    [
      ['{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}', '1.10.16.0/20'],
      ['{"ip":"192.0.2.1"}', '192.0.2.1/32'],
      ['  {"ip":"::ffff:192.0.2.1"}  ', '192.0.2.1/32 (unmapped)'],
      ['{"cidr":"192.0.2.0/24","ip":"198.51.100.1"}', '192.0.2.0/24'],
      ['{"type":"metadata","timestamp":1716974498,"size":239,"records":4}', ''],
      ['{"sblid":"SBL1","rir":"apnic"}', 'MISSING_FIELD: the object has no "cidr" or "ip" field; its fields are: sblid, rir'],
      ['{}', 'MISSING_FIELD: the object has no "cidr" or "ip" field; it has none'],
      ['{"cidr":5}', 'INVALID_CIDR: "cidr" must be a string like "192.0.2.0/24", got number'],
      ['{"cidr":null}', 'INVALID_CIDR: "cidr" must be a string like "192.0.2.0/24", got null'],
      [
        '{"cidr":"192.0.2.0/24 ; x"}',
        'INVALID_CIDR: "192.0.2.0/24 ; x" has an invalid prefix length "24 ; x": IPv4 prefix lengths are 0 to 32',
      ],
      ['[1,2]', 'INVALID_JSON: each line must be one JSON object like {"cidr":"192.0.2.0/24"}'],
      ['"192.0.2.1"', 'INVALID_JSON: each line must be one JSON object like {"cidr":"192.0.2.0/24"}'],
    ],
    { format: 'jsonl' },
  );
  const bad = parseAll('{"cidr":"192.0.2.0/24",\n', { format: 'jsonl' }).results[0]!;
  assert.ok(!bad.ok);
  assert.equal(bad.reason, 'INVALID_JSON');
  assert.match(bad.message, /^not valid JSON \(.+\): each line must be one JSON object/);
});

test('JSON lines with a named field', () => {
  check(
    [
      ['{"network":"192.0.2.0/24"}', '192.0.2.0/24'],
      ['{"cidr":"192.0.2.0/24"}', 'MISSING_FIELD: the object has no "network" field; its fields are: cidr'],
      ['{"type":"metadata"}', ''],
    ],
    { format: 'jsonl', column: 'network' },
  );
  assert.equal(parseAll('{"network":"192.0.2.0/24"}\n', { column: 'network' }).summary.column, 'network');
});

test('CSV rows: quoting, the named column, and what a bad row gets', () => {
  const header = 'note,ip,score\n';
  check(
    [
      ['x,192.0.2.1,100', '192.0.2.1/32'],
      ['"a, ""quoted"" note", "192.0.2.0/24" ,7', '192.0.2.0/24'],
      ['"",::ffff:192.0.2.1,', '192.0.2.1/32 (unmapped)'],
      ['x,192.0.2.1', '192.0.2.1/32'],
      ['x', 'INVALID_CSV: the row has 1 field(s); column "ip" is field 2'],
      ['x,,1', 'MISSING_FIELD: column "ip" is empty'],
      ['"x,192.0.2.1,1', 'INVALID_CSV: a quoted field is not closed (a field cannot span lines)'],
      ['"x"y,192.0.2.1,1', 'INVALID_CSV: unexpected text after a closing quote at column 4'],
      [
        'x,192.0.2.5-192.0.2.6,1',
        'INVALID_CIDR: "192.0.2.5-192.0.2.6" is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32',
      ],
      ['# a comment line', ''],
    ],
    { format: 'csv' },
    header,
  );
});

test('CSV header: the column is found exactly, then case-insensitively, else by its usual names', () => {
  assert.equal(parseAll('ipAddress,countryCode\n192.0.2.1,US\n', { column: 'ipAddress' }).summary.column, 'ipAddress');
  assert.equal(parseAll('ipAddress,countryCode\n192.0.2.1,US\n', { column: 'IPADDRESS' }).summary.column, 'ipAddress');
  assert.equal(parseAll('"IP Address",countryCode\n192.0.2.1,US\n').summary.column, 'IP Address');
  assert.equal(parseAll('Network,Owner\n192.0.2.0/24,x\n').summary.column, 'Network');
  const exact = parseAll('IP,ip\n192.0.2.1,198.51.100.1\n', { column: 'ip' });
  assert.deepEqual(exact.shown, ['2 198.51.100.1/32']);
});

test('CSV header: an unknown column is an error naming the columns that exist', () => {
  assert.throws(
    () => parseBlocklist('ipAddress,countryCode,abuseConfidenceScore\n192.0.2.1,US,100\n', { column: 'ip_addr' }),
    (e: unknown) =>
      e instanceof BlocklistError &&
      e.reason === 'UNKNOWN_COLUMN' &&
      e.line === 1 &&
      e.message === 'the CSV header (line 1) has no column "ip_addr"; its columns are: "ipAddress", "countryCode", "abuseConfidenceScore"',
  );
  assert.throws(
    () => parseBlocklist('# export\nhost,score\n192.0.2.1,100\n', { format: 'csv' }),
    (e: unknown) =>
      e instanceof BlocklistError &&
      e.reason === 'NO_ADDRESS_COLUMN' &&
      e.line === 2 &&
      /no column of the CSV header \(line 2\) looks like an address; name one with the column option; the columns are: "host", "score"/.test(
        e.message,
      ),
  );
  assert.throws(
    () => parseBlocklist('ip,address\n192.0.2.1,192.0.2.2\n'),
    (e: unknown) => e instanceof BlocklistError && e.reason === 'NO_ADDRESS_COLUMN' && /more than one column/.test(e.message),
  );
});

test('splitCsvLine', () => {
  const cases: Array<[string, string[] | string]> = [
    ['a,b,c', ['a', 'b', 'c']],
    [' a , b ,c ', ['a', 'b', 'c']],
    ['a,,', ['a', '', '']],
    ['', ['']],
    ['"a,b",c', ['a,b', 'c']],
    ['"say ""hi""",x', ['say "hi"', 'x']],
    ['  "q" , r', ['q', 'r']],
    ['"",""', ['', '']],
    ['"open', 'a quoted field is not closed (a field cannot span lines)'],
    ['"a"b', 'unexpected text after a closing quote at column 4'],
  ];
  for (const [input, want] of cases) assert.deepEqual(splitCsvLine(input), want, JSON.stringify(input));
});
