// Sampled drop events end to end: a real agent enforcing on the veth of a
// network namespace, two control-plane processes on one Postgres (the agent
// connected to the first, watchers on the second), real pings and UDP from
// blocked addresses. Events carry the rule, addresses, protocol, ports and
// direction (ingress and egress rules); the weights of a rule add up to its
// drop counter (the budget here is larger than the traffic, so every drop is
// an event of weight 1: the bound is 0); filters select exactly; TopSources
// names the blocked source; bad filters are INVALID_ARGUMENT naming the field.

import { after, before, test } from 'node:test';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { EventVerdict } from '../../proto/gen/fleetwall/v1/event.js';
import { Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { createRule, eventually, rulePackets, withE2E } from '../support/agent-e2e-rig.js';
import { errorInfoOf, startTestControlPlane } from '../support/control-plane.js';
import { inspectClient, topSources, watchEvents } from '../support/inspect-client.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { ping, udp } from '../support/traffic.js';

const execFileAsync = promisify(execFile);
const BIN = resolve(import.meta.dirname, '../../bin/fleetwall.mjs');

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

const sum = (xs: readonly { weight: bigint }[]) => xs.reduce((s, e) => s + e.weight, 0n);

test('drop events reach a watcher on another control-plane process with rule, addresses, protocol, ports, direction; weights = counters; filters; top sources; bad filters', async () => {
  await withE2E(
    pg,
    async ({ bed, dbUrl, cp, agent }) => {
      const cp2 = await startTestControlPlane(dbUrl, { controlPlaneId: `inspect-cp2-${process.pid}` });
      const c2 = inspectClient(cp2.target);
      try {
        const [blocked, egressBlocked] = bed.a.v4Extra as [string, string];
        const r1 = (await createRule(cp, `${blocked}/32`)).rule;
        const r2 = (await createRule(cp, `${egressBlocked}/32`, { direction: 'egress' })).rule;
        await eventually(
          'rules in the kernel',
          async () => agent.health(),
          (h) => h.rulesInKernel >= 2 && h.syncState === 'in_sync',
        );

        const live = watchEvents(c2, { follow: true, allow: [{ ruleIds: [r1.id, r2.id] }] });
        await new Promise((r) => setTimeout(r, 300));
        // Ingress: pings and UDP from the blocked source are dropped by XDP.
        assert.deepEqual(await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 4 }), { sent: 4, received: 0 });
        assert.deepEqual(await udp(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 6, port: 40404 }), { sent: 6, received: 0 });
        // Egress: b's echo replies to egressBlocked are shot by TC.
        assert.deepEqual(await ping(bed, { from: 'a', src: egressBlocked, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 });

        const node = agent.nodeName;
        const packets1 = await eventually(
          'rule 1 counted',
          () => rulePackets(cp, node, r1.id),
          (p) => p >= 10n,
        );
        const packets2 = await eventually(
          'rule 2 counted',
          () => rulePackets(cp, node, r2.id),
          (p) => p >= 3n,
        );
        await eventually(
          'the agent sent events',
          async () => (await agent.health()) as unknown as { events: { sent: number } },
          (h) => h.events.sent >= 13,
        );
        await eventually(
          'every drop as an event on the second process',
          async () => live.events,
          (ev) => sum(ev.filter((e) => e.ruleId === r1.id)) === packets1 && sum(ev.filter((e) => e.ruleId === r2.id)) === packets2,
        );
        live.cancel();
        const ev1 = live.events.filter((e) => e.ruleId === r1.id);
        const icmp = ev1.filter((e) => e.protocol === 1);
        const udpEv = ev1.filter((e) => e.protocol === 17);
        assert.equal(icmp.length, 4, 'one event per dropped echo request (weight 1 each: the budget exceeds the traffic)');
        assert.equal(udpEv.length, 6);
        for (const e of ev1) {
          assert.equal(e.nodeName, node);
          assert.equal(e.source, blocked);
          assert.equal(e.destination, bed.b.v4);
          assert.equal(e.direction, Direction.DIRECTION_INGRESS);
          assert.equal(e.verdict, EventVerdict.EVENT_VERDICT_DROP);
          assert.equal(e.weight, 1n);
          assert.equal(e.interface, bed.b.ifname);
          assert.ok(e.length > 0);
        }
        assert.deepEqual([icmp[0]!.sourcePort, icmp[0]!.destinationPort], [8, 0], 'ICMP echo request: type 8, code 0');
        assert.equal(udpEv[0]!.destinationPort, 40404);
        const ev2 = live.events.filter((e) => e.ruleId === r2.id);
        assert.equal(ev2.length, 3);
        for (const e of ev2) {
          assert.equal(e.direction, Direction.DIRECTION_EGRESS);
          assert.equal(e.source, bed.b.v4);
          assert.equal(e.destination, egressBlocked);
          assert.deepEqual([e.protocol, e.sourcePort], [1, 0], 'ICMP echo reply: type 0');
        }

        // Filters over the history of the second process, exactly.
        const since = new Date(Date.now() - 120_000);
        const hist = async (req: object) => {
          const w = watchEvents(c2, { since, ...req });
          assert.equal(await w.done, null);
          return w.events;
        };
        const all = (await hist({})).filter((e) => e.ruleId === r1.id || e.ruleId === r2.id);
        assert.equal(all.length, 13);
        assert.deepEqual(
          (await hist({ allow: [{ protocols: ['udp'] }] })).map((e) => e.sequence),
          all.filter((e) => e.protocol === 17).map((e) => e.sequence),
        );
        assert.deepEqual(
          (await hist({ allow: [{ sourceCidrs: [`${blocked}/32`], ports: [40404] }] })).map((e) => e.sequence),
          udpEv.map((e) => e.sequence),
        );
        assert.deepEqual(
          (await hist({ deny: [{ directions: [Direction.DIRECTION_INGRESS] }] })).filter((e) => e.ruleId === r1.id),
          [],
        );
        assert.deepEqual(
          (await hist({ allow: [{ destinationCidrs: [`${egressBlocked}/32`] }, { protocols: ['icmp'], ruleIds: [r1.id] }] })).map(
            (e) => e.sequence,
          ),
          all.filter((e) => e.ruleId === r2.id || (e.ruleId === r1.id && e.protocol === 1)).map((e) => e.sequence),
        );
        assert.equal((await hist({ limit: 2 })).length, 2);

        // Top sources: the blocked source first for its rule, with every drop.
        const top = await topSources(c2, { ruleIds: [r1.id], window: { seconds: 300n, nanos: 0 } });
        assert.equal(top.rules.length, 1);
        assert.equal(top.rules[0]!.sources[0]!.address, blocked);
        assert.equal(top.rules[0]!.sources[0]!.packets, packets1);
        assert.deepEqual(top.rules[0]!.sources[0]!.nodeNames, [node]);

        // Over HTTP on the first process: NDJSON.
        const res = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/events?since=2m&rule=${r2.id}`);
        assert.equal(res.status, 200);
        const lines = (await res.text())
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        assert.equal(lines.length, 3);
        assert.equal(lines[0].destination, egressBlocked);
        const topHttp = (await (await fetch(`http://127.0.0.1:${cp.httpPort}/v1/top-sources?rule=${r1.id}&window=5m`)).json()) as {
          rules: { sources: { address: string }[] }[];
        };
        assert.equal(topHttp.rules[0]?.sources[0]?.address, blocked);

        // The CLI: a line per event, and a pcap tcpdump reads (headers synthesized: snap length 0).
        const cli = (...args: string[]) =>
          execFileAsync(process.execPath, [BIN, '--server', cp2.target, ...args], { encoding: 'utf8' }).then((r) => r.stdout);
        const text = await cli('events', '--rule', String(r1.id), '--proto', 'udp');
        const textLines = text.trim().split('\n');
        assert.equal(textLines.length, 6, text);
        assert.match(
          textLines[0]!,
          new RegExp(`ingress drop rule ${r1.id} udp ${blocked.replace(/\./g, '\\.')}:\\d+ > .*:40404 len \\d+ x1$`),
        );
        const dir = mkdtempSync(join(tmpdir(), 'fw-pcap-'));
        try {
          const file = join(dir, 'drops.pcap');
          await cli('events', '--since', '5m', '--rule', `${r1.id},${r2.id}`, '--pcap', file);
          const dump = (await execFileAsync('tcpdump', ['-n', '-r', file], { encoding: 'utf8' })).stdout.trim().split('\n');
          assert.equal(dump.length, 13, dump.join('\n'));
          assert.equal(dump.filter((l) => l.includes(`${blocked}.`) && l.includes('.40404: UDP')).length, 6, dump.join('\n'));
          assert.equal(dump.filter((l) => l.includes(`${blocked} > ${bed.b.v4}: ICMP echo request`)).length, 4, dump.join('\n'));
          assert.equal(dump.filter((l) => l.includes(`${bed.b.v4} > ${egressBlocked}: ICMP echo reply`)).length, 3, dump.join('\n'));
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
        const topText = await cli('top', '--rule', String(r1.id), '--window', '5m');
        assert.match(topText, new RegExp(`${r1.id}\\s+${blocked.replace(/\./g, '\\.')}\\s+${packets1}\\s`));

        // Bad filters: INVALID_ARGUMENT naming the field, over gRPC and HTTP.
        for (const [req, field] of [
          [{ allow: [{ protocols: ['sctpx'] }] }, 'allow[0].protocols'],
          [{ allow: [{ sourceCidrs: ['10.0.0.1/8'] }] }, 'allow[0].source_cidrs[0]'],
          [{ deny: [{ ports: [70000] }] }, 'deny[0].ports'],
        ] as const) {
          const w = watchEvents(c2, { follow: true, ...req });
          const err = await w.done;
          assert.equal(err?.code, status.INVALID_ARGUMENT, JSON.stringify(req));
          assert.equal(errorInfoOf(err!)?.metadata.field, field);
          assert.match(err!.details, new RegExp(field.replace(/[[\].]/g, '\\$&')));
        }
        for (const [q, field] of [
          ['proto=sctpx', 'allow[0].protocols'],
          ['source=10.0.0.1/8', 'allow[0].source_cidrs[0]'],
          ['port=70000', 'allow[0].ports'],
        ] as const) {
          const r = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/events?follow=true&${q}`);
          assert.equal(r.status, 400, q);
          const body = (await r.json()) as { code: number; reason: string; metadata: Record<string, string> };
          assert.equal(body.metadata.field, field, q);
          assert.equal(body.code, status.INVALID_ARGUMENT);
          assert.equal(body.reason, q.startsWith('source') ? 'HOST_BITS_SET' : 'INVALID_FILTER');
        }
      } finally {
        c2.close();
        await cp2.stop();
      }
    },
    { agentArgs: ['--event-rate', '1000', '--event-burst', '1000', '--event-interval', '20ms'] },
  );
});
