// Counters: agents report cumulative kernel totals; the control plane adds
// differences (a lower value is a reset), persists totals with the last
// values, and serves fleet, node and rule totals through CounterService and
// /metrics. Replays, reconnects and restarts never miscount.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import {
  type CounterQuery,
  type DeepPartial,
  GetCountersRequest,
  WatchCountersRequest,
  type WatchCountersResponse,
} from '../../proto/gen/fleetwall/v1/counter_service.js';
import { Action, Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { rulesApi } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let url: string;
let cp: TestControlPlane;
const agents: SyncClient[] = [];
let ids: bigint[] = [];

const overrides = { counterFlushIntervalMs: 100, metricsTopRules: 2 };

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, overrides);
  const made = await rulesApi(cp.clients.rules).batchCreate({
    requests: ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].map((cidr) => ({ rule: { cidr, action: Action.ACTION_DENY } })),
  });
  ids = made.rules.map((r) => r.id);
});

after(async () => {
  for (const a of agents) a.close();
  await cp?.stop();
  await pg?.stop();
});

async function connect(target: string, nodeName: string): Promise<SyncClient> {
  const a = new SyncClient(target, { nodeName }).connect();
  agents.push(a);
  await a.waitInSync();
  return a;
}

async function reportAndWait(a: SyncClient, seq: bigint, r: Parameters<SyncClient['report']>[0]): Promise<void> {
  a.report({ seq, ...r });
  await a.waitFor((c) => c.counterAcks.includes(seq), `CounterAck ${seq}`);
}

const counters = (c: TestControlPlane, q: DeepPartial<CounterQuery> = {}) =>
  unaryCall(c.clients.counters, 'getCounters', GetCountersRequest.fromPartial({ query: q })).then((r) => r.snapshot!);

const ruleTotal = async (c: TestControlPlane, id: bigint, nodeName = '') => {
  const s = await counters(c, { ruleIds: [id], nodeName });
  return [s.rules[0]!.packets, s.rules[0]!.bytes];
};

test('differences of cumulative values; replays, resets and reconnects never miscount', async () => {
  const a = await connect(cp.target, 'counter-a');
  const [r1] = ids;
  await reportAndWait(a, 1n, { rules: [{ ruleId: r1!, packets: 10n, bytes: 1000n }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [10n, 1000n]);
  await reportAndWait(a, 2n, { rules: [{ ruleId: r1!, packets: 10n, bytes: 1000n }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [10n, 1000n], 'a repeated report adds nothing');
  await reportAndWait(a, 3n, { rules: [{ ruleId: r1!, packets: 25n, bytes: 2500n }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [25n, 2500n]);
  await reportAndWait(a, 4n, { rules: [{ ruleId: r1!, packets: 5n, bytes: 500n }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [30n, 3000n], 'a lower value is a reset: the new value is added');
  // A new stream (agent restart); its first report carries every non-zero entry.
  a.close();
  const again = await connect(cp.target, 'counter-a');
  await reportAndWait(again, 1n, { rules: [{ ruleId: r1!, packets: 7n, bytes: 700n }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [32n, 3200n], '5 -> 7 after the reconnect adds 2');
  const big = 18_000_000_000_000_000_000n;
  await reportAndWait(again, 2n, { rules: [{ ruleId: r1!, packets: big, bytes: big }] });
  assert.deepEqual(await ruleTotal(cp, r1!), [32n + big - 7n, 3200n + big - 700n], 'u64 values near 2^64 stay exact');
  await reportAndWait(again, 3n, { rules: [{ ruleId: r1!, packets: 1n, bytes: 1n }] });
});

test('fleet, per-node (interfaces) and per-rule totals = sums over nodes; top rules', async () => {
  const [, r2, r3] = ids;
  const b = await connect(cp.target, 'counter-b');
  const c = await connect(cp.target, 'counter-c');
  const vc = (p: bigint) => ({
    passPackets: p,
    passBytes: p * 100n,
    dropPackets: p * 2n,
    dropBytes: p * 200n,
    wouldDropPackets: p * 3n,
    wouldDropBytes: p * 300n,
  });
  await reportAndWait(b, 1n, {
    rules: [
      { ruleId: r2!, packets: 100n, bytes: 1n },
      { ruleId: r3!, packets: 5n, bytes: 1n },
    ],
    interfaces: [
      { interface: 'eth0', direction: Direction.DIRECTION_INGRESS, counters: vc(10n) },
      { interface: 'eth0', direction: Direction.DIRECTION_EGRESS, counters: vc(1n) },
    ],
  });
  await reportAndWait(c, 1n, {
    rules: [{ ruleId: r2!, packets: 50n, bytes: 2n }],
    interfaces: [{ interface: 'ens3', direction: Direction.DIRECTION_INGRESS, counters: vc(4n) }],
  });
  // Interface reset on b: eth0 ingress drops to 3 -> adds 3.
  await reportAndWait(b, 2n, { interfaces: [{ interface: 'eth0', direction: Direction.DIRECTION_INGRESS, counters: vc(3n) }] });

  const s = await counters(cp, { topRules: 2 });
  const big = 18_000_000_000_000_000_000n;
  assert.deepEqual(
    s.rules.map((r) => [r.ruleId, r.packets, r.bytes, r.nodeName, r.cidr]),
    [
      [ids[0], big + 1n + 25n, big + 1n + 2500n, '', '192.0.2.0/24'],
      [r2, 150n, 3n, '', '198.51.100.0/24'],
    ],
    'top 2 by packets, fleet totals summed over nodes',
  );
  const nb = s.nodes.find((n) => n.nodeName === 'counter-b')!;
  assert.equal(nb.interfaces.length, 2);
  assert.equal(nb.totals!.passPackets, 10n + 3n + 1n);
  assert.equal(nb.totals!.dropBytes, (10n + 3n + 1n) * 200n);
  assert.equal(s.fleet!.passPackets, 14n + 4n);
  assert.equal(s.fleet!.wouldDropBytes, (14n + 4n) * 300n);

  const onlyB = await counters(cp, { nodeName: 'counter-b' });
  assert.deepEqual(
    onlyB.nodes.map((n) => n.nodeName),
    ['counter-b'],
  );
  assert.deepEqual(
    onlyB.rules.map((r) => [r.ruleId, r.packets, r.nodeName]),
    [
      [r2, 100n, 'counter-b'],
      [r3, 5n, 'counter-b'],
    ],
  );
  assert.equal(onlyB.fleet!.passPackets, 18n, 'fleet totals stay fleet-wide');

  const e = await callError(counters(cp, { nodeName: 'no-such-node' }));
  assert.equal(e.code, status.NOT_FOUND);
  assert.equal(errorInfoOf(e)?.reason, 'NODE_NOT_FOUND');
  const e2 = await callError(counters(cp, { topRules: 5000 }));
  assert.equal(errorInfoOf(e2)?.reason, 'INVALID_QUERY');
});

test('/metrics: per-node totals and only the top N rules', async () => {
  const text = await eventually(async () => {
    const res = await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`);
    assert.equal(res.status, 200);
    const t = await res.text();
    assert.match(t, /fleetwall_node_packets_total\{node="counter-b",verdict="pass"[^}]*\} 14/);
    return t;
  }, 'node series');
  assert.match(text, /fleetwall_node_bytes_total\{node="counter-c",verdict="drop"[^}]*\} 800/);
  const ruleSeries = text.split('\n').filter((l) => l.startsWith('fleetwall_rule_packets_total{'));
  assert.equal(ruleSeries.length, 2, 'FLEETWALL_METRICS_TOP_RULES=2');
  assert.match(text, /fleetwall_agents_connected\{[^}]*\} \d/);
  assert.match(text, /fleetwall_revision\{[^}]*\} \d/);
  assert.match(text, /fleetwall_grpc_requests_total\{method="CounterService\/GetCounters",code="0"/);
});

test('WatchCounters pushes fresh totals; a too-short interval is rejected', async () => {
  const a = await connect(cp.target, 'counter-w');
  const [r1] = ids;
  const got: WatchCountersResponse[] = [];
  const stream = cp.clients.counters.watchCounters(
    WatchCountersRequest.fromPartial({ query: { nodeName: 'counter-w', ruleIds: [r1!] }, interval: { seconds: 0n, nanos: 150_000_000 } }),
  );
  const done = new Promise<void>((resolve) => stream.on('error', () => resolve()));
  stream.on('data', (m: WatchCountersResponse) => got.push(m));
  try {
    await eventually(() => got.length >= 1, 'a first snapshot');
    await reportAndWait(a, 1n, { rules: [{ ruleId: r1!, packets: 42n, bytes: 4200n }] });
    await eventually(() => got.some((m) => m.snapshot!.rules[0]?.packets === 42n), 'a snapshot with the new total');
    assert.equal(got[0]!.snapshot!.rules[0]!.nodeName, 'counter-w');
  } finally {
    stream.cancel();
    await done;
  }
  const bad = cp.clients.counters.watchCounters(WatchCountersRequest.fromPartial({ interval: { seconds: 0n, nanos: 10_000_000 } }));
  const err = await new Promise<import('@grpc/grpc-js').ServiceError>((resolve) => bad.on('error', resolve));
  bad.on('data', () => undefined);
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.equal(errorInfoOf(err)?.reason, 'INVALID_INTERVAL');
});

test('totals survive a control-plane restart, and reports after it continue from them', async () => {
  const [, r2] = ids;
  const before = await ruleTotal(cp, r2!);
  for (const a of agents) a.close();
  await cp.stop();
  cp = await startTestControlPlane(url, overrides);
  assert.deepEqual(await ruleTotal(cp, r2!), before, 'persisted');
  const b = await connect(cp.target, 'counter-b');
  // b's kernel still says 100 for r2: nothing new.
  await reportAndWait(b, 1n, { rules: [{ ruleId: r2!, packets: 100n, bytes: 1n }] });
  assert.deepEqual(await ruleTotal(cp, r2!), before);
  await reportAndWait(b, 2n, { rules: [{ ruleId: r2!, packets: 110n, bytes: 1n }] });
  assert.deepEqual(await ruleTotal(cp, r2!), [before[0]! + 10n, before[1]!]);
  assert.deepEqual(await ruleTotal(cp, r2!, 'counter-b'), [110n, 1n]);
});
