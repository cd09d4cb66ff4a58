// RuleService over real gRPC against a real Postgres: create, get, list with
// filters and pages, update with a mask, delete, batches; every write is one
// revision with change-log and audit rows.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState, withSql } from '../support/rule-fixtures.js';
import { coversSql } from '../../control-plane/src/store/rule-store.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  api = rulesApi(cp.clients.rules);
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

test('create: canonical CIDR, defaults, caller identity, one revision per write', async () => {
  const before = await storeState(url);
  const a = await api.create({ rule: { cidr: '198.51.100.7', action: Action.ACTION_DENY, comment: 'scanner' } });
  assert.equal(a.rule!.cidr, '198.51.100.7/32', 'a bare address is a /32');
  assert.equal(a.rule!.direction, Direction.DIRECTION_INGRESS, 'direction defaults to ingress');
  assert.equal(a.rule!.mode, Mode.MODE_ENFORCE, 'mode defaults to enforce');
  // The authenticated principal (a loopback-trust control plane: the local admin), not the x-fleetwall-actor header.
  assert.equal(a.rule!.createdBy, 'local:loopback');
  assert.equal(a.revision, before.revision + 1n);
  assert.equal(a.rule!.revision, a.revision);
  assert.ok(a.rule!.id > 0n);
  const b = await api.create({
    rule: { cidr: '2001:0DB8:0:0::/64', action: Action.ACTION_ALLOW, direction: Direction.DIRECTION_EGRESS, selector: { env: 'prod' } },
  });
  assert.equal(b.rule!.cidr, '2001:db8::/64');
  assert.equal(b.revision, a.revision + 1n);
  assert.deepEqual(b.rule!.selector, { env: 'prod' });
  const got = await api.get(a.rule!.id);
  assert.deepEqual(got.rule, a.rule);
  const after = await storeState(url);
  assert.equal(after.rules, before.rules + 2);
  assert.equal(after.changes, before.changes + 2, 'one change-log row per rule change');
  assert.equal(after.audit, before.audit + 2, 'one audit row per rule change');
});

test('get: unknown id is NOT_FOUND RULE_NOT_FOUND', async () => {
  const e = await callError(api.get(987654321n));
  assert.equal(e.code, status.NOT_FOUND);
  assert.equal(errorInfoOf(e)?.reason, 'RULE_NOT_FOUND');
  assert.match(e.details, /987654321 does not exist/);
});

test('list: filters, covers_address, pages and totals', async () => {
  const made = await api.batchCreate({
    requests: [
      { rule: { cidr: '10.20.0.0/16', action: Action.ACTION_DENY, comment: 'list-test wide' } },
      { rule: { cidr: '10.20.30.0/24', action: Action.ACTION_DENY, comment: 'list-test narrow', selector: { role: 'web' } } },
      { rule: { cidr: '10.20.30.40/32', action: Action.ACTION_ALLOW, comment: 'list-test office' } },
      { rule: { cidr: '10.20.30.0/24', action: Action.ACTION_DENY, direction: Direction.DIRECTION_EGRESS, comment: 'list-test egress' } },
      { rule: { cidr: '172.16.0.0/12', action: Action.ACTION_DENY, comment: 'list-test other' } },
    ],
  });
  assert.equal(made.rules.length, 5);
  assert.ok(
    made.rules.every((r) => r.revision === made.revision),
    'a batch is one revision',
  );
  const ids = made.rules.map((r) => r.id);

  const covers = await api.list({ coversAddress: '10.20.30.40', text: 'list-test' });
  assert.deepEqual(covers.rules.map((r) => r.id).sort(), [ids[0], ids[1], ids[2], ids[3]].sort());
  assert.equal(covers.totalSize, 4n);

  const ingressDeny = await api.list({ coversAddress: '10.20.30.40', action: Action.ACTION_DENY, direction: Direction.DIRECTION_INGRESS });
  assert.deepEqual(
    ingressDeny.rules.map((r) => r.id),
    [ids[0], ids[1]],
  );

  const web = await api.list({ selector: { role: 'web' } });
  assert.deepEqual(
    web.rules.map((r) => r.id),
    [ids[1]],
  );

  const text = await api.list({ text: 'OFFICE' });
  assert.deepEqual(
    text.rules.map((r) => r.id),
    [ids[2]],
    'text is a case-insensitive substring of the comment',
  );
  const byCidr = await api.list({ text: '172.16' });
  assert.deepEqual(
    byCidr.rules.map((r) => r.id),
    [ids[4]],
    'or of the CIDR',
  );

  const seen: bigint[] = [];
  let token = '';
  let pages = 0;
  do {
    const page = await api.list({ text: 'list-test', pageSize: 2, pageToken: token });
    assert.equal(page.totalSize, 5n);
    assert.ok(page.rules.length <= 2);
    seen.push(...page.rules.map((r) => r.id));
    token = page.nextPageToken;
    pages++;
  } while (token);
  assert.equal(pages, 3);
  assert.deepEqual(seen, ids, 'every rule once, in id order');

  const first = await api.list({ text: 'list-test', pageSize: 2 });
  const e = await callError(api.list({ text: 'list-', pageSize: 2, pageToken: first.nextPageToken }));
  assert.equal(e.code, status.INVALID_ARGUMENT);
  assert.equal(errorInfoOf(e)?.reason, 'INVALID_PAGE_TOKEN');
  const e2 = await callError(api.list({ pageToken: 'garbage' }));
  assert.equal(errorInfoOf(e2)?.reason, 'INVALID_PAGE_TOKEN');
});

test('update with update_mask changes only the named fields', async () => {
  const { rule } = await api.create({
    rule: { cidr: '203.0.113.0/24', action: Action.ACTION_DENY, comment: 'before', selector: { env: 'a' } },
  });
  const up = await api.update({
    rule: { id: rule!.id, comment: 'after', selector: { env: 'b' }, action: Action.ACTION_ALLOW },
    updateMask: ['comment', 'selector'],
  });
  assert.equal(up.rule!.comment, 'after');
  assert.deepEqual(up.rule!.selector, { env: 'b' });
  assert.equal(up.rule!.action, Action.ACTION_DENY, 'action was not in the mask');
  assert.equal(up.rule!.revision, up.revision);
  assert.ok(up.rule!.updateTime!.getTime() >= rule!.updateTime!.getTime());
  const exp = new Date(Date.now() + 3_600_000);
  const up2 = await api.update({ rule: { id: rule!.id, expireTime: exp, mode: Mode.MODE_MONITOR }, updateMask: ['expire_time', 'mode'] });
  assert.equal(up2.rule!.expireTime!.getTime(), exp.getTime());
  assert.equal(up2.rule!.mode, Mode.MODE_MONITOR);
  const up3 = await api.update({ rule: { id: rule!.id }, updateMask: ['expireTime'] });
  assert.equal(up3.rule!.expireTime, undefined, 'an unset expire_time in the mask clears the expiry');

  const e = await callError(api.update({ rule: { id: rule!.id, cidr: '203.0.114.0/24' }, updateMask: ['cidr'] }));
  assert.equal(e.code, status.INVALID_ARGUMENT);
  assert.equal(errorInfoOf(e)?.reason, 'IMMUTABLE_FIELD');
  assert.match(e.details, /delete the rule and create/);
  const e2 = await callError(api.update({ rule: { id: rule!.id, comment: 'x' }, updateMask: [] }));
  assert.equal(errorInfoOf(e2)?.reason, 'INVALID_UPDATE_MASK');
  const e3 = await callError(api.update({ rule: { id: rule!.id }, updateMask: ['colour'] }));
  assert.equal(errorInfoOf(e3)?.reason, 'INVALID_UPDATE_MASK');
  const e4 = await callError(api.update({ rule: { id: 99999999n, comment: 'x' }, updateMask: ['comment'] }));
  assert.equal(e4.code, status.NOT_FOUND);
  const e5 = await callError(api.update({ rule: { id: rule!.id, action: Action.ACTION_ALLOW }, updateMask: ['action'] }));
  assert.equal(errorInfoOf(e5)?.reason, 'MONITOR_ON_ALLOW', 'the merged rule is validated (monitor stays on)');

  // Moving onto another rule's identity is a duplicate naming it.
  const other = await api.create({ rule: { cidr: '203.0.113.0/24', action: Action.ACTION_ALLOW, selector: { env: 'c' } } });
  const e6 = await callError(api.update({ rule: { id: rule!.id, selector: { env: 'c' } }, updateMask: ['selector'] }));
  assert.equal(e6.code, status.ALREADY_EXISTS);
  assert.equal(errorInfoOf(e6)?.metadata.existing_rule_id, other.rule!.id.toString());
  assert.equal(errorInfoOf(e6)?.metadata.existing_action, 'ACTION_ALLOW');
});

test('delete and batch delete (all or nothing)', async () => {
  const made = await api.batchCreate({
    requests: [1, 2, 3].map((i) => ({ rule: { cidr: `100.64.${i}.0/24`, action: Action.ACTION_DENY } })),
  });
  const [a, b, c] = made.rules.map((r) => r.id);
  const d = await api.delete(a!);
  assert.ok(d.revision > made.revision);
  assert.equal((await callError(api.get(a!))).code, status.NOT_FOUND);
  assert.equal((await callError(api.delete(a!))).code, status.NOT_FOUND, 'deleting twice');

  const before = await storeState(url);
  const e = await callError(api.batchDelete([b!, 77777777n, c!]));
  assert.equal(e.code, status.NOT_FOUND);
  assert.match(e.details, /77777777/);
  assert.deepEqual(await storeState(url), before, 'nothing deleted');
  const ok = await api.batchDelete([b!, c!]);
  assert.equal(ok.deleted, 2n);
  assert.equal(ok.revision, before.revision + 1n);
});

test('audit log: who, what, before and after; append-only', async () => {
  const { rule } = await api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'audited' } });
  await rulesApi(cp.clients.rules, 'test:bob').update({ rule: { id: rule!.id, comment: 'changed' }, updateMask: ['comment'] });
  await api.delete(rule!.id);
  await withSql(url, async (sql) => {
    const rows = await sql<
      {
        actor: string;
        note: string;
        action: string;
        before: { comment: string } | null;
        after: { comment: string } | null;
        revision: bigint;
      }[]
    >`
      select a.actor, a.note, a.action, a.before, a.after, v.revision from audit_log a join revisions v on v.write_id = a.write_id
      where a.rule_id = ${rule!.id.toString()}::bigint order by a.id`;
    // actor: the authenticated principal; note: what the client said about itself (x-fleetwall-actor).
    assert.deepEqual(
      rows.map((r) => [r.actor, r.note, r.action, r.before?.comment ?? null, r.after?.comment ?? null]),
      [
        ['local:loopback', 'test:alice', 'rule.create', null, 'audited'],
        ['local:loopback', 'test:bob', 'rule.update', 'audited', 'changed'],
        ['local:loopback', 'test:alice', 'rule.delete', 'changed', null],
      ],
    );
    assert.ok(rows[0]!.revision < rows[1]!.revision && rows[1]!.revision < rows[2]!.revision);
    await assert.rejects(sql`update audit_log set actor = 'mallory'`, /append-only/);
    await assert.rejects(sql`delete from audit_log`, /append-only/);
  });
});

test('revisions are gap-free and in commit order under concurrent writers', async () => {
  const start = (await api.list({ pageSize: 1 })).revision;
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => api.create({ rule: { cidr: `198.18.${i}.0/24`, action: Action.ACTION_DENY } })),
  );
  // Concurrent creates may share a revision (group commit); the revisions are gap-free.
  const revs = [...new Set(results.map((r) => r.revision))].sort((x, y) => (x < y ? -1 : 1));
  assert.deepEqual(
    revs,
    Array.from({ length: revs.length }, (_, i) => start + BigInt(i + 1)),
  );
  // Concurrent writers of different kinds each take their own revision, in commit order.
  const ids = results.slice(0, 10).map((r) => r.rule!.id);
  const s2 = (await api.list({ pageSize: 1 })).revision;
  const mixed = await Promise.all([
    ...ids.slice(0, 5).map((id) => api.delete(id)),
    ...ids.slice(5).map((id) => api.update({ rule: { id, comment: 'x' }, updateMask: ['comment'] })),
  ]);
  assert.deepEqual(
    mixed.map((m) => m.revision).sort((x, y) => (x < y ? -1 : 1)),
    Array.from({ length: 10 }, (_, i) => s2 + BigInt(i + 1)),
  );
  await withSql(url, async (sql) => {
    const rows = await sql<
      { revision: bigint; commit_time: Date }[]
    >`select revision, commit_time from revisions where revision > ${start.toString()}::bigint order by revision`;
    for (let i = 1; i < rows.length; i++) assert.ok(rows[i]!.commit_time >= rows[i - 1]!.commit_time, 'commit times follow revisions');
  });
});

test('"rules that cover this address" is served by the indexes (partial GiST + identity btree)', async () => {
  const lines: string[] = [];
  for (let i = 0; i < 4000; i++) lines.push(i % 2 ? `45.${(i >> 8) & 255}.${i & 255}.0/24` : `46.0.${(i >> 8) & 255}.${i & 255}`);
  await api.import({ action: Action.ACTION_DENY, comment: 'index-check' }, [lines]);
  await withSql(url, async (sql) => {
    await sql`analyze rules`;
    const plan = await sql.begin(async (tx) => {
      await tx`set local enable_seqscan = off`;
      const rows = await tx.unsafe(`explain select r.id from rules r where ${coversSql('$1')}`, ['46.0.1.2'] as never[]);
      return rows.map((r) => (r as Record<string, string>)['QUERY PLAN']).join('\n');
    });
    assert.match(plan, /Index Scan on rules_cidr_gist/);
    assert.match(plan, /Index Scan on rules_identity/);
  });
  const hit = await api.list({ coversAddress: '46.0.1.2' });
  assert.deepEqual(
    hit.rules.map((r) => r.cidr),
    ['46.0.1.2/32'],
  );
  const wide = await api.list({ coversAddress: '45.3.5.77', text: 'index-check' });
  assert.deepEqual(
    wide.rules.map((r) => r.cidr),
    ['45.3.5.0/24'],
  );
});

test('concurrent single creates are committed together (group commit), each with its own outcome', async () => {
  const existing = await api.create({ rule: { cidr: '198.19.255.0/24', action: Action.ACTION_ALLOW } });
  const before = await storeState(url);
  const reqs = [
    ...Array.from({ length: 40 }, (_, i) => ({ rule: { cidr: `198.19.${i}.0/24`, action: Action.ACTION_DENY } })),
    { rule: { cidr: '198.19.255.0/24', action: Action.ACTION_DENY } },
    { rule: { cidr: '198.19.7.0/24', action: Action.ACTION_ALLOW } },
  ];
  const results = await Promise.allSettled(reqs.map((r) => api.create(r)));
  const ok = results
    .filter((r) => r.status === 'fulfilled')
    .map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof api.create>>>).value);
  const failed = results
    .filter((r) => r.status === 'rejected')
    .map((r) => (r as PromiseRejectedResult).reason as import('@grpc/grpc-js').ServiceError);
  assert.equal(ok.length, 40);
  assert.equal(failed.length, 2);
  assert.ok(failed.every((e) => errorInfoOf(e)?.reason === 'DUPLICATE_RULE'));
  assert.ok(failed.some((e) => errorInfoOf(e)?.metadata.existing_rule_id === existing.rule!.id.toString()));
  const after = await storeState(url);
  assert.equal(after.rules, before.rules + 40);
  const revs = new Set(ok.map((r) => r.revision));
  assert.ok(revs.size < 40, `fewer revisions (${revs.size}) than creates`);
  assert.equal(after.revision, before.revision + BigInt(revs.size), 'gap-free');
  for (const r of ok) assert.equal(r.rule!.revision, r.revision);
});
