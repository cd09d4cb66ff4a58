// ImportRules: line numbers across chunks, comments, duplicates (in the list
// and against stored rules), invalid lines reported, atomic imports, one
// revision per import, and a large list reaching a connected agent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { ImportRulesRequest, type ImportRulesResponse } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { eventually } from '../support/eventually.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, { syncChunkBytes: 16 * 1024 });
  api = rulesApi(cp.clients.rules, 'test:importer');
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

test('added, duplicate and invalid lines with their numbers; one revision', async () => {
  // Same direction and selector as the import: a duplicate whatever its action.
  await api.create({
    rule: { cidr: '203.0.113.0/24', action: Action.ACTION_ALLOW, direction: Direction.DIRECTION_EGRESS, selector: { tier: 'edge' } },
  });
  // Another selector: not a duplicate.
  await api.create({ rule: { cidr: '198.51.100.7/32', action: Action.ACTION_ALLOW, direction: Direction.DIRECTION_EGRESS } });
  const before = await storeState(url);
  const res = await api.import(
    {
      action: Action.ACTION_DENY,
      direction: Direction.DIRECTION_EGRESS,
      mode: Mode.MODE_MONITOR,
      comment: 'feed-1',
      selector: { tier: 'edge' },
    },
    [
      ['# a blocklist', '192.0.2.1', '192.0.2.0/24  # inline comment', '', 'not-an-ip'],
      ['192.0.2.1/32', '10.1.2.3/8', '2001:db8::/48', '  2001:DB8::/48  '],
      ['203.0.113.0/24', '198.51.100.7'],
    ],
  );
  assert.equal(res.lines, 11n);
  assert.equal(res.added, 4n, '192.0.2.1/32, 192.0.2.0/24, 2001:db8::/48, 198.51.100.7/32');
  assert.equal(res.duplicate, 3n, 'repeats inside the list (192.0.2.1, the IPv6 prefix) and the stored 203.0.113.0/24');
  assert.equal(res.invalid, 2n);
  assert.deepEqual(
    res.invalidLines.map((l) => [l.lineNumber, l.line, l.reason]),
    [
      [5n, 'not-an-ip', 'INVALID_CIDR'],
      [7n, '10.1.2.3/8', 'HOST_BITS_SET'],
    ],
  );
  assert.match(res.invalidLines[1]!.message, /did you mean 10\.0\.0\.0\/8/);
  assert.equal(res.revision, before.revision + 1n);
  const after = await storeState(url);
  assert.equal(after.rules, before.rules + 4);
  assert.equal(after.revision, before.revision + 1n, 'one revision for the whole import');
  const listed = await api.list({ text: 'feed-1' });
  assert.deepEqual(listed.rules.map((r) => r.cidr).sort(), ['192.0.2.0/24', '192.0.2.1/32', '198.51.100.7/32', '2001:db8::/48']);
  for (const r of listed.rules) {
    assert.equal(r.action, Action.ACTION_DENY);
    assert.equal(r.mode, Mode.MODE_MONITOR);
    assert.deepEqual(r.selector, { tier: 'edge' });
    assert.equal(r.revision, res.revision);
    assert.equal(r.createdBy, 'local:loopback', 'the authenticated principal (the header is only a note)');
  }
  await withSql(url, async (sql) => {
    const [a] = await sql<
      { actor: string; note: string; after: { added: number; lines: number } }[]
    >`select actor, note, after from audit_log where action = 'rule.import' order by id desc limit 1`;
    assert.equal(a!.actor, 'local:loopback');
    assert.equal(a!.note, 'test:importer');
    assert.equal(a!.after.added, 4);
    assert.equal(a!.after.lines, 11);
  });

  // Stored rules with the same direction and selector are duplicates too.
  const again = await api.import(
    { action: Action.ACTION_DENY, direction: Direction.DIRECTION_EGRESS, mode: Mode.MODE_MONITOR, selector: { tier: 'edge' } },
    [['192.0.2.0/24', '192.0.2.1']],
  );
  assert.equal(again.added, 0n);
  assert.equal(again.duplicate, 2n);
  assert.equal(again.revision, 0n, 'nothing added: no revision');
});

test('atomic: one invalid line stores nothing, and says which', async () => {
  const before = await storeState(url);
  const res = await api.import({ action: Action.ACTION_DENY, atomic: true }, [['198.18.0.0/16', '198.18.1.1/16', '198.19.0.0/16']]);
  assert.equal(res.added, 0n);
  assert.equal(res.revision, 0n);
  assert.equal(res.invalid, 1n);
  assert.equal(res.invalidLines[0]!.lineNumber, 2n);
  assert.deepEqual(await storeState(url), before);
});

test('a ttl on the header expires every imported rule', async () => {
  const res = await api.import({ action: Action.ACTION_DENY, ttl: { seconds: 3600n, nanos: 0 }, comment: 'ttl-import' }, [
    ['198.18.64.1', '198.18.64.2'],
  ]);
  assert.equal(res.added, 2n);
  const listed = await api.list({ text: 'ttl-import' });
  for (const r of listed.rules) {
    const left = r.expireTime!.getTime() - Date.now();
    assert.ok(left > 3500_000 && left <= 3600_000, `expires in about an hour (${left}ms)`);
  }
});

test('a 50,000-line import reaches a connected agent in parts, as one revision', async () => {
  const agent = new SyncClient(cp.target, { nodeName: 'import-agent', labels: { tier: 'core' } }).connect();
  try {
    await agent.waitInSync();
    const lines: string[] = [];
    for (let i = 0; i < 50_000; i++) lines.push(`${20 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`);
    const chunks: string[][] = [];
    for (let i = 0; i < lines.length; i += 8192) chunks.push(lines.slice(i, i + 8192));
    const res = await api.import({ action: Action.ACTION_DENY }, chunks);
    assert.equal(res.added, 50_000n);
    await agent.waitRevision(res.revision, 60_000);
    const parts = agent.deltas.filter((d) => d.delta.revision === res.revision);
    assert.ok(parts.length > 1, `split into parts (${parts.length})`);
    assert.ok(parts.slice(0, -1).every((p) => p.delta.more) && !parts.at(-1)!.delta.more, 'more=true on all but the last part');
    const got = parts.reduce((n, p) => n + p.delta.upserts.length, 0);
    assert.equal(got, 50_000);
    const ids = (await api.list({ coversAddress: '20.0.7.9' })).rules.map((r) => r.id);
    assert.equal(ids.length, 1);
    assert.ok(agent.rules.has(ids[0]!));
  } finally {
    agent.close();
  }
});

test('a rule created while the import streams is not held up by it and counts as a duplicate', async () => {
  const before = await storeState(url);
  let call!: ReturnType<typeof cp.clients.rules.importRules>;
  const done = new Promise<ImportRulesResponse>((resolve, reject) => {
    call = cp.clients.rules.importRules(new Metadata(), (err: ServiceError | null, res?: ImportRulesResponse) =>
      err ? reject(err) : resolve(res!),
    );
  });
  call.write(ImportRulesRequest.fromPartial({ part: { $case: 'header', value: { action: Action.ACTION_DENY, comment: 'race' } } }));
  call.write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines: ['198.18.90.1', '198.18.90.2'] } } }));
  // The open import holds no transaction: a create of a CIDR it already sent commits at once.
  const mine = await api.create({ rule: { cidr: '198.18.90.1/32', action: Action.ACTION_ALLOW } });
  call.write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines: ['198.18.90.3'] } } }));
  call.end();
  const res = await done;
  assert.equal(res.added, 2n);
  assert.equal(res.duplicate, 1n, 'the rule created meanwhile');
  const after = await storeState(url);
  assert.equal(after.rules, before.rules + 3);
  assert.equal((await api.get(mine.rule!.id)).rule!.action, Action.ACTION_ALLOW, 'the concurrent rule is untouched');
});

test('a create that commits while the import COPYs the same CIDR: the import retries and counts it as a duplicate', async () => {
  const before = await storeState(url);
  // Hold the revision counter: a create inserts its row, then waits here, uncommitted.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const lockTaken = new Promise<void>((r) => (locked = r));
  const holder = withSql(url, (sql) =>
    sql.begin(async (tx) => {
      await tx`select value from revision_counter where id = 1 for update`;
      locked();
      await held;
    }),
  );
  await lockTaken;
  const create = api.create({ rule: { cidr: '198.18.91.2/32', action: Action.ACTION_ALLOW } });
  await eventually(
    () =>
      withSql(
        url,
        async (sql) =>
          (await sql`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query ilike '%insert into rules%'`).length === 1,
      ),
    'the create to wait for the revision counter',
  );
  const importing = api.import({ action: Action.ACTION_DENY, comment: 'race-2' }, [['198.18.91.1', '198.18.91.2', '198.18.91.3']]);
  // Its COPY waits for the create's uncommitted row with the same CIDR.
  await eventually(
    () =>
      withSql(
        url,
        async (sql) =>
          (await sql`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query ilike 'copy rules%'`).length === 1,
      ),
    'the import COPY to wait for the create',
  );
  release();
  await holder;
  const mine = await create;
  const res = await importing;
  assert.equal(res.added, 2n);
  assert.equal(res.duplicate, 1n, 'the create that won the race');
  const after = await storeState(url);
  assert.equal(after.rules, before.rules + 3);
  assert.equal(after.revision, before.revision + 2n);
  assert.equal((await api.get(mine.rule!.id)).rule!.action, Action.ACTION_ALLOW);
});
