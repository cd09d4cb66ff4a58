// The agent end to end: a real control plane and Postgres, the agent as a
// real process on the real datapath, real packets in network namespaces.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ServiceError, status } from '@grpc/grpc-js';
import postgres from 'postgres';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { ping } from '../support/traffic.js';
import { SyncState } from '../../proto/gen/fleetwall/v1/node.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { createRule, deleteRule, eventually, getNode, interfaceDrops, rulePackets, withE2E } from '../support/agent-e2e-rig.js';
import { StreamTraffic } from '../support/stream-traffic.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

test('a rule created through the API drops real packets; deleting it lets them through; control-plane counters equal the packets sent', async () => {
  await withE2E(pg, async ({ bed, cp, agent }) => {
    // Over mutual TLS, as deployed: the control plane has TLS on, the agent enrolled and dials with its node certificate.
    assert.equal(cp.cp.security, 'tls');
    const h0 = await agent.health();
    assert.equal(h0.tls, true, 'the agent dials with its node certificate');
    assert.deepEqual((await getNode(cp, agent.nodeName)).labels, { zone: 'test' }, 'labels bound at enrollment');
    const src = bed.a.v4Extra[0]!;
    assert.deepEqual(await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 }, 'open before the rule');
    const { rule, revision } = await createRule(cp, `${src}/32`);
    await agent.waitHealth('revision applied', (h) => BigInt(h.appliedRevision) >= revision);
    const blocked = await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 10 });
    assert.deepEqual(blocked, { sent: 10, received: 0 });
    assert.deepEqual(
      await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 2 }),
      { sent: 2, received: 2 },
      'other sources pass',
    );
    // IPv6 and egress through the API as well.
    const v6 = await createRule(cp, `${bed.a.v6Extra[0]}/128`);
    const eg = await createRule(cp, `${bed.a.v4Extra[2]}/32`, { direction: 'egress' });
    await agent.waitHealth('rules applied', (h) => BigInt(h.appliedRevision) >= eg.revision);
    assert.equal((await ping(bed, { from: 'a', src: bed.a.v6Extra[0]!, dst: bed.b.v6, count: 3 })).received, 0);
    assert.equal(
      (await ping(bed, { from: 'a', src: bed.a.v4Extra[2]!, dst: bed.b.v4, count: 3 })).received,
      0,
      'egress deny drops the replies',
    );
    // Exact counters at the control plane: every dropped packet, nothing more.
    await eventually(
      'control-plane counter of the rule',
      () => rulePackets(cp, agent.nodeName, rule.id),
      (n) => n === 10n,
    );
    await eventually(
      'IPv6 rule counter',
      () => rulePackets(cp, agent.nodeName, v6.rule.id),
      (n) => n === 3n,
    );
    await eventually(
      'egress rule counter',
      () => rulePackets(cp, agent.nodeName, eg.rule.id),
      (n) => n === 3n,
    );
    // Interface verdict totals too: 10 + 3 dropped on ingress, 3 replies dropped on egress.
    await eventually(
      'interface drop totals',
      () => interfaceDrops(cp, agent.nodeName),
      (d) => d.ingress === 13n && d.egress === 3n,
    );
    const del = await deleteRule(cp, rule.id);
    await agent.waitHealth('delete applied', (h) => BigInt(h.appliedRevision) >= del);
    assert.deepEqual(
      await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 3 }),
      { sent: 3, received: 3 },
      'deleting the rule lets packets through',
    );
    assert.equal(await rulePackets(cp, agent.nodeName, rule.id), 10n, 'the deleted rule keeps its final count');
    const node = await getNode(cp, agent.nodeName);
    assert.equal(node.syncState, SyncState.SYNC_STATE_IN_SYNC);
    assert.equal(node.rulesInKernel, 2n);
  });
});

test('kill -9 while a blocked source keeps sending: not one packet passes before, during or after; the restart resumes without a snapshot', async () => {
  await withE2E(pg, async ({ bed, cp, agent }) => {
    const blocked = bed.a.v4Extra[0]!;
    const open = bed.a.v4Extra[1]!;
    const { rule, revision } = await createRule(cp, `${blocked}/32`);
    await agent.waitHealth('rule applied', (h) => BigInt(h.appliedRevision) >= revision);
    const traffic = await StreamTraffic.start(bed, [blocked, open], bed.b.v4, 4);
    let result: Awaited<ReturnType<StreamTraffic['stop']>>;
    try {
      await new Promise((r) => setTimeout(r, 500));
      await agent.kill9();
      await new Promise((r) => setTimeout(r, 1000)); // no agent at all
      const during = await traffic.received();
      assert.ok((during[open] ?? 0) > 0, 'traffic flows while the agent is dead');
      assert.equal(during[blocked] ?? 0, 0, 'nothing from the blocked source while the agent is dead');
      await agent.restart();
      const h = await agent.waitHealth('resumed', (x) => x.syncState === 'in_sync');
      assert.equal(h.lastSyncMode, 'resume', 'resumed from the pinned revision');
      assert.equal(h.snapshots, 0, 'no snapshot');
      await new Promise((r) => setTimeout(r, 500));
      result = await traffic.stop();
    } catch (e) {
      traffic.kill();
      throw e;
    }
    assert.equal(result.received[blocked] ?? 0, 0, 'not one packet from the blocked source passed');
    assert.equal(result.received[open], result.sent[open], 'the open source lost nothing');
    // The control plane counted exactly the packets sent, across the restart.
    await eventually(
      'control-plane counter equals packets sent',
      () => rulePackets(cp, agent.nodeName, rule.id),
      (n) => n === BigInt(result.sent[blocked]!),
    );
    const starts = agent.records(/^sync started$/);
    assert.deepEqual(
      starts.map((r) => r.mode),
      ['snapshot', 'resume'],
    );
    assert.equal(starts[1]!.from, String(revision), 'hello carried the pinned revision');
  });
});

test('a change the kernel cannot take is refused at write time; one the control plane could not know of is NACKed with its reason and shown on the node', async () => {
  await withE2E(
    pg,
    async ({ bed, dbUrl, cp, agent }) => {
      const r1 = await createRule(cp, `${bed.a.v4Extra[0]}/32`);
      const r2 = await createRule(cp, `${bed.a.v4Extra[1]}/32`);
      await agent.waitHealth('two rules', (h) => BigInt(h.appliedRevision) >= r2.revision);
      // The agent reported its table capacity (2) in its Hello: a third rule is refused at write time.
      const refused = await createRule(cp, `${bed.a.v4Extra[2]}/32`).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      assert.equal(refused?.code, status.FAILED_PRECONDITION, refused?.details);
      assert.match(refused!.details, new RegExp(`node ${agent.nodeName}'s ingress IPv4 table holds 2 prefixes`));
      // An agent that does not report its capacity (an older one, say): the control plane cannot know, the kernel refuses.
      const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
      try {
        await sql`update nodes set capacity_per_table = 0 where name = ${agent.nodeName}`;
      } finally {
        await sql.end();
      }
      // The control plane re-reads capacities at most once a second: until then the rule is still refused.
      const r3 = await eventually(
        'the write accepted once the capacity is no longer known',
        () =>
          createRule(cp, `${bed.a.v4Extra[2]}/32`).catch((e: ServiceError) => {
            if (e.code === status.FAILED_PRECONDITION) return undefined;
            throw e;
          }),
        (r) => r !== undefined,
      ).then((r) => r!);
      const node = await eventually(
        'node degraded with the NACK',
        () => getNode(cp, agent.nodeName),
        (n) => n.nackedRevision === r3.revision && n.syncState === SyncState.SYNC_STATE_DEGRADED,
      );
      assert.equal(node.lastNack?.code, 8, 'RESOURCE_EXHAUSTED');
      assert.match(node.lastNack!.message, /ingress IPv4 table full: the rule set needs 3 prefixes, the table holds 2/);
      const info = ErrorInfo.decode(node.lastNack!.details[0]!.value);
      assert.equal(info.reason, 'TABLE_FULL');
      assert.equal(node.appliedRevision, r2.revision, 'applied revision stays at the last good one');
      // The kernel keeps the last good state.
      assert.equal((await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 2 })).received, 0);
      assert.equal((await ping(bed, { from: 'a', src: bed.a.v4Extra[2]!, dst: bed.b.v4, count: 2 })).received, 2);
      const h = await agent.health();
      assert.equal(h.syncState, 'degraded');
      assert.match(h.lastError, /table full/);
      // Making room: the next revision takes the whole desired set.
      const del = await deleteRule(cp, r1.rule.id);
      await eventually(
        'node back in sync',
        () => getNode(cp, agent.nodeName),
        (n) => n.appliedRevision === del && n.syncState === SyncState.SYNC_STATE_IN_SYNC,
      );
      assert.equal(
        (await ping(bed, { from: 'a', src: bed.a.v4Extra[2]!, dst: bed.b.v4, count: 2 })).received,
        0,
        'the refused rule is in now',
      );
      assert.equal((await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 2 })).received, 2);
    },
    { agentArgs: ['--capacity-prefixes', '2', '--capacity-slots', '64'] },
  );
});
