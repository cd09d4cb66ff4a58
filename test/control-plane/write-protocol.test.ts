// The one write protocol (control-plane/src/store/write-transaction.ts and
// change-audit.ts), seen from Postgres: every kind of rule write - a lone
// create, a group commit of concurrent creates, a batch create, an update, a
// delete, a batch delete, an expiry, an import - takes exactly one revision,
// whose revisions row counts its change-log rows, has one audit row per
// change-log row tagged with the same write_id, and is announced by exactly
// one NOTIFY on the revision channel. A rejected write leaves no trace.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import postgres from 'postgres';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { rulesApi, storeState } from '../support/rule-fixtures.js';
import { REVISION_CHANNEL } from '../../control-plane/src/store/write-transaction.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let sql: postgres.Sql;
const notified: bigint[] = [];

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, { expirySweepIntervalMs: 100 });
  sql = postgres(url, { max: 2, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  await sql.listen(REVISION_CHANNEL, (payload) => notified.push(BigInt(payload)));
});

after(async () => {
  await sql?.end();
  await cp?.stop();
  await pg?.stop();
});

interface RevisionRow {
  revision: bigint;
  write_id: bigint;
  actor: string;
  kind: string;
  change_count: number;
  changes: number;
  bulk: number;
  audit: number;
  audit_actions: string[];
  mismatched_audit: number;
  rules_of_write: number;
}

async function revisionsAfter(start: bigint): Promise<RevisionRow[]> {
  return sql<RevisionRow[]>`
    select v.revision, v.write_id, v.actor, v.kind, v.change_count::int as change_count,
           (select count(*)::int from changes c where c.write_id = v.write_id) as changes,
           (select count(*)::int from changes c where c.write_id = v.write_id and c.op = 3 and c.rule_id is null) as bulk,
           (select count(*)::int from audit_log a where a.write_id = v.write_id) as audit,
           (select coalesce(array_agg(distinct a.action), '{}') from audit_log a where a.write_id = v.write_id) as audit_actions,
           (select count(*)::int from audit_log a where a.write_id = v.write_id
              and not exists (select 1 from changes c where c.write_id = a.write_id and c.rule_id is not distinct from a.rule_id)) as mismatched_audit,
           (select count(*)::int from rules r where r.write_id = v.write_id) as rules_of_write
    from revisions v where v.revision > ${start.toString()}::bigint order by v.revision`;
}

test('every kind of write: one revision, counted change-log rows, matching audit rows, one NOTIFY', async () => {
  const api = rulesApi(cp.clients.rules, 'test:protocol');
  const start = (await storeState(url)).revision;

  const lone = await api.create({ rule: { cidr: '192.0.2.1', action: Action.ACTION_DENY } });
  const group = await Promise.all(
    Array.from({ length: 12 }, (_, i) => api.create({ rule: { cidr: `198.18.${i}.0/24`, action: Action.ACTION_DENY } })),
  );
  const batch = await api.batchCreate({
    requests: [1, 2, 3].map((i) => ({ rule: { cidr: `203.0.113.${i}`, action: Action.ACTION_ALLOW } })),
  });
  await api.update({ rule: { id: lone.rule!.id, comment: 'updated' }, updateMask: ['comment'] });
  await api.delete(batch.rules[0]!.id);
  await api.batchDelete([batch.rules[1]!.id, batch.rules[2]!.id]);
  const imported = await api.import({ action: Action.ACTION_DENY, comment: 'list' }, [
    ['198.51.100.0/25', '198.51.100.128/25'],
    ['203.0.113.128/25'],
  ]);
  assert.equal(imported.added, 3n);

  // Rejected writes: nothing is stored, no revision is taken.
  const rejectedBefore = await storeState(url);
  await assert.rejects(api.create({ rule: { cidr: '192.0.2.1', action: Action.ACTION_DENY } }));
  await assert.rejects(api.batchDelete([lone.rule!.id, 999_999n]));
  assert.deepEqual(await storeState(url), rejectedBefore, 'a rejected write leaves no rows and takes no revision');

  // Last, so no expiry runs between the two storeState reads above.
  const soon = await api.create({ rule: { cidr: '192.0.2.99', action: Action.ACTION_DENY }, ttl: { seconds: 1n, nanos: 0 } });

  const expired = await eventually(async () => {
    const rows = await revisionsAfter(start);
    const e = rows.find((r) => r.kind === 'expire');
    if (!e) throw new Error('no expire revision yet');
    return e;
  }, 'the expiry of the ttl rule');
  assert.ok(expired.revision > soon.revision);

  const rows = await revisionsAfter(start);
  const end = (await storeState(url)).revision;
  assert.deepEqual(
    rows.map((r) => r.revision),
    Array.from({ length: Number(end - start) }, (_, i) => start + BigInt(i + 1)),
    'gap-free revisions, one row each',
  );
  // Concurrent creates (usually sharing revisions: group commit) are among them.
  assert.ok(group.every((g) => rows.some((r) => r.revision === g.revision && r.kind === 'create')));

  for (const r of rows) {
    const what = `revision ${r.revision} (${r.kind})`;
    assert.equal(r.mismatched_audit, 0, `${what}: every audit row has its change-log row`);
    if (r.kind === 'import') {
      assert.equal(r.changes, 1, `${what}: one bulk change-log row`);
      assert.equal(r.bulk, 1, `${what}: op 3, rule_id null`);
      assert.equal(r.audit, 1, `${what}: one audit row`);
      assert.equal(r.change_count, r.rules_of_write, `${what}: counts the rules it wrote`);
      assert.equal(r.change_count, 3);
    } else {
      assert.ok(r.changes > 0, `${what}: has change-log rows`);
      assert.equal(r.change_count, r.changes, `${what}: change_count counts its change-log rows`);
      assert.equal(r.audit, r.changes, `${what}: one audit row per change`);
    }
    assert.deepEqual(
      r.audit_actions,
      [
        {
          create: 'rule.create',
          batch_create: 'rule.create',
          update: 'rule.update',
          delete: 'rule.delete',
          batch_delete: 'rule.delete',
          expire: 'rule.expire',
          import: 'rule.import',
        }[r.kind],
      ],
      `${what}: audit action`,
    );
    // The authenticated principal (loopback-trust: the local admin); the x-fleetwall-actor header is only a note.
    assert.equal(r.actor, r.kind === 'expire' ? 'system:expiry' : 'local:loopback', `${what}: actor`);
  }
  assert.deepEqual(
    [...new Set(rows.map((r) => r.kind))].sort(),
    ['batch_create', 'batch_delete', 'create', 'delete', 'expire', 'import', 'update'],
    'every kind of write was seen',
  );
  assert.equal(rows.find((r) => r.kind === 'batch_create')!.changes, 3);
  assert.equal(rows.find((r) => r.kind === 'batch_delete')!.changes, 2);

  await eventually(() => notified.filter((n) => n > start).length >= rows.length, 'the notifications');
  const mine = notified.filter((n) => n > start).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  assert.deepEqual(
    mine,
    rows.map((r) => r.revision),
    'exactly one NOTIFY per revision, carrying it',
  );
});
