// Where the lockout guard's dynamic knowledge comes from, across two
// control-plane processes on one database: the address each node's Sync
// stream comes from (kept with the node: a deny covering another process's
// agent is refused), the failsafe entries agents report (Explain names them
// when they decide), import lines refused as lines, and the CLI's --force,
// exit code and output.
import { type CliRun, runCli } from '../../support/cli.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ExplainRequest, MatchRole, Verdict } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlanes, type TestControlPlane, unaryCall } from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { rulesApi, storeState, withSql } from '../../support/rule-fixtures.js';
import { SyncClient } from '../../support/scripted-agent.js';

let pg: TestPostgres;
let url: string;
let a: TestControlPlane;
let b: TestControlPlane;
let agent: SyncClient;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  const cps = await startTestControlPlanes(url, 2, { protectedRefreshMs: 0 });
  a = cps[0]!;
  b = cps[1]!;
  // A scripted agent on process a, reporting failsafe entries for its control plane.
  agent = new SyncClient(a.target, { nodeName: 'web-1', labels: { role: 'web' } }).connect();
  await agent.waitFor((c) => c.inSync, 'in sync');
  agent.send({
    msg: {
      $case: 'status',
      value: {
        interfaces: [],
        rulesInKernel: 0n,
        mapFillRatio: 0,
        lastError: '',
        appliedRevision: 0n,
        kernelMemoryBytes: 0n,
        mapResizeFailures: undefined,
        failsafe: [
          { cidr: '192.0.2.10/32', source: 'control plane cp.example:50051' },
          { cidr: '10.9.0.0/16', source: '--failsafe-cidrs' },
        ],
      },
    },
  });
});

after(async () => {
  agent?.close();
  await a?.stop();
  await b?.stop();
  await pg?.stop();
});

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a Sync stream's address is kept with its node; another process refuses a deny covering a node's address", async () => {
  const peers = await until(
    'the peer address recorded',
    () => withSql(url, (sql) => sql<{ name: string; peer_address: string }[]>`select name, peer_address from nodes order by name`),
    (r) => r.some((x) => x.name === 'web-1' && x.peer_address === '127.0.0.1'),
  );
  assert.deepEqual([...peers], [{ name: 'web-1', peer_address: '127.0.0.1' }]);
  // A node that connects to some process from a routable address (written as that process would).
  await withSql(url, (sql) => sql`insert into nodes (name, peer_address) values ('far-1', '198.51.100.77'), ('far-2', '198.51.100.77')`);
  const before = await storeState(url);
  const e = await callError(rulesApi(b.clients.rules).create({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } }));
  assert.equal(e.code, status.FAILED_PRECONDITION);
  const info = errorInfoOf(e)!;
  assert.equal(info.reason, 'LOCKOUT_PROTECTED');
  assert.equal(info.metadata.protected, '198.51.100.77/32');
  assert.equal(info.metadata.protected_kind, 'agent');
  assert.match(info.metadata.why!, /nodes far-1, far-2 connect from/);
  assert.deepEqual(await storeState(url), before, 'nothing stored');
  // Removing the node (its row) lifts the protection.
  await withSql(url, (sql) => sql`delete from nodes where name in ('far-1', 'far-2')`);
  await rulesApi(b.clients.rules).create({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } });
});

test('import: deny lines covering a protected address are refused as lines, naming it; the rest is imported; atomic stores nothing', async () => {
  await withSql(url, (sql) => sql`insert into nodes (name, peer_address) values ('far-3', '203.0.113.77')`);
  const api = rulesApi(b.clients.rules);
  const lines = ['203.0.113.1', '127.0.0.9 # loopback', '0.0.0.0/0', '203.0.113.0/24', '::1', '198.18.0.1'];
  const before = await storeState(url);
  // Without allow_private the local ranges (loopback, /0) are skipped first, as LOCAL_RANGE; the guard still refuses the rest.
  const plain = await api.import({ action: Action.ACTION_DENY, atomic: true }, [lines]);
  assert.deepEqual(
    plain.skippedLocalLines.map((l) => [Number(l.lineNumber), l.reason]),
    [
      [2, 'LOCAL_RANGE'],
      [3, 'LOCAL_RANGE'],
      [5, 'LOCAL_RANGE'],
    ],
  );
  assert.deepEqual(
    plain.invalidLines.map((l) => [Number(l.lineNumber), l.reason]),
    [[4, 'LOCKOUT_PROTECTED']],
  );
  assert.deepEqual(await storeState(url), before, 'atomic: nothing stored');
  // allow_private lets local ranges through the import guard, never through the lockout guard.
  const atomic = await api.import({ action: Action.ACTION_DENY, atomic: true, allowPrivate: true }, [lines]);
  assert.equal(atomic.added, 0n);
  assert.equal(atomic.invalid, 4n);
  assert.deepEqual(await storeState(url), before, 'atomic: nothing stored');
  const res = await api.import({ action: Action.ACTION_DENY, allowPrivate: true }, [lines]);
  assert.equal(res.added, 2n, 'the rest imported');
  assert.deepEqual(
    res.invalidLines.map((l) => [Number(l.lineNumber), l.reason]),
    [
      [2, 'LOCKOUT_PROTECTED'],
      [3, 'LOCKOUT_PROTECTED'],
      [4, 'LOCKOUT_PROTECTED'],
      [5, 'LOCKOUT_PROTECTED'],
    ],
  );
  assert.equal(res.invalid, 4n);
  assert.match(
    res.invalidLines[0]!.message,
    /^line 2: a deny of 127\.0\.0\.9\/32 \(ingress\) would drop traffic from 127\.0\.0\.0\/8, which is protected: loopback/,
  );
  assert.match(res.invalidLines[2]!.message, /203\.0\.113\.77\/32, which is protected: the address node far-3 connects from/);
  // Lines the guard has no business with: allows, monitor-mode denies.
  const allows = await api.import({ action: Action.ACTION_ALLOW, selector: { role: 'db' } }, [['127.0.0.1', '0.0.0.0/0']]);
  assert.equal(allows.invalid, 0n);
  const monitor = await api.import(
    { action: Action.ACTION_DENY, mode: Mode.MODE_MONITOR, direction: Direction.DIRECTION_EGRESS, allowPrivate: true },
    [['127.0.0.1']],
  );
  assert.equal(monitor.invalid, 0n);
  assert.equal(monitor.added, 1n);
});

test("Explain: a node's failsafe entry decides (allow beats deny), on both directions; elsewhere the deny decides", async () => {
  await until(
    'failsafe entries recorded',
    () => withSql(url, (sql) => sql<{ failsafe: unknown[] }[]>`select failsafe from nodes where name = 'web-1'`),
    (r) => (r[0]?.failsafe.length ?? 0) === 2,
  );
  const deny = (await rulesApi(a.clients.rules).create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } })).rule!;
  const explain = (address: string, nodeName: string, direction = Direction.DIRECTION_INGRESS) =>
    unaryCall(b.clients.explain, 'explain', ExplainRequest.fromPartial({ address, nodeName, direction }));
  const fs = await explain('192.0.2.10', 'web-1');
  assert.equal(fs.verdict, Verdict.VERDICT_PASS);
  assert.deepEqual(fs.failsafe, { cidr: '192.0.2.10/32', source: 'control plane cp.example:50051' });
  assert.equal(fs.decidingRule, undefined);
  assert.deepEqual(
    fs.matches.map((m) => [m.rule!.id, m.role]),
    [[deny.id, MatchRole.MATCH_ROLE_SHADOWED_BY_ALLOW]],
  );
  assert.match(fs.explanation, /failsafe entry 192\.0\.2\.10\/32 \(control plane cp\.example:50051\) allows it whatever the policy/);
  assert.match(fs.explanation, new RegExp(`rule ${deny.id} \\(deny 192\\.0\\.2\\.0/24\\) is shadowed`));
  assert.equal((await explain('192.0.2.10', 'web-1', Direction.DIRECTION_EGRESS)).failsafe?.cidr, '192.0.2.10/32');
  const other = await explain('192.0.2.11', 'web-1');
  assert.equal(other.verdict, Verdict.VERDICT_DROP);
  assert.equal(other.failsafe, undefined);
  assert.equal((await explain('192.0.2.10', '')).verdict, Verdict.VERDICT_DROP, 'without a node: the rules every node enforces');
  assert.equal((await explain('10.9.3.4', 'web-1')).failsafe?.source, '--failsafe-cidrs');
});

function fw(args: string[]): Promise<CliRun> {
  return runCli(a.target, args, { stdin: 'ignore', env: process.env });
}

test('CLI: a refused block exits 3 saying how to override; --force (the local admin) stores it; audit and explain show it', async () => {
  const refused = await fw(['block', '127.0.0.77']);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /127\.0\.0\.0\/8, which is protected: loopback/);
  assert.match(refused.stderr, /force/);
  const forced = await fw(['--json', 'block', '127.0.0.77', '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  const id = JSON.parse(forced.stdout).rule.id as string;
  const audit = await fw(['audit', '--rule', id]);
  assert.equal(audit.code, 0, audit.stderr);
  assert.match(
    audit.stdout,
    /\[FORCED: rule: deny 127\.0\.0\.77\/32 ingress lies inside 127\.0\.0\.0\/8, which is protected: loopback, always protected\]/,
  );
  const ex = await fw(['explain', '192.0.2.10', '--node', 'web-1']);
  assert.equal(ex.code, 0, ex.stderr);
  assert.match(ex.stdout, /^PASS: .*failsafe entry 192\.0\.2\.10\/32/);
  assert.match(ex.stdout, /failsafe\s+allow\s+192\.0\.2\.10\/32\s+enforce\s+decides \(control plane cp\.example:50051\)/);
});
