// A subscribed list end to end: a publisher on 127.0.0.1 whose file changes
// between refreshes, the real control plane, a real agent process enforcing
// on a veth in a network namespace, real packets. Each refresh reaches the
// kernel as one revision (one ACK of the agent); an address the list drops
// passes again, one it adds is dropped; 304 changes nothing; removing the
// list opens everything it blocked and leaves the operator's rule.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RefreshOutcome } from '../../proto/gen/fleetwall/v1/list_service.js';
import { createRule, eventually, getNode, withE2E } from '../support/agent-e2e-rig.js';
import { startListServer } from '../support/list-server.js';
import { listsApi } from '../support/lists-api.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { ping } from '../support/traffic.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

/** Public-looking filler so the list is a list, never local. */
const filler = Array.from({ length: 200 }, (_, i) => `45.83.${i >> 4}.${(i & 15) * 16}/28`);

test('a list refresh reaches the kernel as one revision: the removed address passes, the added one drops; 304 is nothing; rm opens what it blocked', async () => {
  await withE2E(pg, async ({ bed, cp, agent }) => {
    const [x, y, z] = bed.a.v4Extra as [string, string, string];
    const srv = await startListServer(`# test list\n${x} ; first\n${filler.join('\n')}\n`);
    try {
      const lists = listsApi(cp.clients.lists, 'test:kernel');
      const mine = await createRule(cp, `${z}/32`);
      const added = await lists.create({ list: { name: 'kernel-list', url: srv.url } });
      const r1 = added.list!.lastRefresh!.revision;
      assert.ok(r1 > mine.revision);
      const h1 = await agent.waitHealth('the list in the kernel', (h) => BigInt(h.appliedRevision) >= r1);
      assert.equal(h1.rulesInKernel, filler.length + 2, 'the list and the operator rule');
      assert.deepEqual(await ping(bed, { from: 'a', src: x, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 }, 'x is on the list');
      assert.deepEqual(await ping(bed, { from: 'a', src: y, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 }, 'y is not');

      // x goes, y comes: one revision, one ACK.
      srv.set(`# test list\n${y} ; second\n${filler.join('\n')}\n`);
      const acksBefore = (await agent.health()).acks;
      const refreshed = await lists.refresh('kernel-list');
      assert.equal(refreshed.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED);
      assert.deepEqual([refreshed.result!.added, refreshed.result!.removed], [1n, 1n]);
      const r2 = refreshed.result!.revision;
      assert.equal(r2, r1 + 1n, 'the next revision');
      const h2 = await agent.waitHealth('the refresh in the kernel', (h) => BigInt(h.appliedRevision) >= r2);
      assert.equal(h2.acks, acksBefore + 1, 'one delta, one ACK');
      assert.equal(h2.rulesInKernel, filler.length + 2);
      assert.deepEqual(await ping(bed, { from: 'a', src: x, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 }, 'x passes again');
      assert.deepEqual(await ping(bed, { from: 'a', src: y, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 }, 'y is dropped');

      const same = await lists.refresh('kernel-list');
      assert.equal(same.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED);
      assert.equal((await agent.health()).appliedRevision, r2.toString(), 'no revision for a 304');

      const rm = await lists.delete('kernel-list');
      assert.equal(rm.removed, BigInt(filler.length + 1));
      await agent.waitHealth('the removal in the kernel', (h) => BigInt(h.appliedRevision) >= rm.revision);
      assert.deepEqual(await ping(bed, { from: 'a', src: y, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 }, 'y passes');
      assert.deepEqual(
        await ping(bed, { from: 'a', src: z, dst: bed.b.v4, count: 2 }),
        { sent: 2, received: 0 },
        "the operator's rule stays",
      );
      await eventually(
        'the node reports one rule in its kernel',
        () => getNode(cp, agent.nodeName),
        (n) => n.rulesInKernel === 1n,
      );
    } finally {
      await srv.close();
    }
  });
});
