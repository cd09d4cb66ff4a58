// The lockout guard end to end (issue 15 "what it must show"): real
// Postgres, a real control plane, a real agent on the real datapath, real
// packets between network namespaces. The agent in namespace b reaches its
// control plane at 192.0.2.1 - an address of namespace a, over the veth its
// XDP and TC programs guard (a forwarder there leads to the control plane) -
// so a deny can cover the control plane's address. The control plane is
// told that address is protected (--protected-cidrs: the address its agents
// reach it by). A deny of it is refused; with an admin's force it is
// stored, and the agent's failsafe entries keep its stream up: the forced
// rules themselves are ACKed, later rules arrive, other blocked sources
// still drop, and the delete that undoes the forced rules arrives and
// applies. Also in allowlist mode, where nothing but the failsafe entries
// lets the agent reach its control plane at all. Over mutual TLS, as
// deployed: the agent is enrolled with a join token and its Sync stream
// carries its node certificate (the control plane's certificate names the
// address the agent dials).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { ExplainRequest, Verdict } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { SyncState } from '../../proto/gen/fleetwall/v1/node.js';
import { Action, Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { AgentProcess, UdsProxy } from '../support/agent-process.js';
import { createJoinToken, createRule, deleteRule, getNode } from '../support/agent-e2e-rig.js';
import { tempDataDir } from '../support/tls-control-plane.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { withNetnsPair, type NetnsPair } from '../support/netns.js';
import { NetnsForwarder } from '../support/netns-forwarder.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { ping } from '../support/traffic.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

interface Rig {
  bed: NetnsPair;
  cp: TestControlPlane;
  agent: AgentProcess;
  /** The control plane's address as the agent sees it (namespace a). */
  cpAddress: string;
}

async function withLockoutRig(agentArgs: string[], fn: (r: Rig) => Promise<void>): Promise<void> {
  await withNetnsPair(async (bed) => {
    const cpAddress = bed.a.v4;
    const dataDir = tempDataDir('lockout');
    const cp = await startTestControlPlane(await pg.newDatabase(), {
      pingIntervalMs: 1000,
      protectedCidrs: [`${cpAddress}/32`],
      tls: true,
      dataDir,
      tlsSans: [cpAddress],
    });
    const link = await UdsProxy.start(cp.target);
    let fwd: NetnsForwarder | undefined;
    let agent: AgentProcess | undefined;
    try {
      fwd = await NetnsForwarder.start(bed, 'a', cpAddress, link.path);
      const join = await createJoinToken(cp, { labels: { zone: 'test' } });
      agent = await AgentProcess.start({
        bed,
        controlPlane: fwd.target,
        enroll: { joinToken: join.token, caCertHash: join.caCertHash },
        args: agentArgs,
      });
      await agent.waitHealth('first sync over the veth', (h) => h.syncState === 'in_sync');
      assert.equal((await agent.health()).tls, true, 'mutual TLS with its node certificate');
      await fn({ bed, cp, agent, cpAddress });
    } catch (e) {
      if (agent && e instanceof Error) e.message += `\n--- agent log (tail) ---\n${agent.tail(40)}`;
      throw e;
    } finally {
      await agent?.cleanup();
      await fwd?.stop();
      await link.close();
      await cp.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
}

function forcedDeny(cp: TestControlPlane, cidr: string, direction = Direction.DIRECTION_INGRESS) {
  return unaryCall(
    cp.clients.rules,
    'createRule',
    CreateRuleRequest.fromPartial({ rule: { cidr, action: Action.ACTION_DENY, direction }, force: true }),
  );
}

/** The node's applied revision reaches `rev`: the revision went out over the stream and its ACK came back. */
async function nodeApplied(cp: TestControlPlane, name: string, rev: bigint): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const n = await getNode(cp, name);
    if (n.appliedRevision >= rev && n.connected) return;
    if (Date.now() > deadline)
      throw new Error(`node ${name} did not ACK revision ${rev}: at ${n.appliedRevision}, connected ${n.connected}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a forced deny of the control plane's address: the agent keeps its control plane, other blocked sources drop, the undo arrives and applies", async () => {
  await withLockoutRig([], async ({ bed, cp, agent, cpAddress }) => {
    const h0 = await agent.health();
    assert.deepEqual(h0.failsafe, [{ cidr: `${cpAddress}/32`, source: `control plane ${agent.opts.controlPlane}` }]);
    // Without force: refused, naming the address.
    const e = await callError(
      unaryCall(
        cp.clients.rules,
        'createRule',
        CreateRuleRequest.fromPartial({ rule: { cidr: `${cpAddress}/32`, action: Action.ACTION_DENY } }),
      ),
    );
    assert.equal(e.code, status.FAILED_PRECONDITION);
    assert.equal(errorInfoOf(e)!.metadata.protected, `${cpAddress}/32`);
    // Another source, blocked.
    const blocked = bed.a.v4Extra[0]!;
    const other = await createRule(cp, `${blocked}/32`);
    await nodeApplied(cp, agent.nodeName, other.revision);
    assert.deepEqual(await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 });
    // Forced: the whole /24 the control plane is in (ingress, by source) and the control plane itself (egress, by destination).
    const in24 = await forcedDeny(cp, '192.0.2.0/24');
    const out32 = await forcedDeny(cp, `${cpAddress}/32`, Direction.DIRECTION_EGRESS);
    // Both ACKed through the control plane: its packets came in, the ACKs went out.
    await nodeApplied(cp, agent.nodeName, out32.revision);
    const covered = bed.a.v4Extra[1]!;
    assert.deepEqual(
      await ping(bed, { from: 'a', src: covered, dst: bed.b.v4, count: 3 }),
      { sent: 3, received: 0 },
      'the /24 drops the rest',
    );
    assert.deepEqual(
      await ping(bed, { from: 'a', src: cpAddress, dst: bed.b.v4, count: 3 }),
      { sent: 3, received: 3 },
      "the control plane's address passes both ways (the failsafe allows beat the forced denies)",
    );
    // The stream stays up: a later rule arrives and is ACKed on the same stream.
    const later = await createRule(cp, `${bed.a.v4Extra[2]}/32`);
    await nodeApplied(cp, agent.nodeName, later.revision);
    const h1 = await agent.health();
    assert.equal(h1.reconnects, h0.reconnects, 'the same stream throughout');
    assert.equal((await getNode(cp, agent.nodeName)).syncState, SyncState.SYNC_STATE_IN_SYNC);
    // Explain names the failsafe entry as the reason.
    const ex = await unaryCall(cp.clients.explain, 'explain', ExplainRequest.fromPartial({ address: cpAddress, nodeName: agent.nodeName }));
    assert.equal(ex.verdict, Verdict.VERDICT_PASS);
    assert.equal(ex.failsafe?.cidr, `${cpAddress}/32`);
    // The undo arrives and applies.
    await deleteRule(cp, in24.rule!.id);
    const undo = await deleteRule(cp, out32.rule!.id);
    await nodeApplied(cp, agent.nodeName, undo);
    await agent.waitHealth('undo applied', (h) => BigInt(h.appliedRevision) >= undo);
    assert.deepEqual(await ping(bed, { from: 'a', src: covered, dst: bed.b.v4, count: 3 }), { sent: 3, received: 3 }, 'open again');
    assert.deepEqual(
      await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 3 }),
      { sent: 3, received: 0 },
      'the other rule still drops',
    );
  });
});

test('allowlist mode (--default-action drop): only the failsafe entries let the agent reach its control plane; forced denies and their undo pass through them', async () => {
  await withLockoutRig(['--default-action', 'drop'], async ({ bed, cp, agent, cpAddress }) => {
    // In sync with no allow rule at all: everything but the failsafe entries drops.
    const src = bed.a.v4Extra[0]!;
    assert.deepEqual(await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 }, 'the drop default');
    const f1 = await forcedDeny(cp, `${cpAddress}/32`);
    const f2 = await forcedDeny(cp, '0.0.0.0/0', Direction.DIRECTION_EGRESS);
    await nodeApplied(cp, agent.nodeName, f2.revision);
    const allow = await createRule(cp, `${src}/32`, { action: 'allow' });
    const allowOut = await createRule(cp, `${src}/32`, { action: 'allow', direction: 'egress' });
    await nodeApplied(cp, agent.nodeName, allowOut.revision);
    assert.deepEqual(
      await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 3 }),
      { sent: 3, received: 3 },
      'allowed both ways (the egress allow beats the egress deny of 0.0.0.0/0)',
    );
    await deleteRule(cp, f1.rule!.id);
    const undo = await deleteRule(cp, f2.rule!.id);
    await nodeApplied(cp, agent.nodeName, undo);
    await deleteRule(cp, allow.rule.id);
    const del = await deleteRule(cp, allowOut.rule.id);
    await nodeApplied(cp, agent.nodeName, del);
    assert.deepEqual(await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 }, 'the drop default again');
    assert.equal((await agent.health()).reconnects, 1, 'one stream from start to end');
  });
});
