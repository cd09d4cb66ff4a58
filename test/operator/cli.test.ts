// The `fleetwall` CLI as a user runs it (a real process, `bin/fleetwall.mjs`)
// against a real control plane on real Postgres: output parsed (tables and
// --json), exit codes checked.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { SyncRequest, type SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';

const BIN = resolve(import.meta.dirname, '../../bin/fleetwall.mjs');
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

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function fw(args: string[], opts: { stdin?: string; server?: string } = {}): Promise<Run> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [BIN, '--server', opts.server ?? cp.target, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(opts.stdin ?? '');
    child.once('exit', (code) => resolveRun({ code, stdout, stderr }));
  });
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
  assert.match(got.stdout, /by cli:/, 'the audit actor is the CLI user');

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
  assert.equal(json.code, 0, json.stderr);
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
  assert.match(r.stdout, /3 added, 1 duplicate, 2 invalid \(8 lines, revision \d+\)/);
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

  const atomic = await fw(['import', '-', '--atomic', '--json'], { stdin: '100.64.1.0/24\nbogus\n' });
  assert.equal(atomic.code, 3);
  assert.equal(jsonLines(atomic.stdout)[0].added, '0', '--atomic stores nothing when a line is invalid');
  assert.equal((await fw(['import', join(tmp, 'missing.txt')])).code, 2);
});

test('nodes ls, counters, counters --watch and explain', async () => {
  // A node says hello on the Sync stream so the fleet has one.
  const stream = cp.clients.agent.sync();
  const started = new Promise<void>((res) => stream.on('data', (m: SyncResponse) => m.msg?.$case === 'inSync' && res()));
  stream.on('error', () => undefined);
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
  let rm: Run | undefined;
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
