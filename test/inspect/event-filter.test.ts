// Pure parts of the inspection path: the filters (what each field selects,
// for drops, detections and bans,
// allow and deny lists, errors naming the field), the NOTIFY payloads that
// carry events between control-plane processes (under Postgres's 8000-byte
// limit, every event once, in order), and top sources.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BanOutcome, EventKind, EventVerdict } from '../../proto/gen/fleetwall/v1/event.js';
import { EventFilter } from '../../proto/gen/fleetwall/v1/inspect_service.js';
import { Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { compileFilters } from '../../control-plane/src/inspect/event-filter.js';
import { decodePayload, encodePayloads } from '../../control-plane/src/inspect/event-fanout.js';
import { fromAgent, fromBan, fromDetection } from '../../control-plane/src/inspect/inspect-event.js';
import { topSources } from '../../control-plane/src/inspect/top-sources.js';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';

function ev(o: {
  node?: string;
  rule?: bigint;
  src?: number[];
  dst?: number[];
  proto?: number;
  sport?: number;
  dport?: number;
  dir?: Direction;
  verdict?: EventVerdict;
  weight?: bigint;
  packet?: number;
}) {
  return fromAgent(o.node ?? 'n1', {
    timeUnixNano: BigInt(Date.now()) * 1_000_000n,
    ruleId: o.rule ?? 1n,
    verdict: o.verdict ?? EventVerdict.EVENT_VERDICT_DROP,
    direction: o.dir ?? Direction.DIRECTION_INGRESS,
    source: Buffer.from(o.src ?? [203, 0, 113, 9]),
    destination: Buffer.from(o.dst ?? [192, 0, 2, 1]),
    protocol: o.proto ?? 17,
    sourcePort: o.sport ?? 40000,
    destinationPort: o.dport ?? 53,
    tcpFlags: 0,
    length: 60,
    weight: o.weight ?? 1n,
    interface: 'eth0',
    packet: Buffer.alloc(o.packet ?? 0, 0xab),
    kind: EventKind.EVENT_KIND_DROP,
  });
}

const f = (x: Record<string, unknown>): EventFilter => EventFilter.fromPartial(x as never);

test('filters: each field, allow any of, deny none of', () => {
  const a = ev({});
  const b = ev({ node: 'n2', rule: 2n, src: [10, 1, 2, 3], proto: 6, sport: 22, dport: 50000, dir: Direction.DIRECTION_EGRESS });
  const c = ev({
    src: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
    dst: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    proto: 58,
    sport: 128,
    dport: 0,
    verdict: EventVerdict.EVENT_VERDICT_WOULD_DROP,
  });
  const all = [a, b, c];
  const sel = (allow: EventFilter[], deny: EventFilter[] = []) => all.filter(compileFilters(allow, deny));
  assert.deepEqual(sel([]), all);
  assert.deepEqual(sel([f({ nodeNames: ['n2'] })]), [b]);
  assert.deepEqual(sel([f({ ruleIds: [1n] })]), [a, c]);
  assert.deepEqual(sel([f({ sourceCidrs: ['10.0.0.0/8'] })]), [b]);
  assert.deepEqual(sel([f({ sourceCidrs: ['2001:db8::/32'] })]), [c]);
  assert.deepEqual(sel([f({ sourceCidrs: ['0.0.0.0/0'] })]), [a, b], '/0 of one family matches that family only');
  assert.deepEqual(sel([f({ destinationCidrs: ['192.0.2.0/25'] })]), [a, b]);
  assert.deepEqual(sel([f({ protocols: ['tcp', 'icmpv6'] })]), [b, c]);
  assert.deepEqual(sel([f({ protocols: ['17'] })]), [a]);
  assert.deepEqual(sel([f({ ports: [22] })]), [b], 'the source port');
  assert.deepEqual(sel([f({ ports: [53] })]), [a], 'the destination port');
  assert.deepEqual(sel([f({ directions: [Direction.DIRECTION_EGRESS] })]), [b]);
  assert.deepEqual(sel([f({ verdicts: [EventVerdict.EVENT_VERDICT_WOULD_DROP] })]), [c]);
  assert.deepEqual(sel([f({ ruleIds: [1n], protocols: ['udp'] })]), [a], 'fields of one filter: all must match');
  assert.deepEqual(sel([f({ nodeNames: ['n2'] }), f({ protocols: ['icmpv6'] })]), [b, c], 'allow filters: any');
  assert.deepEqual(sel([], [f({ ruleIds: [1n] })]), [b]);
  assert.deepEqual(sel([f({ ruleIds: [1n] })], [f({ protocols: ['udp'] })]), [c]);
});

test('filters: bad values are INVALID_ARGUMENT naming the field', () => {
  const cases: [EventFilter[], EventFilter[], string, string][] = [
    [[f({ protocols: ['sctpx'] })], [], 'allow[0].protocols', 'INVALID_FILTER'],
    [[f({}), f({ ports: [70000] })], [], 'allow[1].ports', 'INVALID_FILTER'],
    [[], [f({ ports: [0] })], 'deny[0].ports', 'INVALID_FILTER'],
    [[f({ sourceCidrs: ['10.0.0.0/8', '10.0.0.1/8'] })], [], 'allow[0].source_cidrs[1]', 'HOST_BITS_SET'],
    [[], [f({ destinationCidrs: ['nope'] })], 'deny[0].destination_cidrs[0]', 'INVALID_CIDR'],
    [[f({ verdicts: [9 as EventVerdict] })], [], 'allow[0].verdicts', 'INVALID_FILTER'],
    [[f({ directions: [0 as Direction] })], [], 'allow[0].directions', 'INVALID_FILTER'],
    [[f({ protocols: ['256'] })], [], 'allow[0].protocols', 'INVALID_FILTER'],
  ];
  for (const [allow, deny, field, reason] of cases) {
    assert.throws(
      () => compileFilters(allow, deny),
      (e: unknown) => e instanceof FleetwallError && e.reason === reason && e.metadata.field === field && e.message.startsWith(field),
      field,
    );
  }
});

test('fan-out payloads: under 8000 bytes, every event once and in order', () => {
  const events = Array.from({ length: 1000 }, (_, i) => ev({ rule: BigInt(i), packet: i % 3 === 0 ? 256 : 0 }));
  const payloads = encodePayloads(
    'cp-1 ',
    events.map((e) => e.wire),
  );
  assert.ok(payloads.length > 10);
  for (const p of payloads) {
    assert.ok(p.length < 8000, `${p.length} bytes`);
    assert.ok(p.startsWith('cp-1 '));
  }
  const back = payloads.flatMap((p) => decodePayload(p.slice('cp-1 '.length)));
  assert.deepEqual(
    back.map((e) => e.ruleId),
    events.map((e) => e.ruleId),
  );
  assert.deepEqual([...back[3]!.src], [...events[3]!.src]);
  assert.equal(back[3]!.wire.packet.length, 256);
});

test('top sources: summed weights per rule and matched address, most first', () => {
  const events = [
    ev({ rule: 1n, src: [203, 0, 113, 9], weight: 5n }),
    ev({ rule: 1n, src: [203, 0, 113, 9], weight: 7n, node: 'n2' }),
    ev({ rule: 1n, src: [203, 0, 113, 10], weight: 20n }),
    ev({ rule: 2n, dst: [198, 51, 100, 7], dir: Direction.DIRECTION_EGRESS, weight: 3n }),
  ];
  const r = topSources(events, { ruleIds: null, node: '', limit: 10 });
  assert.deepEqual(
    r.map((x) => [x.ruleId, x.packets, x.sources.map((s) => [s.address, s.packets, s.events, s.nodeNames.join(',')])]),
    [
      [
        1n,
        32n,
        [
          ['203.0.113.10', 20n, 1n, 'n1'],
          ['203.0.113.9', 12n, 2n, 'n1,n2'],
        ],
      ],
      [2n, 3n, [['198.51.100.7', 3n, 1n, 'n1']]],
    ],
  );
  assert.equal(topSources(events, { ruleIds: new Set([1n]), node: 'n2', limit: 1 })[0]!.sources[0]!.packets, 7n);
});

test('detections and bans: filters by kind, policy, outcome and rule; packet fields match drops only; the fan-out payload keeps them; top sources count drops only', () => {
  const drop = ev({ rule: 7n, src: [198, 51, 100, 9] });
  const d = (policy: string, addr: number[], len: number, direction = Direction.DIRECTION_INGRESS) =>
    fromDetection(
      'n1',
      {
        kind: 'detection',
        policyId: 1n,
        policy: 'what-the-agent-says',
        // Host bits set: the event carries the masked group.
        address: Buffer.from(addr),
        prefixLength: len,
        packets: 10n,
        bytes: 600n,
        window: { seconds: 1n, nanos: 0 },
        packetsPerSecond: 10,
        bytesPerSecond: 600,
        detectTime: new Date(),
        monitor: false,
        bannedLocally: true,
      },
      policy,
      direction,
    )!;
  const det = d('ssh', [198, 51, 100, 77], 24);
  const egress = d('exfil', [192, 0, 2, 5], 32, Direction.DIRECTION_EGRESS);
  const ban = (outcome: BanOutcome, ruleId: bigint | undefined) =>
    fromBan({
      policy: 'ssh',
      source: { family: 4, bytes: new Uint8Array([198, 51, 100, 0]), len: 24 },
      node: 'n1',
      direction: Direction.DIRECTION_INGRESS,
      outcome,
      reason: ruleId ? '' : 'covered by allow rule 3 (198.51.100.0/24)',
      ruleId,
      expireTime: ruleId ? new Date(Date.now() + 60_000) : undefined,
      offences: ruleId ? 1 : 0,
    });
  const created = ban(BanOutcome.BAN_OUTCOME_CREATED, 7n);
  const exempted = ban(BanOutcome.BAN_OUTCOME_EXEMPTED, undefined);
  const all = [drop, det, egress, created, exempted];
  assert.equal(det.wire.detection?.source, '198.51.100.0/24', 'masked to the group');
  assert.equal(det.wire.source, '198.51.100.0');
  assert.equal(det.policy, 'ssh', "the control plane's name, not the agent's");
  assert.equal(egress.wire.destination, '192.0.2.5', 'egress: the counted address is the destination');
  assert.equal(egress.wire.source, '');
  const sel = (allow: Record<string, unknown>[], deny: Record<string, unknown>[] = []) => {
    const p = compileFilters(allow.map(f), deny.map(f));
    return all.filter(p);
  };
  assert.deepEqual(sel([]), all, 'no filter: every kind');
  assert.deepEqual(sel([{ kinds: [EventKind.EVENT_KIND_DROP] }]), [drop]);
  assert.deepEqual(sel([{ kinds: [EventKind.EVENT_KIND_DETECTION, EventKind.EVENT_KIND_BAN] }]), [det, egress, created, exempted]);
  assert.deepEqual(sel([], [{ kinds: [EventKind.EVENT_KIND_DROP] }]), [det, egress, created, exempted]);
  assert.deepEqual(sel([{ policies: ['ssh'] }]), [det, created, exempted], 'policies: detections and bans, never drops');
  assert.deepEqual(sel([{ outcomes: [BanOutcome.BAN_OUTCOME_EXEMPTED] }]), [exempted]);
  assert.deepEqual(sel([{ ruleIds: [7n] }]), [drop, created], "rule ids: drops and a ban's rule");
  assert.deepEqual(sel([{ ruleIds: [0n] }]), [], 'rule 0 is not an exempted ban');
  assert.deepEqual(sel([{ ports: [53] }]), [drop], 'ports: drops only');
  assert.deepEqual(sel([{ protocols: ['udp'] }]), [drop], 'protocols: drops only');
  assert.deepEqual(sel([{ verdicts: [EventVerdict.EVENT_VERDICT_DROP] }]), [drop], 'verdicts: drops only');
  assert.deepEqual(sel([{ sourceCidrs: ['198.51.100.0/24'] }]), [drop, det, created, exempted], 'source CIDRs: every kind');
  assert.deepEqual(sel([{ destinationCidrs: ['192.0.2.0/24'] }]), [drop, egress]);
  assert.deepEqual(sel([{ directions: [Direction.DIRECTION_EGRESS] }]), [egress]);

  // Bad values name the field.
  for (const [x, field] of [
    [{ kinds: [9] }, 'allow[0].kinds'],
    [{ outcomes: [42] }, 'allow[0].outcomes'],
    [{ policies: ['UPPER'] }, 'allow[0].policies'],
  ] as const)
    assert.throws(
      () => compileFilters([f(x)], []),
      (e: unknown) => e instanceof FleetwallError && e.reason === 'INVALID_FILTER' && e.metadata?.field === field,
      field,
    );

  // Across processes: the kinds and details survive the payload, and the filters still apply.
  const back = encodePayloads(
    'cp ',
    all.map((e) => e.wire),
  ).flatMap((p) => decodePayload(p.slice(3)));
  assert.deepEqual(
    back.map((e) => [e.kind, e.policy, e.outcome, e.ruleId]),
    all.map((e) => [e.kind, e.policy, e.outcome, e.ruleId]),
  );
  assert.deepEqual(back[1]!.wire.detection, det.wire.detection);
  assert.deepEqual(back.filter(compileFilters([f({ sourceCidrs: ['198.51.100.0/24'], kinds: [EventKind.EVENT_KIND_BAN] })], [])).length, 2);

  const top = topSources(all, { ruleIds: null, node: '', limit: 10 });
  assert.deepEqual(
    top.map((r) => [r.ruleId, r.packets]),
    [[7n, 1n]],
    'only the drop',
  );
});
