// Detection policies end to end (issue 18): a real control plane and
// Postgres, two real agent processes on the real datapath, each guarding
// the veth of its own pair of namespaces (both pairs use the same
// addresses, so "the same source" can be sent to either node), real ICMP
// floods. A source flooding node 1 above the policy's threshold is dropped
// there at once (the local ban) and then on node 2 (the fleet ban); a source
// below the threshold and an allowed source flooding are never banned; the
// ban expires on time and traffic returns; the repeat offence gets the
// escalated duration; monitor mode bans nothing. Over mutual TLS, as in
// production: the agents enroll with join tokens, and their detections ride
// the Sync stream their node certificate authenticates.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { detectionPolicy, sec } from '../support/policy-fixtures.js';
import { ping } from '../support/traffic.js';
import { withNetnsPair } from '../support/netns.js';
import { startTestControlPlane, unaryCall } from '../support/control-plane.js';
import { AgentProcess, UdsProxy } from '../support/agent-process.js';
import { createJoinToken, createRule, eventually } from '../support/agent-e2e-rig.js';
import { tempDataDir } from '../support/tls-control-plane.js';
import { rmSync } from 'node:fs';
import { type DetectionPolicy, PolicyProtocol } from '../../proto/gen/fleetwall/v1/policy.js';
import { Mode } from '../../proto/gen/fleetwall/v1/rule.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

function icmpPolicy(name: string, mode = Mode.MODE_ENFORCE): DetectionPolicy {
  // 30 packets a second over a 1 s window; a ban of 15 s, doubling, no jitter.
  return detectionPolicy({
    name,
    match: { protocol: PolicyProtocol.POLICY_PROTOCOL_ICMP, ports: [], tcpSynOnly: false },
    threshold: { packetsPerSecond: 30n },
    response: { duration: sec(15), maxDuration: sec(60) },
    mode,
  });
}

test('detection policies with two agents: local ban at once, fleet ban on the other node, allowed and slower sources never banned, expiry, escalation, monitor', async () => {
  await withNetnsPair(async (bed1) =>
    withNetnsPair(async (bed2) => {
      const dataDir = tempDataDir('respond');
      const cp = await startTestControlPlane(await pg.newDatabase(), { pingIntervalMs: 1000, tls: true, dataDir });
      const link = await UdsProxy.start(cp.target);
      const agents: AgentProcess[] = [];
      try {
        for (const bed of [bed1, bed2]) {
          const join = await createJoinToken(cp, { labels: { zone: 'test' } });
          agents.push(
            await AgentProcess.start({
              bed,
              controlPlane: link.address,
              labels: 'zone=test',
              enroll: { joinToken: join.token, caCertHash: join.caCertHash },
            }),
          );
        }
        const [n1, n2] = agents as [AgentProcess, AgentProcess];
        for (const a of agents) await a.waitHealth('first sync', (h) => h.syncState === 'in_sync');
        const open = (bed: typeof bed1, src: string) => ping(bed, { from: 'a', src, dst: bed.b.v4, count: 2, interval: 0.1 });
        const attacker = bed1.a.v4Extra[1]!; // 192.0.2.3 (the same address in bed2)

        await unaryCall(cp.clients.policies, 'createPolicy', { policy: icmpPolicy('icmp-flood') });
        for (const a of agents) await a.waitHealth('the policy in the kernel', (h) => (h.respond as { policies: number }).policies === 1);

        // Below the threshold (20/s against 30/s): never banned.
        const slow = await ping(bed1, { from: 'a', src: bed1.a.v4Extra[0]!, dst: bed1.b.v4, count: 40, interval: 0.05 });
        assert.deepEqual(slow, { sent: 40, received: 40 }, 'a source below the threshold passes');

        // A flood on node 1: dropped there once the local ban is in (well before the flood ends) ...
        const flood = await ping(bed1, { from: 'a', src: attacker, dst: bed1.b.v4, count: 200, interval: 0.005 });
        assert.ok(
          flood.received >= 30 && flood.received < 150,
          `node 1 let the first ~30 through, then dropped (${flood.received} of 200)`,
        );
        assert.equal((await open(bed1, attacker)).received, 0, 'banned on node 1');
        // ... and on node 2, which never saw it, once the fleet ban arrives.
        await eventually(
          'the fleet ban on node 2',
          () => open(bed2, attacker),
          (r) => r.received === 0,
        );
        assert.deepEqual(await open(bed2, bed2.a.v4Extra[0]!), { sent: 2, received: 2 }, 'other sources pass on node 2');
        const [ban] = (await unaryCall(cp.clients.policies, 'listBans', { policy: '' })).bans;
        assert.equal(ban?.source, `${attacker}/32`);
        assert.equal(ban?.node, n1.nodeName);
        assert.equal(ban?.offences, 1);
        const rule = (await unaryCall(cp.clients.rules, 'getRule', { id: ban!.ruleId })).rule!;
        assert.equal(rule.createdBy, 'policy:icmp-flood');
        const h1 = await n1.health();
        assert.ok(Number((h1.respond as { localBans: number }).localBans) >= 1, 'node 1 banned it locally');

        // An allowed source flooding: counted and detected, but the allow wins in the kernel and the control plane exempts it.
        const allowed = bed1.a.v4Extra[2]!;
        const allow = await createRule(cp, `${allowed}/32`, { action: 'allow' });
        for (const a of agents) await a.waitHealth('the allow', (h) => BigInt(h.appliedRevision) >= allow.revision);
        const af = await ping(bed1, { from: 'a', src: allowed, dst: bed1.b.v4, count: 200, interval: 0.005 });
        assert.equal(af.received, 200, 'an allowed source is never dropped');
        await eventually(
          'the exemption counted',
          async () => (await unaryCall(cp.clients.policies, 'getPolicy', { name: 'icmp-flood' })).policy!,
          (p) => p.exempted >= 1n,
        );
        const listed = (await unaryCall(cp.clients.policies, 'listBans', { policy: '' })).bans.map((b) => b.source);
        assert.ok(!listed.includes(`${allowed}/32`), `no ban for the allowed source (${listed.join(', ')})`);

        // The ban expires on time (15 s) and traffic returns on both nodes.
        await eventually(
          'traffic back on node 1',
          () => open(bed1, attacker),
          (r) => r.received === 2,
          30_000,
        );
        await eventually(
          'traffic back on node 2',
          () => open(bed2, attacker),
          (r) => r.received === 2,
          30_000,
        );
        assert.ok(Date.now() >= rule.expireTime!.getTime() - 1000, 'not before the ban expired');

        // The repeat offence: 15 s x 2.
        await ping(bed2, { from: 'a', src: attacker, dst: bed2.b.v4, count: 200, interval: 0.005 });
        const again = await eventually(
          'the second offence',
          async () => (await unaryCall(cp.clients.policies, 'listBans', { policy: '' })).bans,
          (l) => l.length === 1 && l[0]!.offences === 2,
        );
        assert.equal(again[0]!.node, n2.nodeName, 'detected by node 2 this time');
        const r2 = (await unaryCall(cp.clients.rules, 'getRule', { id: again[0]!.ruleId })).rule!;
        const ttl = r2.expireTime!.getTime() - r2.createTime!.getTime();
        assert.ok(ttl >= 29_900 && ttl <= 30_100, `escalated: 30 s (${ttl} ms)`);
        await eventually(
          'the second ban on node 1',
          () => open(bed1, attacker),
          (r) => r.received === 0,
        );

        // Monitor mode: detections, no ban.
        await unaryCall(cp.clients.policies, 'deletePolicy', { name: 'icmp-flood' });
        await unaryCall(cp.clients.policies, 'createPolicy', { policy: icmpPolicy('icmp-watch', Mode.MODE_MONITOR) });
        await n1.waitHealth('the monitor policy', (h) => (h.respond as { policies: number }).policies === 1);
        await new Promise((r) => setTimeout(r, 500)); // the new set is in the kernel before the flood
        const watched = bed1.a.v4Extra[3]!;
        const mf = await ping(bed1, { from: 'a', src: watched, dst: bed1.b.v4, count: 200, interval: 0.005 });
        assert.equal(mf.received, 200, 'monitor mode drops nothing');
        await eventually(
          'the monitor detection',
          async () => (await unaryCall(cp.clients.policies, 'getPolicy', { name: 'icmp-watch' })).policy!,
          (p) => p.detections >= 1n,
        );
        assert.deepEqual((await unaryCall(cp.clients.policies, 'listBans', { policy: 'icmp-watch' })).bans, [], 'monitor bans nothing');
      } catch (e) {
        if (e instanceof Error) for (const a of agents) e.message += `\n--- ${a.nodeName} log (tail) ---\n${a.tail(30)}`;
        throw e;
      } finally {
        for (const a of agents) await a.cleanup();
        await link.close();
        await cp.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }),
  );
});
