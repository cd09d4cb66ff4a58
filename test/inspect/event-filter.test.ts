// Pure parts of the inspection path: the filters (what each field selects,
// allow and deny lists, errors naming the field), the NOTIFY payloads that
// carry events between control-plane processes (under Postgres's 8000-byte
// limit, every event once, in order), and top sources.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventKind, EventVerdict } from '../../proto/gen/fleetwall/v1/event.js';
import { EventFilter } from '../../proto/gen/fleetwall/v1/inspect_service.js';
import { Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { compileFilters } from '../../control-plane/src/inspect/event-filter.js';
import { decodePayload, encodePayloads } from '../../control-plane/src/inspect/event-fanout.js';
import { fromAgent } from '../../control-plane/src/inspect/inspect-event.js';
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
