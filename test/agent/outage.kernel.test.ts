// Fail static, end to end: the control plane goes away for 30 s. The kernel
// keeps enforcing, a rule's expiry that falls in the outage is applied by the
// agent alone, rules created meanwhile (through another control plane on the
// same database) arrive once a control plane is back on the agent's address.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import type { TestControlPlane } from '../support/control-plane.js';
import { ping } from '../support/traffic.js';
import { SyncState } from '../../proto/gen/fleetwall/v1/node.js';
import { createRule, eventually, getNode, withE2E } from '../support/agent-e2e-rig.js';
import { StreamTraffic } from '../support/stream-traffic.js';

const OUTAGE_MS = 30_000;

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

test('control plane stopped for 30 s: enforcement unchanged, local expiry, rules created meanwhile arrive after reconnect', async () => {
  await withE2E(pg, async ({ bed, cp, link, agent, startControlPlane }) => {
    const [blocked, expiring, later] = bed.a.v4Extra as [string, string, string, string];
    // Over mutual TLS (the rig's default): the other control planes share the database and the CA.
    assert.ok(cp.tls, 'the control plane runs with TLS');
    assert.equal((await agent.health()).tls, true, 'the agent dials with its node certificate');
    const other = await startControlPlane();
    let restarted: TestControlPlane | undefined;
    try {
      await createRule(cp, `${blocked}/32`);
      const exp = await createRule(cp, `${expiring}/32`, { ttlSeconds: 12 });
      const expireAt = exp.rule.expireTime!.getTime();
      await agent.waitHealth('rules applied', (h) => BigInt(h.appliedRevision) >= exp.revision);
      assert.equal((await ping(bed, { from: 'a', src: expiring, dst: bed.b.v4, count: 1 })).received, 0);

      const traffic = await StreamTraffic.start(bed, [blocked, bed.a.v4], bed.b.v4, 10);
      let result: Awaited<ReturnType<StreamTraffic['stop']>>;
      try {
        // The outage: the control plane stops; nothing answers on the agent's address.
        await cp.stop();
        const outageStart = Date.now();
        await agent.waitHealth('disconnected', (h) => !h.connected && h.syncState === 'disconnected');
        // Meanwhile, another control plane on the same database takes a new rule.
        const created = await createRule(other, `${later}/32`);
        assert.equal((await ping(bed, { from: 'a', src: later, dst: bed.b.v4, count: 1 })).received, 1, 'not known to the agent yet');
        // The expiry falls inside the outage and is applied by the agent alone.
        assert.ok(expireAt < outageStart + OUTAGE_MS - 5000, 'the expiry is inside the outage');
        const h = await agent.waitHealth('local expiry', (x) => x.expiredLocally >= 1, OUTAGE_MS);
        assert.equal(h.connected, false, 'expired while disconnected');
        assert.ok(Date.now() >= expireAt);
        assert.equal(
          (await ping(bed, { from: 'a', src: expiring, dst: bed.b.v4, count: 2 })).received,
          2,
          'the expired rule no longer drops',
        );
        // Stay out for the full 30 s, then a control plane comes back on the agent's address.
        await new Promise((r) => setTimeout(r, Math.max(0, outageStart + OUTAGE_MS - Date.now())));
        const mid = await traffic.received();
        assert.equal(mid[blocked] ?? 0, 0, 'enforcement unchanged during the outage');
        assert.equal((await agent.health()).connected, false, 'still cut off after 30 s');
        restarted = await startControlPlane();
        link.retarget(restarted.target);
        const back = await agent.waitHealth(
          'reconnected and caught up',
          (x) => x.connected && BigInt(x.appliedRevision) >= created.revision,
          30_000,
        );
        assert.equal(back.lastSyncMode, 'resume', 'resumed, no snapshot');
        assert.equal(back.snapshots, 1, 'only the first sync was a snapshot');
        assert.equal(
          (await ping(bed, { from: 'a', src: later, dst: bed.b.v4, count: 2 })).received,
          0,
          'the rule created during the outage is enforced',
        );
        result = await traffic.stop();
      } catch (e) {
        traffic.kill();
        throw e;
      }
      assert.equal(result.received[blocked] ?? 0, 0, 'not one packet of the blocked source in the whole run');
      assert.equal(result.received[bed.a.v4], result.sent[bed.a.v4], 'the open source lost nothing');
      const node = await eventually(
        'node in sync on the restarted control plane',
        () => getNode(restarted!, agent.nodeName),
        (n) => n.connected && n.syncState === SyncState.SYNC_STATE_IN_SYNC,
      );
      assert.ok(node.appliedRevision >= 3n);
    } finally {
      await restarted?.stop();
      await other.stop();
    }
  });
});
