// The formats public blocklists use, imported through the API: every sample
// file of test/common/fixtures/blocklists/ over gRPC (ImportRules, lines in
// chunks as the CLI sends them) and over HTTP (POST /v1/rules:import, the file
// as the body). What is stored is exactly what the parser reads from the file
// (minus local ranges in a deny list), the summary names the format, invalid
// lines keep their numbers, and each import is one revision. Bad options are
// clear errors that store nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { hasLocalOverlap } from '../../common/src/blocklist/special-ranges.js';
import { parseBlocklist } from '../../common/src/blocklist/parser.js';
import type { BlocklistOptions } from '../../common/src/blocklist/types.js';
import { formatPrefix } from '../../common/src/cidr.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { BlocklistFormat, type ImportRulesResponse } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { fixture } from '../support/blocklist-helpers.js';
import { errorInfoOf, startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState, withSql } from '../support/rule-fixtures.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  api = rulesApi(cp.clients.rules, 'test:formats');
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

interface Case {
  readonly file: string;
  readonly format: BlocklistFormat;
  /** The format as forced (unset: detected). */
  readonly force?: BlocklistFormat;
  readonly column?: string;
  readonly parser: BlocklistOptions;
}

const F = BlocklistFormat;
const CASES: readonly Case[] = [
  { file: 'spamhaus-drop.txt', format: F.BLOCKLIST_FORMAT_PLAIN, parser: {} },
  { file: 'spamhaus-dropv6.txt', format: F.BLOCKLIST_FORMAT_PLAIN, parser: {} },
  { file: 'spamhaus-drop-v4.jsonl', format: F.BLOCKLIST_FORMAT_JSONL, parser: {} },
  { file: 'spamhaus-drop-v6.jsonl', format: F.BLOCKLIST_FORMAT_JSONL, parser: {} },
  { file: 'ipsum.txt', format: F.BLOCKLIST_FORMAT_PLAIN, parser: {} },
  { file: 'blocklist-de-all.txt', format: F.BLOCKLIST_FORMAT_PLAIN, parser: {} },
  { file: 'firehol-level1.netset', format: F.BLOCKLIST_FORMAT_PLAIN, parser: {} },
  { file: 'ranges-dash.txt', format: F.BLOCKLIST_FORMAT_RANGE, parser: {} },
  { file: 'ranges-pairs.txt', format: F.BLOCKLIST_FORMAT_RANGE, parser: {} },
  {
    file: 'abuseipdb-blacklist.csv',
    format: F.BLOCKLIST_FORMAT_CSV,
    force: F.BLOCKLIST_FORMAT_CSV,
    column: 'ipAddress',
    parser: { format: 'csv', column: 'ipAddress' },
  },
  { file: 'abuseipdb-bulk-report.csv', format: F.BLOCKLIST_FORMAT_CSV, parser: {} },
];

/** What the import must store for a file: the parser's prefixes, without local ones unless allowed. */
function expected(text: string, options: BlocklistOptions, allowPrivate: boolean) {
  const { results, summary } = parseBlocklist(text, options);
  const cidrs = new Set<string>();
  const local: string[] = [];
  const invalid: number[] = [];
  for (const r of results) {
    if (!r.ok) {
      invalid.push(r.line);
      continue;
    }
    for (const p of r.prefixes) {
      if (!allowPrivate && hasLocalOverlap(p)) local.push(`${r.line} ${formatPrefix(p)}`);
      else cidrs.add(formatPrefix(p));
    }
  }
  return { cidrs: [...cidrs].sort(), local, invalid, summary };
}

async function storedCidrs(comment: string): Promise<string[]> {
  const out: string[] = [];
  let pageToken = '';
  do {
    const page = await api.list({ text: comment, pageSize: 1000, pageToken });
    for (const r of page.rules) if (r.comment === comment) out.push(r.cidr);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return out.sort();
}

/** The file's lines as a line reader gives them (no line ends), in chunks of 3. */
function chunksOf(text: string): string[][] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const out: string[][] = [];
  for (let i = 0; i < lines.length; i += 3) out.push(lines.slice(i, i + 3));
  return out;
}

async function httpImport(query: string, body: string, contentType = 'text/plain'): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/rules:import?${query}`, {
    method: 'POST',
    headers: { 'content-type': contentType, 'x-fleetwall-actor': 'test:formats-http' },
    body,
  });
  return { status: res.status, body: await res.json() };
}

function checkSummary(res: ImportRulesResponse, c: Case, want: ReturnType<typeof expected>, what: string): void {
  assert.equal(res.format, c.format, `${what}: the format read`);
  assert.equal(res.formatDetected, c.force === undefined, `${what}: detected unless forced`);
  assert.equal(res.lines, BigInt(want.summary.lines), `${what}: lines`);
  assert.equal(res.invalid, BigInt(want.invalid.length), `${what}: invalid`);
  assert.deepEqual(
    res.invalidLines.map((l) => Number(l.lineNumber)),
    want.invalid,
    `${what}: invalid lines keep their numbers`,
  );
  assert.deepEqual(
    res.skippedLocalLines.map((l) => `${l.lineNumber} ${l.line}`),
    want.local,
    `${what}: local lines reported with their numbers`,
  );
  assert.equal(res.added, BigInt(want.cidrs.length), `${what}: added`);
}

test('every sample file over gRPC: the parser decides, local ranges of a deny list are skipped, one revision each', async () => {
  for (const [i, c] of CASES.entries()) {
    const text = fixture(c.file);
    const want = expected(text, c.parser, false);
    assert.ok(want.cidrs.length > 0, `${c.file} gives prefixes`);
    const comment = `grpc-${i}-${c.file}`;
    const before = await storeState(url);
    const res = await api.import(
      {
        action: Action.ACTION_DENY,
        comment,
        selector: { file: `g${i}` },
        ...(c.force !== undefined ? { format: c.force } : {}),
        ...(c.column !== undefined ? { column: c.column } : {}),
      },
      chunksOf(text),
    );
    checkSummary(res, c, want, c.file);
    if (c.column !== undefined) assert.equal(res.column, c.column);
    assert.deepEqual(await storedCidrs(comment), want.cidrs, `${c.file}: exactly the parsed prefixes are stored`);
    const after = await storeState(url);
    assert.equal(after.revision, before.revision + 1n, `${c.file}: one revision`);
  }
});

test('every sample file over HTTP, as published (CRLF and a BOM too): the same rules as the parser reads', async () => {
  for (const [i, c] of CASES.entries()) {
    // Windows line ends and a UTF-8 BOM on every other file: the same result.
    const raw = fixture(c.file);
    const text = i % 2 === 0 ? `\ufeff${raw.replaceAll('\n', '\r\n')}` : raw;
    const want = expected(raw, c.parser, false);
    const comment = `http-${i}-${c.file}`;
    const q = new URLSearchParams({ action: 'deny', comment, selector: `file=h${i}` });
    if (c.force !== undefined) q.set('format', BlocklistFormat[c.force].replace('BLOCKLIST_FORMAT_', '').toLowerCase());
    if (c.column !== undefined) q.set('column', c.column);
    const res = await httpImport(q.toString(), text, c.file.endsWith('.csv') ? 'text/csv' : 'text/plain');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.format, BlocklistFormat[c.format], `${c.file}: format`);
    assert.equal(res.body.added ?? '0', String(want.cidrs.length), `${c.file}: added`);
    assert.equal(res.body.lines, String(want.summary.lines), `${c.file}: lines`);
    assert.deepEqual(await storedCidrs(comment), want.cidrs, `${c.file} over HTTP`);
  }
});

test('FireHOL level 1 denied: the bogons are reported as lines naming the range they overlap; --allow-private imports them; an allow list is not filtered', async () => {
  const text = fixture('firehol-level1.netset');
  const skipped = await api.import({ action: Action.ACTION_DENY, comment: 'firehol-deny', selector: { t: 'fh1' } }, chunksOf(text));
  const local = skipped.skippedLocalLines.map((l) => l.line);
  for (const bogon of ['0.0.0.0/8', '10.0.0.0/8', '127.0.0.0/8', '192.168.0.0/16', '172.16.0.0/12', '169.254.0.0/16', '100.64.0.0/10']) {
    assert.ok(local.includes(bogon), `${bogon} is skipped`);
  }
  const ten = skipped.skippedLocalLines.find((l) => l.line === '10.0.0.0/8')!;
  assert.equal(ten.reason, 'LOCAL_RANGE');
  assert.match(ten.message, /10\.0\.0\.0\/8 \(private-use, RFC 1918\)/);
  assert.match(ten.message, /allow-private/);
  assert.equal(Number(ten.lineNumber), text.split('\n').indexOf('10.0.0.0/8') + 1, 'the line number of the file');
  assert.equal(skipped.skippedLocal, BigInt(skipped.skippedLocalLines.length));
  assert.equal(skipped.invalid, 0n, 'skipped lines are not invalid');
  const denied = await storedCidrs('firehol-deny');
  assert.ok(!denied.includes('10.0.0.0/8') && !denied.includes('0.0.0.0/8'));
  assert.ok(denied.includes('192.0.2.0/24') || denied.length > 0);

  const allowed = await api.import(
    { action: Action.ACTION_DENY, comment: 'firehol-allow-private', selector: { t: 'fh2' }, allowPrivate: true },
    chunksOf(text),
  );
  assert.equal(allowed.skippedLocal, 0n);
  // allow_private opens the import guard, not the lockout guard: loopback (which covers the control plane's own address) stays refused.
  assert.deepEqual(
    allowed.invalidLines.map((l) => [l.line, l.reason]),
    [['127.0.0.0/8', 'LOCKOUT_PROTECTED']],
  );
  assert.equal(allowed.added, skipped.added + skipped.skippedLocal - 1n, 'every other skipped line imported');
  assert.ok((await storedCidrs('firehol-allow-private')).includes('10.0.0.0/8'));

  const allowList = await api.import({ action: Action.ACTION_ALLOW, comment: 'firehol-allowlist', selector: { t: 'fh3' } }, chunksOf(text));
  assert.equal(allowList.skippedLocal, 0n, 'an allow list cannot cut anything off');
  assert.equal(allowList.added, allowed.added + 1n, 'and 127.0.0.0/8: an allow cannot lock anyone out');
});

test('a range is stored as its exact prefixes; mixed IPv4/IPv6, trailing blanks, comments only, empty', async () => {
  const res = await api.import({ action: Action.ACTION_DENY, comment: 'mixed', selector: { t: 'mixed' } }, [
    ['  # header  ', '192.0.2.5-192.0.2.10   ', '2001:db8::1\t7', '198.51.100.7 ; note', '::ffff:203.0.113.9'],
  ]);
  assert.equal(res.format, BlocklistFormat.BLOCKLIST_FORMAT_RANGE);
  assert.deepEqual(await storedCidrs('mixed'), [
    '192.0.2.10/32',
    '192.0.2.5/32',
    '192.0.2.6/31',
    '192.0.2.8/31',
    '198.51.100.7/32',
    '2001:db8::1/128',
    '203.0.113.9/32',
  ]);
  assert.equal(res.prefixes, 7n);
  const comments = await api.import({ action: Action.ACTION_DENY }, [['# only', '; comments', '// here', '']]);
  assert.deepEqual([comments.added, comments.invalid, comments.lines, comments.revision], [0n, 0n, 4n, 0n]);
  assert.equal(comments.format, BlocklistFormat.BLOCKLIST_FORMAT_PLAIN);
  assert.equal(comments.formatDetected, false, 'nothing to detect from');
  const empty = await api.import({ action: Action.ACTION_DENY }, []);
  assert.deepEqual([empty.added, empty.lines, empty.revision], [0n, 0n, 0n]);
});

test('bad options are clear errors and store nothing: unknown format, a column that does not exist, a column with plain', async () => {
  const before = await storeState(url);
  const csv = chunksOf(fixture('abuseipdb-blacklist.csv'));
  const cases: Array<[Parameters<typeof api.import>[0], string, RegExp]> = [
    [
      { action: Action.ACTION_DENY, format: 99 as BlocklistFormat },
      'INVALID_ENUM',
      /header\.format 99 is not a known value.*BLOCKLIST_FORMAT_CSV/,
    ],
    [{ action: Action.ACTION_DENY, column: 'score' }, 'UNKNOWN_COLUMN', /line 1: .*score.*ipAddress/],
    [{ action: Action.ACTION_DENY, format: BlocklistFormat.BLOCKLIST_FORMAT_CSV, column: 'nope' }, 'UNKNOWN_COLUMN', /nope/],
    [
      { action: Action.ACTION_DENY, format: BlocklistFormat.BLOCKLIST_FORMAT_PLAIN, column: 'ipAddress' },
      'INVALID_FORMAT_OPTION',
      /column/,
    ],
  ];
  for (const [header, reason, message] of cases) {
    const err = await api.import(header, csv).then(
      () => assert.fail(`${reason}: expected an error`),
      (e) => e,
    );
    assert.equal(errorInfoOf(err)?.reason, reason);
    assert.match(err.details, message);
  }
  const http = await httpImport('format=xml', '192.0.2.1\n');
  assert.equal(http.status, 400);
  assert.equal(http.body.reason, 'INVALID_ENUM');
  assert.match(http.body.message, /format "xml" is not one of auto, plain, range, jsonl, csv/);
  const missing = await httpImport('column=nope', fixture('abuseipdb-blacklist.csv'), 'text/csv');
  assert.equal(missing.status, 400);
  assert.equal(missing.body.reason, 'UNKNOWN_COLUMN');
  const json = await httpImport('', '192.0.2.1\n', 'application/json');
  assert.equal(json.status, 415);
  assert.match(json.body.message, /text\/plain/);
  assert.deepEqual(await storeState(url), before, 'nothing stored, no revision');
});

test('the audit row of an import records the format and the skipped lines', async () => {
  await api.import({ action: Action.ACTION_DENY, comment: 'audit-fmt', selector: { t: 'audit' } }, [['10.0.0.0/8', '198.51.100.0/24']]);
  await withSql(url, async (sql) => {
    const [a] = await sql<{ after: { format: string; skipped_local: number; added: number } }[]>`
      select after from audit_log where action = 'rule.import' order by id desc limit 1`;
    assert.equal(a!.after.format, 'plain');
    assert.equal(a!.after.skipped_local, 1);
    assert.equal(a!.after.added, 1);
  });
});
