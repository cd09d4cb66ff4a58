// The `fleetwall` CLI as a user runs it (a real process, `bin/fleetwall.mjs`)
// against a real control plane on real Postgres: output parsed (tables and
// --json), exit codes checked.
import { type CliRun, runCli } from '../support/cli.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startListServer } from '../support/list-server.js';
import { SyncRequest, type SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';

const FIXTURES = resolve(import.meta.dirname, '../common/fixtures/blocklists');
let pg: TestPostgres;
let cp: TestControlPlane;
let tmp: string;

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
  tmp = mkdtempSync(join(tmpdir(), 'fleetwall-cli-'));
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function fw(args: string[], opts: { stdin?: string; server?: string } = {}): Promise<CliRun> {
  return runCli(opts.server ?? cp.target, args, { stdin: opts.stdin ?? '' });
}

const jsonLines = (s: string): any[] =>
  s
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** Parses an aligned table into rows of {HEADER: cell}. Columns are split on 2+ spaces. */
function parseTable(text: string): Record<string, string>[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const headerIdx = lines.findIndex((l) => /^[A-Z][A-Z /-]+$/.test(l.trim()) && l.includes('  '));
  assert.ok(headerIdx >= 0, `a table header in:\n${text}`);
  const headers = lines[headerIdx]!.trim().split(/\s{2,}/);
  const rows: Record<string, string>[] = [];
  for (const line of lines.slice(headerIdx + 1)) {
    const cells = line.trim().split(/\s{2,}/);
    if (cells.length < 2) break;
    rows.push(Object.fromEntries(headers.map((h, i) => [h, cells[i] ?? ''])));
  }
  return rows;
}

test('block and allow create rules; bad input exits 2 or 3 with what to do', async () => {
  const blocked = await fw(['block', '203.0.113.7', '--ttl', '1h', '--comment', 'ssh brute force', '--json']);
  assert.equal(blocked.code, 0, blocked.stderr);
  const b = jsonLines(blocked.stdout)[0];
  assert.equal(b.rule.cidr, '203.0.113.7/32');
  assert.equal(b.rule.action, 'ACTION_DENY');
  assert.equal(b.rule.comment, 'ssh brute force');
  const ttlMs = Date.parse(b.rule.expireTime) - Date.now();
  assert.ok(ttlMs > 3500_000 && ttlMs <= 3600_000, `--ttl 1h sets the expiry an hour out (${ttlMs} ms)`);

  const allowed = await fw(['allow', '10.0.0.0/8', '--selector', 'role=web']);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stdout, /^allowed 10\.0\.0\.0\/8 \(rule \d+, revision \d+\)/);
  const row = parseTable(allowed.stdout)[0]!;
  assert.equal(row.ACTION, 'allow');
  assert.equal(row.CIDR, '10.0.0.0/8');
  assert.equal(row.SELECTOR, 'role=web');

  const monitor = await fw(['block', '2001:db8::/32', '--monitor', '--egress', '--json']);
  assert.equal(monitor.code, 0, monitor.stderr);
  const m = jsonLines(monitor.stdout)[0];
  assert.equal(m.rule.mode, 'MODE_MONITOR');
  assert.equal(m.rule.direction, 'DIRECTION_EGRESS');

  const dup = await fw(['block', '203.0.113.7']);
  assert.equal(dup.code, 3, 'rejected by the control plane');
  assert.match(dup.stderr, new RegExp(`rule ${b.rule.id}`), `names the existing rule: ${dup.stderr}`);

  const hostBits = await fw(['block', '10.1.2.3/8']);
  assert.equal(hostBits.code, 3);
  assert.match(hostBits.stderr, /10\.0\.0\.0\/8/);

  const hostBitsJson = await fw(['block', '10.1.2.3/8', '--json']);
  assert.equal(JSON.parse(hostBitsJson.stderr).error.reason, 'HOST_BITS_SET');

  for (const [args, pattern] of [
    [['allow', '10.9.0.0/16', '--monitor'], /--monitor applies to block rules only/],
    [['block'], /usage: fleetwall block/],
    [['block', '10.9.0.0/16', '--ttl', 'soon'], /not a duration/],
    [['block', '10.9.0.0/16', '--selector', 'web'], /key=value/],
    [['block', '10.9.0.0/16', '--frobnicate'], /unknown flag --frobnicate/],
    [['launch-missiles'], /unknown command/],
  ] as const) {
    const r = await fw([...args]);
    assert.equal(r.code, 2, `${args.join(' ')} is a usage error`);
    assert.match(r.stderr, pattern);
  }
});

test('rules ls / get / rm, with filters, tables and JSON', async () => {
  const created = jsonLines((await fw(['block', '198.51.100.0/24', '--comment', 'scanner net', '--json'])).stdout)[0];
  const id = created.rule.id as string;

  const all = await fw(['rules', 'ls', '--json']);
  assert.equal(all.code, 0, all.stderr);
  const ids = jsonLines(all.stdout).map((r) => r.id);
  assert.ok(ids.includes(id));

  const table = await fw(['rules', 'ls', '--action', 'deny']);
  assert.equal(table.code, 0);
  const rows = parseTable(table.stdout);
  assert.ok(rows.length >= 2);
  assert.ok(
    rows.every((r) => r.ACTION === 'deny'),
    'filtered by action',
  );
  assert.match(table.stdout, /\d+ of \d+ rules, revision \d+/);

  const covers = await fw(['rules', 'ls', '--covers', '198.51.100.77', '--json']);
  assert.deepEqual(
    jsonLines(covers.stdout).map((r) => r.id),
    [id],
  );
  const text = await fw(['rules', 'ls', '--text', 'scanner', '--json']);
  assert.deepEqual(
    jsonLines(text.stdout).map((r) => r.id),
    [id],
  );

  const got = await fw(['rules', 'get', id]);
  assert.equal(got.code, 0);
  assert.equal(parseTable(got.stdout)[0]!.CIDR, '198.51.100.0/24');
  assert.match(
    got.stdout,
    /by local:loopback/,
    'created_by is the authenticated principal (the local admin on a loopback-trust control plane)',
  );

  const rm = await fw(['rules', 'rm', id]);
  assert.equal(rm.code, 0);
  assert.match(rm.stdout, new RegExp(`deleted rule ${id} \\(revision \\d+\\)`));
  const gone = await fw(['rules', 'get', id]);
  assert.equal(gone.code, 4, 'not found');
  assert.equal((await fw(['rules', 'get', 'abc'])).code, 2);
  assert.equal((await fw(['rules', 'rm', '999999'])).code, 4);
});

test("unblock: deletes the address's own rule; says so when a broader rule still blocks it; exit codes", async () => {
  const own = jsonLines((await fw(['block', '100.80.0.9', '--json'])).stdout)[0];
  const un = await fw(['unblock', '100.80.0.9']);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, new RegExp(`^unblocked 100\\.80\\.0\\.9/32 \\(deleted rule ${own.rule.id}, revision \\d+\\)`));
  assert.equal((await fw(['rules', 'get', own.rule.id])).code, 4, 'the rule is gone');

  const none = await fw(['unblock', '100.80.0.9', '--json']);
  assert.equal(none.code, 4, 'nothing to unblock: not found');
  assert.equal(JSON.parse(none.stderr).error.reason, 'NOT_BLOCKED');

  // A broader deny keeps blocking the address: the answer says so and names it.
  const net = jsonLines((await fw(['block', '100.80.0.0/26', '--json'])).stdout)[0];
  const host = jsonLines((await fw(['block', '100.80.0.9', '--json'])).stdout)[0];
  const still = await fw(['unblock', '100.80.0.9']);
  assert.equal(still.code, 0, still.stderr);
  assert.match(
    still.stdout,
    new RegExp(`^deleted rule ${host.rule.id} \\(100\\.80\\.0\\.9/32, revision \\d+\\), but 100\\.80\\.0\\.9/32 is still blocked by:`),
  );
  assert.deepEqual(
    parseTable(still.stdout).map((r) => [r.ID, r.CIDR, r.ACTION]),
    [[net.rule.id, '100.80.0.0/26', 'deny']],
  );
  assert.match(still.stdout, /fleetwall allow 100\.80\.0\.9\/32/);

  await fw(['block', '100.80.0.9']);
  const json = await fw(['unblock', '100.80.0.9', '--json']);
  await assert.equal(json.code, 0, json.stderr);
  const j = jsonLines(json.stdout)[0];
  assert.equal(j.result, 'still_blocked');
  assert.equal(j.cidr, '100.80.0.9/32');
  assert.deepEqual(
    j.coveringRules.map((r: any) => r.id),
    [net.rule.id],
  );

  assert.equal((await fw(['unblock'])).code, 2, 'usage');
  assert.match((await fw(['unblock', '1.2.3.4', '5.6.7.8'])).stderr, /usage: fleetwall unblock <ip\|cidr>/);
  const hostBits = await fw(['unblock', '100.80.0.9/24', '--json']);
  assert.equal(hostBits.code, 3);
  assert.equal(JSON.parse(hostBits.stderr).error.reason, 'HOST_BITS_SET');
  assert.equal((await fw(['rules', 'rm', net.rule.id])).code, 0);
});

test('import: a file with comments, duplicates and invalid lines; stdin; summary with line numbers', async () => {
  const file = join(tmp, 'list.txt');
  writeFileSync(
    file,
    [
      '# abuse list',
      '192.0.2.0/28',
      '',
      '192.0.2.77        # trailing comment',
      '192.0.2.0/28',
      'not-an-ip',
      '192.0.2.99/24',
      '2001:db8:bad::/48',
    ].join('\n'),
  );
  const r = await fw(['import', file, '--comment', 'abuse list']);
  assert.equal(r.code, 3, 'invalid lines make the exit code say so');
  assert.match(r.stdout, /\(plain, detected\): 3 added, 1 duplicate, 2 invalid, 0 skipped as local ranges \(8 lines, revision \d+\)/);
  const problems = parseTable(r.stdout);
  assert.deepEqual(
    problems.map((p) => p.LINE),
    ['6', '7'],
  );
  assert.match(problems[1]!.PROBLEM ?? '', /192\.0\.2\.0\/24/, 'host bits: names the canonical form');
  assert.match(r.stderr, /2 invalid lines were skipped/);

  const stdin = await fw(['import', '-', '--json'], { stdin: '203.0.113.128/25\n203.0.113.200\n' });
  assert.equal(stdin.code, 0, stdin.stderr);
  const summary = jsonLines(stdin.stdout)[0];
  assert.equal(summary.added, '2', 'a /32 inside a new /25 is a rule of its own');
  assert.equal(summary.invalid, '0');

  const atomic = await fw(['import', '-', '--atomic', '--json'], { stdin: '198.18.1.0/24\nbogus\n' });
  assert.equal(atomic.code, 3);
  assert.equal(jsonLines(atomic.stdout)[0].added, '0', '--atomic stores nothing when a line is invalid');
  assert.equal((await fw(['import', join(tmp, 'missing.txt')])).code, 2);
});

test('import: the formats public lists use; --format, --column, --allow-private; bad options', async () => {
  const drop = await fw(['import', join(FIXTURES, 'spamhaus-drop.txt'), '--selector', 'cli=drop', '--json']);
  assert.equal(drop.code, 0, drop.stderr);
  const d = jsonLines(drop.stdout)[0];
  assert.deepEqual([d.format, d.formatDetected, d.added, d.invalid], ['plain', true, '4', '0']);

  const csv = await fw([
    'import',
    join(FIXTURES, 'abuseipdb-blacklist.csv'),
    '--format',
    'csv',
    '--column',
    'ipAddress',
    '--selector',
    'cli=csv',
  ]);
  assert.equal(csv.code, 0, csv.stderr);
  assert.match(csv.stdout, /\(csv, column ipAddress, as asked\): 4 added, 0 duplicate, 0 invalid/);

  const jsonl = await fw(['import', join(FIXTURES, 'spamhaus-drop-v4.jsonl'), '--selector', 'cli=jsonl', '--json']);
  assert.deepEqual([jsonLines(jsonl.stdout)[0].format, jsonLines(jsonl.stdout)[0].added], ['jsonl', '4']);

  const ranges = await fw(['import', join(FIXTURES, 'ranges-dash.txt'), '--selector', 'cli=ranges', '--json']);
  const rg = jsonLines(ranges.stdout)[0];
  assert.equal(rg.format, 'range');
  assert.ok(Number(rg.prefixes) > 6, 'ranges give several prefixes each');

  const firehol = await fw(['import', join(FIXTURES, 'firehol-level1.netset'), '--selector', 'cli=firehol']);
  assert.equal(firehol.code, 0, 'skipped local lines are a warning, not a failure');
  assert.match(firehol.stdout, /warning: these lines overlap local ranges/);
  const skipped = parseTable(firehol.stdout.slice(firehol.stdout.indexOf('warning')));
  assert.ok(
    skipped.some((r) => r.PREFIX === '10.0.0.0/8' && /RFC 1918/.test(r.WHY ?? '')),
    firehol.stdout,
  );
  const allowed = await fw(['import', join(FIXTURES, 'firehol-level1.netset'), '--selector', 'cli=firehol2', '--allow-private', '--json']);
  assert.equal(jsonLines(allowed.stdout)[0].skippedLocal, '0');

  const before = await fw(['rules', 'ls', '--json']);
  const unknownFormat = await fw(['import', join(FIXTURES, 'ipsum.txt'), '--format', 'xml']);
  assert.equal(unknownFormat.code, 2);
  assert.match(unknownFormat.stderr, /--format must be one of auto, plain, range, jsonl, csv, got "xml"/);
  const noColumn = await fw(['import', join(FIXTURES, 'abuseipdb-blacklist.csv'), '--column', 'score', '--json']);
  assert.equal(noColumn.code, 3);
  assert.equal(JSON.parse(noColumn.stderr).error.reason, 'UNKNOWN_COLUMN');
  assert.match(JSON.parse(noColumn.stderr).error.message, /score/);
  assert.equal((await fw(['rules', 'ls', '--json'])).stdout, before.stdout, 'nothing stored');
});

test('lists add / ls / refresh / rm; rules ls shows the list; bad input exits 2 or 3 and stores nothing', async () => {
  const srv = await startListServer('; a list\n45.61.1.1 ; SBL1\n45.61.1.2 ; SBL2\n10.0.0.0/8 ; bogon\n');
  try {
    const added = await fw(['lists', 'add', 'cli-drop', '--url', srv.url, '--every', '2h', '--selector', 'cli=lists']);
    assert.equal(added.code, 0, added.stderr);
    assert.match(
      added.stdout,
      /added list cli-drop: 2 rules \(deny, ingress, enforce, selector cli=lists\), read as plain; refreshed every 2h, next in [12]h/,
    );
    assert.match(added.stdout, /skipped \(local ranges; --allow-private keeps them\): 1/);
    const ls = parseTable((await fw(['lists', 'ls'])).stdout);
    const row = ls.find((r) => r.NAME === 'cli-drop')!;
    assert.equal(row.SOURCE, srv.url);
    assert.equal(row.EVERY, '2h');
    assert.equal(row.ENTRIES, '2');
    assert.match(row['LAST REFRESH'] ?? '', /ago applied/);
    assert.equal(row['LAST ERROR'], '-');
    assert.match(row['NEXT RUN'] ?? '', /^in [12]h/);

    const rules = parseTable((await fw(['rules', 'ls', '--selector', 'cli=lists'])).stdout);
    assert.deepEqual(
      rules.map((r) => [r.CIDR, r.SOURCE]),
      [
        ['45.61.1.1/32', 'list:cli-drop'],
        ['45.61.1.2/32', 'list:cli-drop'],
      ],
    );

    srv.set('45.61.1.1\n45.61.1.3\n');
    const refreshed = await fw(['lists', 'refresh', 'cli-drop']);
    assert.equal(refreshed.code, 0, refreshed.stderr);
    assert.match(refreshed.stdout, /cli-drop: applied: 1 added, 1 removed: 2 rules \(revision \d+\)/);
    srv.fail(500);
    const failed = await fw(['lists', 'refresh', 'cli-drop']);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /fetch failed: GET .* HTTP 500/);
    assert.match(failed.stderr, /keeps its last good set/);
    const after = parseTable((await fw(['lists', 'ls'])).stdout).find((r) => r.NAME === 'cli-drop')!;
    assert.match(after['LAST ERROR'] ?? '', /HTTP 500/);
    assert.equal(after.ENTRIES, '2');
    srv.ok();

    const before = (await fw(['lists', 'ls', '--json'])).stdout;
    const bad: Array<[string[], number, RegExp]> = [
      [['lists', 'add', 'x', '--url', srv.url, '--format', 'xml'], 2, /--format must be one of/],
      [['lists', 'add', 'x', '--url', srv.url, '--every', '0'], 2, /--every "0" is not a duration/],
      [['lists', 'add', 'x', '--url', 'ftp://127.0.0.1/l.txt'], 3, /scheme "ftp" is not supported/],
      [['lists', 'add', 'x', '--file', 'relative/list.txt'], 2, /absolute path; the control plane reads it on its own host/],
      [
        ['lists', 'add', 'x', '--file', '/srv/lists/drop.txt'],
        3,
        /file sources are off on this control plane: set FLEETWALL_LIST_FILE_ROOT/,
      ],
      [['lists', 'add', 'x', '--url', srv.url, '--every', '1s'], 3, /too short/],
      [['lists', 'add', 'x', '--url', srv.url, '--column', 'ip'], 3, /./],
      [['lists', 'refresh', 'nope'], 4, /there is no list named nope/],
    ];
    for (const [args, code, message] of bad) {
      const r = await fw(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    assert.equal((await fw(['lists', 'ls', '--json'])).stdout, before, 'nothing stored');

    const removed = await fw(['lists', 'rm', 'cli-drop']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /removed list cli-drop and its 2 rules \(revision \d+\)/);
    assert.match((await fw(['rules', 'ls', '--selector', 'cli=lists'])).stdout, /no rules match/);
  } finally {
    await srv.close();
  }
});

test('nodes ls, counters, counters --watch and explain', async () => {
  // A node says hello on the Sync stream so the fleet has one.
  const stream = cp.clients.agent.sync();
  const started = new Promise<void>((res) => stream.on('data', (m: SyncResponse) => m.msg?.$case === 'inSync' && res()));
  stream.on('error', () => undefined);
  // It answers pings, as an agent does: the CLI calls below take a while, and a silent node is dropped.
  stream.on('data', (m: SyncResponse) => {
    if (m.msg?.$case === 'ping') stream.write(SyncRequest.fromPartial({ msg: { $case: 'pong', value: { nonce: m.msg.value.nonce } } }));
  });
  stream.write(
    SyncRequest.fromPartial({
      msg: { $case: 'hello', value: { nodeName: 'cli-node', labels: { role: 'web' }, agentVersion: 'test', agentInstanceId: 'cli-test' } },
    }),
  );
  await started;
  try {
    const nodes = await fw(['nodes', 'ls']);
    assert.equal(nodes.code, 0, nodes.stderr);
    const row = parseTable(nodes.stdout).find((n) => n.NODE === 'cli-node');
    assert.ok(row, nodes.stdout);
    assert.equal(row.CONNECTED, 'yes');
    assert.equal(row.LABELS, 'role=web');
    const nodesJson = jsonLines((await fw(['nodes', 'ls', '--json'])).stdout);
    assert.equal(nodesJson.find((n) => n.name === 'cli-node')?.agentVersion, 'test');

    const counters = await fw(['counters', '--json']);
    assert.equal(counters.code, 0, counters.stderr);
    assert.ok('fleet' in jsonLines(counters.stdout)[0] || jsonLines(counters.stdout)[0].collectTime);
    const countersTable = await fw(['counters']);
    assert.equal(parseTable(countersTable.stdout)[0]!.SCOPE, 'fleet');

    const watch = await fw(['counters', '--watch', '--count', '2', '--interval', '200ms', '--json']);
    assert.equal(watch.code, 0, watch.stderr);
    assert.equal(jsonLines(watch.stdout).length, 2, 'two pushes, then it stops');

    // 10.0.0.0/8 allow (role=web) covers the deny below: allow beats deny on cli-node.
    await fw(['block', '10.1.2.3']);
    const ex = await fw(['explain', '10.1.2.3', '--node', 'cli-node']);
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stdout, /^PASS: /);
    const roles = parseTable(ex.stdout).map((r) => `${r.CIDR} ${r.ROLE}`);
    assert.deepEqual(roles, ['10.1.2.3/32 shadowed by allow', '10.0.0.0/8 decides']);
    const everywhere = await fw(['explain', '10.1.2.3', '--json']);
    assert.equal(jsonLines(everywhere.stdout)[0].verdict, 'VERDICT_DROP', 'without the node, only unselected rules apply');
    assert.equal((await fw(['explain', '10.0.0.0/8'])).code, 3);
    const connected = await fw(['nodes', 'rm', 'cli-node']);
    assert.equal(connected.code, 3, 'a connected node is not deleted');
    assert.match(connected.stderr, /live Sync stream; stop its agent/);
  } finally {
    stream.cancel();
  }
  // Once its stream is gone the node can be forgotten.
  let rm: CliRun | undefined;
  for (let i = 0; i < 100 && rm?.code !== 0; i++) {
    rm = await fw(['nodes', 'rm', 'cli-node']);
    if (rm.code !== 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(rm?.code, 0, rm?.stderr);
  assert.match(rm!.stdout, /deleted node cli-node/);
  assert.equal((await fw(['nodes', 'get', 'cli-node'])).code, 4);
  assert.equal((await fw(['nodes', 'rm', 'no-such-node'])).code, 4);
});

test('an unreachable control plane exits 5 and says how to fix it; --version and --help', async () => {
  const r = await fw(['rules', 'ls'], { server: '127.0.0.1:1' });
  assert.equal(r.code, 5);
  assert.match(r.stderr, /cannot reach the control plane at 127\.0\.0\.1:1.*fleetwall control-plane/);
  const v = await fw(['--version']);
  assert.match(v.stdout, /^fleetwall \d+\.\d+\.\d+/);
  const h = await fw(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /fleetwall block <ip\|cidr>/);
  assert.match(h.stdout, /fleetwall unblock <ip\|cidr>/);
});
