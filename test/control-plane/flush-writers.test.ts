// The batched writers (counter totals, node state) - issue 16, finding 1: a
// row the database refuses for good (a value out of range) is set aside and
// logged once while every other row is written, instead of failing every
// later flush (which made every new Sync stream fail and /v1/counters answer
// 500); a flush that fails because the database is away is retried with
// backoff (cut short when the health check sees the database come back),
// and a read does not wait for it; /healthz and grpc.health.v1 report a
// failing writer, and recover with it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import postgres from 'postgres';
import pino from 'pino';
import { CounterAggregator } from '../../control-plane/src/counters/counter-aggregator.js';
import { connect } from '../../control-plane/src/store/database.js';
import { FlushLoop } from '../../control-plane/src/store/flush-loop.js';
import { HealthMonitor } from '../../control-plane/src/health-monitor.js';
import { migrate } from '../../control-plane/src/store/migrations.js';
import { NodeTracker } from '../../control-plane/src/sync/node-tracker.js';
import { Hello } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { CounterReport } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { captureLogs, startTestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

const U64_MAX = (1n << 64n) - 1n;
let pg: TestPostgres;

function healthClient(target: string) {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as unknown as {
    grpc: {
      health: {
        v1: {
          Health: new (
            t: string,
            c: unknown,
          ) => { Check(req: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void; close(): void };
        };
      };
    };
  };
  const c = new pkg.grpc.health.v1.Health(target, credentials.createInsecure());
  return {
    status: () =>
      new Promise<string>((resolve, reject) =>
        c.Check({ service: '' }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
      ),
    close: () => c.close(),
  };
}

before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

async function schema(): Promise<{ url: string; sql: postgres.Sql }> {
  const url = await pg.newDatabase();
  const sql = postgres(url, { max: 3, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  await migrate(sql, pino({ level: 'silent' }));
  return { url, sql };
}

const report = (rules: [bigint, bigint][]) =>
  CounterReport.fromPartial({ seq: 1n, rules: rules.map(([ruleId, packets]) => ({ ruleId, packets, bytes: packets * 100n })) });

describe('a row the database refuses is set aside, the others are written', () => {
  test('counters: rule_id 2^64-1 next to good rows', async () => {
    const { url, sql } = await schema();
    const logs = captureLogs();
    const agg = new CounterAggregator(sql, 60_000, logs.logger);
    try {
      await agg.attach('a', 1);
      await agg.attach('b', 2);
      agg.apply(
        'a',
        1,
        report([
          [U64_MAX, 5n],
          [7n, 3n],
        ]),
      );
      agg.apply('b', 2, report([[8n, 4n]]));
      await agg.flush();
      const rows = await withSql(
        url,
        (s) => s<{ node_name: string; rule_id: bigint }[]>`select node_name, rule_id from node_rule_counters order by 1, 2`,
      );
      assert.deepEqual(
        rows.map((r) => `${r.node_name}/${r.rule_id}`),
        ['a/7', 'b/8'],
      );
      assert.equal(agg.health.setAside, 1);
      assert.equal(agg.health.failingSince, undefined, 'the writer is healthy');
      // Later reports, a new node and later flushes work; the refused row is not logged again.
      agg.apply(
        'a',
        1,
        report([
          [U64_MAX, 9n],
          [7n, 6n],
        ]),
      );
      await agg.attach('c', 3);
      agg.apply('c', 3, report([[7n, 1n]]));
      await agg.flush();
      const a7 = await withSql(
        url,
        (s) => s<{ packets: string }[]>`select packets::text from node_rule_counters where node_name = 'a' and rule_id = 7`,
      );
      assert.equal(a7[0]!.packets, '6');
      assert.equal((await withSql(url, (s) => s`select 1 from node_rule_counters where node_name = 'c'`)).length, 1);
      assert.equal(logs.lines.filter((l) => String(l.msg).includes('refuses this counter row')).length, 1, 'logged once');
    } finally {
      agg.stop();
      await sql.end();
    }
  });

  test('nodes: rules_in_kernel 2^64-1 of one node, the ACK of another', async () => {
    const { url, sql } = await schema();
    const logs = captureLogs();
    const nodes = new NodeTracker(sql, 'cp-1', 60_000, logs.logger);
    try {
      await nodes.connect(Hello.fromPartial({ nodeName: 'x' }), 1, 0n);
      await nodes.connect(Hello.fromPartial({ nodeName: 'y' }), 2, 0n);
      nodes.status('x', 1, {
        interfaces: [],
        rulesInKernel: U64_MAX,
        mapFillRatio: 0,
        lastError: '',
        appliedRevision: 0n,
        kernelMemoryBytes: 0n,
        mapResizeFailures: undefined,
        failsafe: [],
      });
      nodes.ack('y', 2, 5n, 5n);
      await nodes.flush();
      const [y] = await withSql(url, (s) => s<{ applied_revision: bigint }[]>`select applied_revision from nodes where name = 'y'`);
      assert.equal(y!.applied_revision, 5n);
      assert.equal(nodes.health.setAside, 1);
      nodes.ack('y', 2, 6n, 5n);
      nodes.touch('x', 1);
      await nodes.flush();
      const [y2] = await withSql(url, (s) => s<{ applied_revision: bigint }[]>`select applied_revision from nodes where name = 'y'`);
      assert.equal(y2!.applied_revision, 6n);
      assert.equal(logs.lines.filter((l) => String(l.msg).includes('refuses this node state')).length, 1, 'logged once');
    } finally {
      nodes.stop();
      await sql.end();
    }
  });
});

/** A counter writer (flushing every `intervalMs`) on a Postgres of its own, which the test stops and starts. */
interface OwnDatabase {
  readonly own: TestPostgres;
  readonly url: string;
  readonly sql: postgres.Sql;
  readonly agg: CounterAggregator;
}

/**
 * Runs `body` with a running CounterAggregator on a migrated database of a
 * Postgres of its own, node n (stream 1) attached and its first report
 * (rule 3, 10 packets) written; stops and tears down everything after.
 */
async function withOwnDatabase(intervalMs: number, body: (db: OwnDatabase) => Promise<void>): Promise<void> {
  const own = await startTestPostgres();
  const url = await own.newDatabase();
  const sql = postgres(url, { max: 3, onnotice: () => {}, types: { bigint: postgres.BigInt }, connect_timeout: 2 });
  try {
    await migrate(sql, pino({ level: 'silent' }));
    const agg = new CounterAggregator(sql, intervalMs, pino({ level: 'silent' }));
    agg.start();
    try {
      await agg.attach('n', 1);
      agg.apply('n', 1, report([[3n, 10n]]));
      await agg.flush();
      await body({ own, url, sql, agg });
    } finally {
      agg.stop();
    }
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
    await own.stop();
  }
}

test('the database away: flushes fail and are retried with backoff, reads do not wait, nothing is lost', () =>
  withOwnDatabase(100, async ({ own, url, agg }) => {
    await own.stopServer();
    agg.apply('n', 1, report([[3n, 25n]]));
    await assert.rejects(agg.flush(), 'a flush while the database is away fails');
    assert.ok(agg.health.failingSince, 'the writer says it is failing');
    const started = Date.now();
    await agg.settleForRead();
    assert.ok(Date.now() - started < 1000, 'a read does not wait for a failing writer');
    // The node's next stream takes its totals over from memory: no database needed.
    await agg.attach('n', 2);
    agg.apply('n', 2, report([[3n, 30n]]));
    await own.startServer();
    await eventually(() => agg.health.failingSince === undefined, 'the retries succeed by themselves', 30_000);
    const [row] = await withSql(url, (s) => s<{ packets: string }[]>`select packets::text from node_rule_counters where node_name = 'n'`);
    assert.equal(row!.packets, '30', 'every report of the outage counted');
  }));

test('when the health check sees the database back, a writer whose backoff grew in the outage retries at once', () =>
  withOwnDatabase(1000, async ({ own, url, sql, agg }) => {
    const monitor = new HealthMonitor(sql, [agg], () => undefined, pino({ level: 'silent' }));
    await own.stopServer();
    assert.equal((await monitor.check()).database, 'unreachable');
    agg.apply('n', 1, report([[3n, 25n]]));
    // Five failures: the next retry is 1 s * 2^5, capped at 30 s, away.
    for (let i = 0; i < 5; i++) await assert.rejects(agg.flush());
    assert.equal(agg.health.consecutiveFailures, 5);
    await own.startServer();
    // As the monitor's timer does: check until the database answers (the first pings may meet dropped connections).
    await eventually(async () => (await monitor.check()).database === 'ok', 'the health check reaching the database');
    // Well inside the 30 s backoff: the check told the writer to retry.
    await eventually(() => agg.health.failingSince === undefined, 'the writer retried once the database was back', 10_000);
    const [row] = await withSql(url, (s) => s<{ packets: string }[]>`select packets::text from node_rule_counters where node_name = 'n'`);
    assert.equal(row!.packets, '25');
  }));

test('after the database came back: a flush that was running does not arm the long backoff when it fails, a later failure only its shortest step', async () => {
  let calls = 0;
  let failRunning!: (e: Error) => void;
  const loop = new FlushLoop(
    () => {
      calls++;
      if (calls <= 10) return Promise.reject(new Error('connect ECONNREFUSED'));
      if (calls === 11) return new Promise<void>((_, reject) => (failRunning = reject));
      if (calls === 12) return Promise.reject(new Error('the database is starting up'));
      return Promise.resolve();
    },
    { name: 'test', intervalMs: 50, maxBackoffMs: 60_000, logger: pino({ level: 'silent' }) },
  );
  try {
    // Ten failures: the next retry is 50 ms * 2^10 (51 s) away.
    for (let i = 0; i < 10; i++) await assert.rejects(loop.flush());
    const running = loop.flush();
    running.catch(() => undefined);
    loop.retrySoon(); // the database is back while flush 11 is still trying
    failRunning(new Error('connect ECONNREFUSED'));
    await assert.rejects(running);
    loop.start();
    // Flush 12 (the next tick) fails too: its backoff is 50 ms * 2, not 51 s; flush 13 succeeds.
    await eventually(() => calls >= 13 && !loop.failing, 'the retries after the nudge, then success', 10_000);
    assert.equal(loop.health.consecutiveFailures, 0);
  } finally {
    loop.stop();
  }
});

test('/healthz (503 WRITER_FAILING) and grpc.health.v1 report a failing writer; reads and new agents are not held up; both recover', async () => {
  const url = await pg.newDatabase();
  const cp = await startTestControlPlane(url, { counterFlushIntervalMs: 100 });
  const agent = new SyncClient(cp.target, { nodeName: 'w-1' }).connect();
  const health = healthClient(cp.target);
  try {
    await agent.waitInSync();
    const rule = await new Promise<bigint>((resolve, reject) =>
      cp.clients.rules.createRule(CreateRuleRequest.fromPartial({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } }), (e, r) =>
        e ? reject(e) : resolve(r!.rule!.id),
      ),
    );
    await agent.waitFor((c) => c.rules.has(rule), 'the rule');
    // Every counter write now fails (not a data error: the writer retries).
    await withSql(url, async (s) => {
      await s.unsafe(
        `create function fail_counters() returns trigger language plpgsql as $$ begin raise exception 'counters are read-only now'; end $$`,
      );
      await s.unsafe(
        'create trigger fail_counters before insert or update on node_rule_counters for each row execute function fail_counters()',
      );
    });
    agent.report({ seq: 1n, rules: [{ ruleId: rule, packets: 3n, bytes: 300n }] });
    const base = `http://127.0.0.1:${cp.httpPort}`;
    type Health = { reason?: string; writers: { name: string; ok: boolean; lastError?: string }[] };
    const failing = (await eventually(async () => {
      const r = await fetch(`${base}/healthz`);
      const j = (await r.json()) as Health;
      return r.status === 503 && j.reason === 'WRITER_FAILING' ? j : false;
    }, '/healthz 503 WRITER_FAILING')) as Health;
    assert.match(failing.writers.find((w) => w.name === 'counters')?.lastError ?? '', /read-only/);
    await eventually(async () => (await health.status()) === 'NOT_SERVING', 'grpc.health.v1 NOT_SERVING while a writer fails');
    assert.equal((await fetch(`${base}/v1/counters`)).status, 200, 'reads answer while the writer fails');
    assert.equal((await fetch(`${base}/v1/nodes`)).status, 200);
    const probe = new SyncClient(cp.target, { nodeName: 'w-2' }).connect();
    await probe.waitInSync();
    probe.close();
    await withSql(url, (s) => s.unsafe('drop trigger fail_counters on node_rule_counters'));
    await eventually(async () => (await fetch(`${base}/healthz`)).status === 200, '/healthz 200 once writes succeed', 40_000);
    await eventually(async () => (await health.status()) === 'SERVING', 'grpc.health.v1 SERVING again');
    await eventually(
      () => withSql(url, async (s) => (await s`select packets::text from node_rule_counters where node_name = 'w-1'`)[0]?.packets === '3'),
      'the report written after all',
    );
  } finally {
    health.close();
    agent.close();
    await cp.stop();
  }
});

test('pooled connections carry statement_timeout and idle_in_transaction_session_timeout', async () => {
  const url = await pg.newDatabase();
  const sql = connect(url, {
    max: 1,
    applicationName: 'timeouts',
    logger: pino({ level: 'silent' }),
    statementTimeoutMs: 1234,
    idleInTransactionTimeoutMs: 5678,
  });
  try {
    const [r] = await sql<
      { s: string; i: string }[]
    >`select current_setting('statement_timeout') as s, current_setting('idle_in_transaction_session_timeout') as i`;
    assert.deepEqual(r, { s: '1234ms', i: '5678ms' });
    await assert.rejects(
      sql`select pg_sleep(3)`,
      (e: { code?: string }) => e.code === '57014',
      'a statement past its timeout is cancelled',
    );
  } finally {
    await sql.end();
  }
});
