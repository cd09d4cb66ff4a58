// Node certificates end to end (issue 15 part 3): a real agent process,
// enrolled, against a control plane with TLS that issues certificates valid
// for a few seconds. The agent renews them over its connection and moves its
// Sync stream to each renewed certificate (resuming, no snapshot) while a
// blocked source keeps sending: not one of its packets passes across the
// renewals, a rule created in between is enforced, and the control plane's
// counter equals the packets sent. And an agent given a wrong CA pin exits,
// saying why, without sending its join token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ListJoinTokensRequest } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { SyncState } from '../../proto/gen/fleetwall/v1/node.js';
import { AgentProcess } from '../support/agent-process.js';
import { createJoinToken, createRule, eventually, getNode, rulePackets, withE2E } from '../support/agent-e2e-rig.js';
import { unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { StreamTraffic } from '../support/stream-traffic.js';
import { ping } from '../support/traffic.js';

const CERT_TTL_MS = 5000;

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

test('certificates valid for 5 s: the agent renews them and moves its stream over, and enforcement never lapses', async () => {
  await withE2E(
    pg,
    async ({ bed, cp, agent }) => {
      const [blocked, open, later] = bed.a.v4Extra as [string, string, string, string];
      const first = await agent.health();
      assert.equal(first.tls, true);
      const expires0 = Date.parse(String(first.certificateExpires));
      assert.ok(expires0 - Date.now() <= CERT_TTL_MS, 'a short-lived certificate');

      const { rule, revision } = await createRule(cp, `${blocked}/32`);
      await agent.waitHealth('rule applied', (h) => BigInt(h.appliedRevision) >= revision);
      const traffic = await StreamTraffic.start(bed, [blocked, open], bed.b.v4, 4);
      let result: Awaited<ReturnType<StreamTraffic['stop']>>;
      try {
        // Two renewals (each moves the stream), then a change must still arrive over the moved stream.
        await agent.waitHealth('two renewals', (h) => Number(h.certificateRenewals) >= 2 && Number(h.streamSwitches) >= 2, 30_000);
        const created = await createRule(cp, `${later}/32`);
        await agent.waitHealth('the later rule applied', (h) => BigInt(h.appliedRevision) >= created.revision);
        assert.equal((await ping(bed, { from: 'a', src: later, dst: bed.b.v4, count: 2 })).received, 0, 'enforced');
        // And past the first certificate's expiry by several lifetimes: the agent keeps renewing.
        // (Renewal starts when the identity opens, so four renewals can come before that time: wait for both.)
        const h = await agent.waitHealth(
          'four renewals and four stream moves, connected, well past the first certificate',
          (x) =>
            Number(x.certificateRenewals) >= 4 &&
            // A renewal is counted before its stream moves: wait for the fourth move too.
            Number(x.streamSwitches) >= 4 &&
            x.connected &&
            Date.now() > expires0 + CERT_TTL_MS,
          30_000,
        );
        assert.ok(Date.parse(String(h.certificateExpires)) > Date.now(), 'the current certificate is valid');
        result = await traffic.stop();
      } catch (e) {
        traffic.kill();
        throw e;
      }
      assert.equal(result.received[blocked] ?? 0, 0, 'not one packet from the blocked source across the renewals');
      assert.equal(result.received[open], result.sent[open], 'the open source lost nothing');
      // Each move resumed from the applied revision: one snapshot (the first sync), the rest resumes.
      const starts = agent.records(/^sync started$/).map((r) => r.mode);
      assert.equal(starts[0], 'snapshot');
      assert.ok(starts.length >= 5, `a stream per certificate (${starts.length})`);
      assert.deepEqual(new Set(starts.slice(1)), new Set(['resume']));
      assert.equal(agent.records(/lost the control plane/).length, 0, 'never cut off: every stream was moved, none broke');
      // The counters continued across the streams: the control plane counted exactly the packets sent.
      await eventually(
        'control-plane counter equals packets sent',
        () => rulePackets(cp, agent.nodeName, rule.id),
        (n) => n === BigInt(result.sent[blocked]!),
      );
      // (Streams keep moving every ~2.5 s: the node is in sync between moves.)
      await eventually(
        'node connected and in sync',
        () => getNode(cp, agent.nodeName),
        (n) => n.connected && n.syncState === SyncState.SYNC_STATE_IN_SYNC,
      );
    },
    { cpOverrides: { nodeCertTtlMs: CERT_TTL_MS } },
  );
});

test('a wrong CA pin: the agent exits, saying why, and the join token stays unused', async () => {
  await withE2E(pg, async ({ bed, cp, link }) => {
    const jt = await createJoinToken(cp, {});
    const wrong = `sha256:${'f'.repeat(64)}`;
    await assert.rejects(
      AgentProcess.start({ bed, controlPlane: link.address, enroll: { joinToken: jt.token, caCertHash: wrong } }),
      (e: Error) =>
        /agent exited before ready \(exit 1\)/.test(e.message) &&
        /refusing to enroll: the CA of the control plane/.test(e.message) &&
        e.message.includes(wrong),
    );
    const usable = await unaryCall(cp.clients.enrollment, 'listJoinTokens', ListJoinTokensRequest.fromPartial({}));
    assert.ok(
      usable.joinTokens.some((x) => x.id === jt.joinToken!.id),
      'not used',
    );
  });
});
