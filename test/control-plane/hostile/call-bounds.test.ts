// Every call has a server-side deadline and every connection a stream bound
// (issue 16, findings 3 and 5). A write held up in the database (here: a
// session holding the revision counter, as a stuck writer would) answers
// DEADLINE_EXCEEDED over gRPC and 504 over HTTP once FLEETWALL_CALL_TIMEOUT
// has passed, naming the setting; reads, /healthz and /manage-ip's answers do
// not wait for it; Postgres's statement_timeout then ends the held statement
// and nothing of it is stored. A create stuck on another writer's row does
// not hold back the creates after it (the group commit starts another group).
// The HTTP/2 stream bound: stream-limit.test.ts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest, ListRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { errorInfoOf, unaryCall } from '../../support/control-plane.js';
import { eventually } from '../../support/eventually.js';
import { withSql } from '../../support/rule-fixtures.js';
import { selectorKey } from '../../../control-plane/src/rules/selector.js';
import { assertStillServes, http, type Rig, startRig, storeCounts } from './rig.js';

// Short enough for the test, long enough that ordinary calls on a busy machine never reach it.
const CALL_TIMEOUT_MS = 3000;

let rig: Rig;

before(async () => {
  rig = await startRig({ callTimeoutMs: CALL_TIMEOUT_MS, dbStatementTimeoutMs: 2 * CALL_TIMEOUT_MS });
  await rig.api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'kept' } });
});

after(async () => {
  await rig?.stop();
});

/** Holds the revision counter's row (every write takes it) until `release()`. */
async function holdRevisionCounter(url: string): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const taken = new Promise<void>((r) => (locked = r));
  const holder = withSql(url, (sql) =>
    sql.begin(async (tx) => {
      await tx`set local idle_in_transaction_session_timeout = 0`;
      await tx`select value from revision_counter where id = 1 for update`;
      locked();
      await held;
    }),
  );
  await taken;
  return {
    async release() {
      release();
      await holder;
    },
  };
}

/** Sessions of this database other than ours waiting for a lock. */
function lockWaiters(url: string): Promise<number> {
  return withSql(url, async (sql) => {
    const [r] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`;
    return r!.n;
  });
}

test('a write held up in the database: DEADLINE_EXCEEDED / 504 naming FLEETWALL_CALL_TIMEOUT; reads answer meanwhile; nothing stored', async () => {
  const before = await storeCounts(rig.url);
  const hold = await holdRevisionCounter(rig.url);
  try {
    // gRPC, with a client deadline well beyond the server's.
    const started = Date.now();
    const e = await new Promise<ServiceError>((resolve, reject) =>
      rig.cp.clients.rules.createRule(
        CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.10/32', action: Action.ACTION_DENY } }),
        new Metadata(),
        { deadline: Date.now() + 10 * CALL_TIMEOUT_MS },
        (err) => (err ? resolve(err) : reject(new Error('the held create succeeded'))),
      ),
    );
    assert.equal(e.code, status.DEADLINE_EXCEEDED, `${status[e.code]} ${e.details}`);
    assert.equal(errorInfoOf(e)?.reason, 'DEADLINE_EXCEEDED');
    assert.match(e.details, /FLEETWALL_CALL_TIMEOUT/);
    assert.ok(Date.now() - started < 10 * CALL_TIMEOUT_MS, 'answered by the server, not by the client deadline');

    // HTTP.
    const r = await http(rig.cp, 'POST', '/v1/rules', JSON.stringify({ rule: { cidr: '203.0.113.11/32', action: 'ACTION_DENY' } }));
    assert.equal(r.status, 504, r.text);
    assert.equal(r.json?.reason, 'DEADLINE_EXCEEDED');
    assert.match(String(r.json?.message), /FLEETWALL_CALL_TIMEOUT/);

    // Reads do not wait for the held writes.
    const listed = await unaryCall(rig.cp.clients.rules, 'listRules', ListRulesRequest.fromPartial({}));
    assert.equal(listed.rules.length, before.rules);
    for (const path of ['/healthz', '/v1/rules', '/v1/nodes', '/v1/counters']) {
      const g = await http(rig.cp, 'GET', path);
      assert.equal(g.status, 200, `GET ${path} while writes are held: ${g.status} ${g.text.slice(0, 200)}`);
    }

    // statement_timeout (twice the call timeout here) ends the held statements: nothing waits on the lock any more.
    await eventually(async () => (await lockWaiters(rig.url)) === 0, 'the held writes cancelled by statement_timeout');
  } finally {
    await hold.release();
  }
  const after = await storeCounts(rig.url);
  assert.deepEqual(
    { rules: after.rules, revision: after.revision, changes: after.changes, audit: after.audit },
    { rules: before.rules, revision: before.revision, changes: before.changes, audit: before.audit },
    'nothing of the timed-out writes was stored',
  );
  // Writes work again at once.
  const ok = await rig.api.create({ rule: { cidr: '203.0.113.12/32', action: Action.ACTION_DENY } });
  assert.equal(ok.revision, before.revision + 1n);
  await assertStillServes(rig, 'held writes');
});

test("a create stuck on another writer's uncommitted row does not hold back the creates after it", async () => {
  // Another session's uncommitted rule with the same identity: the create's insert waits for it.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let inserted!: () => void;
  const taken = new Promise<void>((r) => (inserted = r));
  const holder = withSql(rig.url, (sql) =>
    sql
      .begin(async (tx) => {
        await tx`set local idle_in_transaction_session_timeout = 0`;
        await tx`insert into rules (cidr, action, direction, selector, selector_key, mode, create_time, update_time, write_id)
                 values ('203.0.113.60/32', 1, 1, '{}', ${selectorKey({})}, 1, now(), now(), 0)`;
        inserted();
        await held;
        throw new Error('roll back');
      })
      .catch(() => undefined),
  );
  await taken;
  const stuck = rig.api.create({ rule: { cidr: '203.0.113.60/32', action: Action.ACTION_DENY } }).then(
    (r) => r,
    (e: ServiceError) => e,
  );
  try {
    await eventually(async () => (await lockWaiters(rig.url)) === 1, "the first create waiting for the other session's row");
    // A create of another address commits meanwhile, well inside the call timeout.
    const other = await new Promise<unknown>((resolve, reject) =>
      rig.cp.clients.rules.createRule(
        CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.61/32', action: Action.ACTION_DENY } }),
        new Metadata(),
        { deadline: Date.now() + CALL_TIMEOUT_MS - 500 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    assert.ok(other, 'the later create was not held behind the stuck one');
  } finally {
    release();
    await holder;
  }
  // The other session rolled back: the stuck create goes through (its caller may have seen the deadline first).
  await stuck;
  await eventually(
    () => withSql(rig.url, async (sql) => (await sql`select 1 from rules where cidr = '203.0.113.60/32'`).length === 1),
    'the first create stored once the row it waited for was rolled back',
  );
  await assertStillServes(rig, 'a stuck create');
});
