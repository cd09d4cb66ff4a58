// Detections and bans in WatchEvents (issue 18 part 6), with real Postgres,
// two control-plane processes on it, real gRPC and a scripted agent on a Sync
// stream to the first: a detection the agent reports and what the ban writer
// makes of it (created, extended, exempted) reach watchers on the same
// process and on the second one (fanned out through Postgres); a monitor
// policy's detection is a "would ban" with no ban event; the filters select
// exactly (kinds, policies, outcomes, rule ids, CIDRs, node, and packet
// fields that detections and bans do not have); drops still flow beside
// them; HTTP /v1/events and `fleetwall events` (lines, --json, --pcap: drops
// only) show them, `fleetwall bans ls` and `explain` the ban; bad filter
// values are INVALID_ARGUMENT naming the field.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { BanOutcome, type DropEvent, EventKind, EventVerdict } from '../../proto/gen/fleetwall/v1/event.js';
import type { DetectionPolicy } from '../../proto/gen/fleetwall/v1/policy.js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { errorInfoOf, startTestControlPlanes, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { detectionPolicy, detectionReport } from '../support/policy-fixtures.js';
import { eventually } from '../support/eventually.js';
import { inspectClient, type Watch, watchEvents } from '../support/inspect-client.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { SyncClient } from '../support/scripted-agent.js';

const execFileAsync = promisify(execFile);
const BIN = resolve(import.meta.dirname, '../../bin/fleetwall.mjs');

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

function policy(name: string, mode: Mode): DetectionPolicy {
  return detectionPolicy({ name, mode });
}

/** A compact view of an event: kind, policy, source CIDR, outcome. */
function view(e: DropEvent): string {
  if (e.kind === EventKind.EVENT_KIND_DETECTION)
    return `detection ${e.detection?.policy} ${e.detection?.source}${e.detection?.monitor ? ' monitor' : ''}`;
  if (e.kind === EventKind.EVENT_KIND_BAN) return `ban ${e.ban?.policy} ${e.ban?.source} ${BanOutcome[e.ban?.outcome ?? 0]}`;
  return `drop rule ${e.ruleId} ${e.source}`;
}

const views = (w: Watch) => w.events.map(view);

/** Polls `fn` until `ok` holds for its value (the bound only against a hang). */
function until<T>(what: string, fn: () => Promise<T> | T, ok: (v: T) => boolean): Promise<T> {
  return eventually(async () => {
    const v = await fn();
    if (!ok(v)) throw new Error('not yet');
    return v;
  }, what);
}

test('detections and ban outcomes reach watchers on both processes; filters select exactly; HTTP and the CLI show them', async () => {
  const [a, b] = (await startTestControlPlanes(await pg.newDatabase(), 2)) as [TestControlPlane, TestControlPlane];
  const agent = new SyncClient(a.target, { nodeName: 'rv-node-1' }).connect();
  const ca = inspectClient(a.target);
  const cb = inspectClient(b.target);
  const watches: Watch[] = [];
  const watch = (c: typeof ca, req: Record<string, unknown>) => {
    const w = watchEvents(c, { follow: true, ...req });
    watches.push(w);
    return w;
  };
  const tmp = mkdtempSync(join(tmpdir(), 'fw-rvis-'));
  try {
    await agent.waitInSync();
    await unaryCall(a.clients.policies, 'createPolicy', { policy: policy('ssh-syn', Mode.MODE_ENFORCE) });
    await unaryCall(a.clients.policies, 'createPolicy', { policy: policy('scan-watch', Mode.MODE_MONITOR) });
    await unaryCall(
      a.clients.rules,
      'createRule',
      CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.0/24', action: Action.ACTION_ALLOW } }),
    );
    await agent.waitFor((c) => c.policySets.at(-1)?.length === 2, 'the agent gets both policies');
    const ids = new Map(agent.policySets.at(-1)!.map((p) => [p.name, p.id]));

    const allA = watch(ca, {});
    const allB = watch(cb, {});
    const detB = watch(cb, { allow: [{ kinds: [EventKind.EVENT_KIND_DETECTION] }] });
    const exemptB = watch(cb, { allow: [{ kinds: [EventKind.EVENT_KIND_BAN], outcomes: [BanOutcome.BAN_OUTCOME_EXEMPTED] }] });
    const monitorB = watch(cb, { allow: [{ policies: ['scan-watch'] }] });
    const dropsB = watch(cb, { allow: [{ kinds: [EventKind.EVENT_KIND_DROP] }] });
    const notDropsB = watch(cb, { deny: [{ kinds: [EventKind.EVENT_KIND_DROP] }] });
    // Fields about packets match no detection or ban; CIDRs and the node match them.
    const portB = watch(cb, { allow: [{ ports: [22] }] });
    const cidrB = watch(cb, { allow: [{ sourceCidrs: ['198.51.100.0/24'], nodeNames: ['rv-node-1'] }] });
    const otherNodeB = watch(cb, { allow: [{ nodeNames: ['rv-node-2'] }] });
    // Let the watchers register (a follow without since sees only new events).
    await new Promise((r) => setTimeout(r, 300));

    // A drop beside them (the agent's event batch), then the detections.
    agent.send({
      msg: {
        $case: 'events',
        value: {
          events: [
            {
              timeUnixNano: BigInt(Date.now()) * 1_000_000n,
              ruleId: 0n,
              verdict: EventVerdict.EVENT_VERDICT_DROP,
              direction: Direction.DIRECTION_INGRESS,
              source: Buffer.from([198, 51, 100, 50]),
              destination: Buffer.from([192, 0, 2, 1]),
              protocol: 6,
              sourcePort: 40000,
              destinationPort: 22,
              tcpFlags: 2,
              length: 60,
              weight: 1n,
              interface: 'eth0',
              packet: Buffer.alloc(0),
              // An agent cannot pass its events off as detections: its batch is drops.
              kind: EventKind.EVENT_KIND_DETECTION,
            },
          ],
          queueDropped: 0n,
          kernelLost: [],
        },
      },
    });
    const sshId = ids.get('ssh-syn')!;
    agent.send({ msg: { $case: 'detection', value: detectionReport(sshId, 'ssh-syn', '198.51.100.7') } });
    const created = await until(
      'the created ban on the second process',
      async () => allB.events.find((e) => e.kind === EventKind.EVENT_KIND_BAN),
      (e) => e !== undefined,
    );
    agent.send({ msg: { $case: 'detection', value: detectionReport(sshId, 'ssh-syn', '198.51.100.7') } });
    await until(
      'the extension',
      async () => allB.events.filter((e) => e.kind === EventKind.EVENT_KIND_BAN).length,
      (n) => n === 2,
    );
    agent.send({ msg: { $case: 'detection', value: detectionReport(sshId, 'ssh-syn', '203.0.113.9') } });
    agent.send({
      msg: {
        $case: 'detection',
        value: detectionReport(ids.get('scan-watch')!, 'scan-watch', '192.0.2.77', { monitor: true, bannedLocally: false }),
      },
    });
    // Unknown to the control plane: no event (and no ban).
    agent.send({ msg: { $case: 'detection', value: detectionReport(987654n, 'made-up', '192.0.2.99') } });

    const expected = [
      'drop rule 0 198.51.100.50',
      'detection ssh-syn 198.51.100.7/32',
      'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_CREATED',
      'detection ssh-syn 198.51.100.7/32',
      'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_EXTENDED',
      'detection ssh-syn 203.0.113.9/32',
      'detection scan-watch 192.0.2.77/32 monitor',
      'ban ssh-syn 203.0.113.9/32 BAN_OUTCOME_EXEMPTED',
    ];
    const sorted = (xs: string[]) => [...xs].sort();
    for (const [name, w] of [
      ['same process', allA],
      ['second process', allB],
    ] as const)
      await until(
        `every event on the ${name}`,
        async () => sorted(views(w)),
        (v) => JSON.stringify(v) === JSON.stringify(sorted(expected)),
      );
    // Wait a little for anything unexpected (the unknown policy's detection, a ban for the monitor one).
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(sorted(views(allA)), sorted(expected), 'nothing more on the same process');
    assert.deepEqual(sorted(views(allB)), sorted(expected), 'nothing more on the second process');

    // The details.
    assert.equal(created!.nodeName, 'rv-node-1');
    assert.equal(created!.direction, Direction.DIRECTION_INGRESS);
    assert.equal(created!.source, '198.51.100.7', 'the group address in source (ingress)');
    assert.equal(created!.ban?.offences, 1);
    assert.ok(created!.ruleId > 0n, 'the ban rule');
    const bans = (await unaryCall(b.clients.policies, 'listBans', { policy: 'ssh-syn' })).bans;
    assert.deepEqual(
      bans.map((x) => [x.source, x.ruleId]),
      [['198.51.100.7/32', created!.ruleId]],
      "the event's rule is the ban's",
    );
    const exp = created!.ban!.expireTime!.getTime() - Date.now();
    assert.ok(exp > 50_000 && exp <= 60_000, `the ban's expiry (${exp} ms from now)`);
    const ext = allB.events.find((e) => e.ban?.outcome === BanOutcome.BAN_OUTCOME_EXTENDED)!;
    assert.equal(ext.ruleId, created!.ruleId, 'extended: the same rule');
    const ex = allB.events.find((e) => e.ban?.outcome === BanOutcome.BAN_OUTCOME_EXEMPTED)!;
    assert.equal(ex.ruleId, 0n, 'exempted: no rule');
    assert.match(ex.ban!.reason, /covered by allow rule \d+ \(203\.0\.113\.0\/24\)/);
    const det = allB.events.find((e) => e.kind === EventKind.EVENT_KIND_DETECTION)!;
    assert.equal(det.detection?.packetsPerSecond, 100);
    assert.equal(det.detection?.bannedLocally, true);
    assert.equal(det.detection?.policyId, sshId);
    assert.equal(det.verdict, EventVerdict.EVENT_VERDICT_UNSPECIFIED, 'no packet fields');
    assert.equal(det.weight, 0n);

    // The filters, exactly.
    const only = (w: Watch) => sorted(views(w));
    assert.deepEqual(only(detB), sorted(expected.filter((v) => v.startsWith('detection'))), 'kinds: detections');
    assert.deepEqual(only(exemptB), ['ban ssh-syn 203.0.113.9/32 BAN_OUTCOME_EXEMPTED'], 'kinds + outcomes');
    assert.deepEqual(only(monitorB), ['detection scan-watch 192.0.2.77/32 monitor'], 'policies (a monitor policy has no ban event)');
    assert.deepEqual(only(dropsB), ['drop rule 0 198.51.100.50'], 'kinds: drops (the agent batch stays a drop)');
    assert.deepEqual(only(notDropsB), sorted(expected.slice(1)), 'deny kinds: drops');
    assert.deepEqual(only(portB), ['drop rule 0 198.51.100.50'], 'ports match drops only');
    assert.deepEqual(
      only(cidrB),
      sorted([
        'drop rule 0 198.51.100.50',
        'detection ssh-syn 198.51.100.7/32',
        'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_CREATED',
        'detection ssh-syn 198.51.100.7/32',
        'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_EXTENDED',
      ]),
      'source CIDR and node match every kind',
    );
    assert.deepEqual(only(otherNodeB), [], 'another node: nothing');

    // From the history (since): a ban's rule id selects its ban events only; an exempted ban (rule 0) is not rule 0's.
    const byRule = watchEvents(cb, { since: new Date(Date.now() - 60_000), allow: [{ ruleIds: [created!.ruleId] }] });
    await byRule.done;
    assert.deepEqual(views(byRule), [
      'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_CREATED',
      'ban ssh-syn 198.51.100.7/32 BAN_OUTCOME_EXTENDED',
    ]);
    const rule0 = watchEvents(cb, { since: new Date(Date.now() - 60_000), allow: [{ ruleIds: [0n] }] });
    await rule0.done;
    assert.deepEqual(views(rule0), ['drop rule 0 198.51.100.50'], 'rule 0: the default action drops only');

    // HTTP /v1/events: NDJSON, the same filters.
    const http = await fetch(`http://127.0.0.1:${b.httpPort}/v1/events?since=1m&kind=ban&policy=ssh-syn&not_outcome=exempted`);
    assert.equal(http.status, 200);
    const lines = (await http.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, any>);
    assert.deepEqual(
      lines.map((l) => [l.kind, l.ban.outcome, l.ban.source, l.ruleId]),
      [
        ['EVENT_KIND_BAN', 'BAN_OUTCOME_CREATED', '198.51.100.7/32', String(created!.ruleId)],
        ['EVENT_KIND_BAN', 'BAN_OUTCOME_EXTENDED', '198.51.100.7/32', String(created!.ruleId)],
      ],
    );
    for (const [q, field] of [
      ['kind=flood', 'allow[0].kinds'],
      ['outcome=maybe', 'allow[0].outcomes'],
      ['policy=Not%20A%20Name', 'allow[0].policies'],
    ] as const) {
      const r = await fetch(`http://127.0.0.1:${b.httpPort}/v1/events?${q}`);
      assert.equal(r.status, 400, q);
      const body = (await r.json()) as { reason?: string; metadata?: Record<string, string>; message?: string };
      assert.equal(body.metadata?.field, field, `${q}: ${JSON.stringify(body)}`);
    }

    // gRPC: bad values are INVALID_ARGUMENT naming the field.
    for (const [f, field] of [
      [{ kinds: [7] }, 'allow[0].kinds'],
      [{ outcomes: [9] }, 'allow[0].outcomes'],
      [{ policies: ['Bad Name'] }, 'allow[0].policies'],
    ] as const) {
      const w = watchEvents(cb, { allow: [f] });
      const err = await w.done;
      assert.equal(err?.code, status.INVALID_ARGUMENT, JSON.stringify(f));
      const info = errorInfoOf(err!);
      assert.ok(info?.metadata.field?.startsWith(field), `${JSON.stringify(f)} names ${field}: ${JSON.stringify(info)}`);
    }

    // The CLI: readable lines, --json, and --pcap with drops only.
    const cli = async (...args: string[]) =>
      (await execFileAsync(process.execPath, [BIN, '--server', b.target, ...args], { encoding: 'utf8' })).stdout.trim().split('\n');
    const text = await cli('events', '--since', '1m', '--kind', 'detection,ban', '--policy', 'ssh-syn');
    assert.equal(text.length, 6, text.join('\n'));
    assert.match(text[0]!, /rv-node-1 ingress detection policy ssh-syn 198\.51\.100\.7\/32 100 pkt\/s 6000 B\/s over 1s: banned locally$/);
    assert.match(
      text.find((l) => l.includes(' ban created '))!,
      new RegExp(`rv-node-1 ingress ban created policy ssh-syn 198\\.51\\.100\\.7/32 rule ${created!.ruleId} until \\S+Z offence 1$`),
    );
    assert.match(text.find((l) => l.includes(' ban extended '))!, /ban extended policy ssh-syn 198\.51\.100\.7\/32 rule \d+ until/);
    assert.match(text.find((l) => l.includes(' ban exempted '))!, /ban exempted policy ssh-syn 203\.0\.113\.9\/32: covered by allow rule/);
    const mon = await cli('events', '--since', '1m', '--policy', 'scan-watch');
    assert.deepEqual(mon.length, 1);
    assert.match(mon[0]!, /detection policy scan-watch 192\.0\.2\.77\/32 100 pkt\/s 6000 B\/s over 1s: would-ban \(monitor\)$/);
    const json = (await cli('events', '--since', '1m', '--outcome', 'created', '--json')).map((l) => JSON.parse(l));
    assert.deepEqual(
      json.map((j) => [j.kind, j.ban.policy, j.ban.offences]),
      [['EVENT_KIND_BAN', 'ssh-syn', 1]],
    );
    const pcap = join(tmp, 'all.pcap');
    const res = await execFileAsync(process.execPath, [BIN, '--server', b.target, 'events', '--since', '1m', '--pcap', pcap], {
      encoding: 'utf8',
    });
    assert.match(res.stderr, /wrote 1 packets/, 'only the drop is a packet');
    // The global header (24 bytes) and one record.
    assert.ok(readFileSync(pcap).length > 24 + 16);
    const pcap2 = join(tmp, 'bans.pcap');
    const res2 = await execFileAsync(
      process.execPath,
      [BIN, '--server', b.target, 'events', '--since', '1m', '--kind', 'ban', '--pcap', pcap2],
      {
        encoding: 'utf8',
      },
    );
    assert.match(res2.stderr, /wrote 0 packets/, 'bans are skipped');

    // The same ban in `fleetwall bans ls` (source, policy, node, expiry, offences) and `explain` (its rule and policy).
    const bansLs = await cli('bans', 'ls');
    assert.equal(bansLs.length, 2, bansLs.join('\n'));
    assert.match(bansLs[1]!, new RegExp(`^198\\.51\\.100\\.7/32\\s+ssh-syn\\s+rv-node-1\\s+\\S+.*\\s1\\s.*\\b${created!.ruleId}\\s*$`));
    const explain = (await cli('explain', '198.51.100.7')).join('\n');
    assert.match(explain, new RegExp(`\\b${created!.ruleId}\\s+deny\\s+198\\.51\\.100\\.7/32\\s+enforce\\s+\\S+.*policy:ssh-syn`));

    // Metrics on the process that wrote the bans.
    const metrics = await fetch(`http://127.0.0.1:${a.httpPort}/metrics`).then((r) => r.text());
    assert.match(metrics, /fleetwall_ban_outcomes_total\{policy="ssh-syn",outcome="created"[^}]*\} 1/);
    assert.match(metrics, /fleetwall_ban_outcomes_total\{policy="ssh-syn",outcome="extended"[^}]*\} 1/);
    assert.match(metrics, /fleetwall_ban_outcomes_total\{policy="ssh-syn",outcome="exempted"[^}]*\} 1/);
  } finally {
    for (const w of watches) w.cancel();
    agent.close();
    ca.close();
    cb.close();
    rmSync(tmp, { recursive: true, force: true });
    await b.stop();
    await a.stop();
  }
});
