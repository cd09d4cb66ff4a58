// The pre-encoded Sync messages decode, with the generated decoder, to what
// the generated encoder would have produced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentRule, SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import {
  encodeAgentRule,
  encodeAgentRuleReference,
  encodeDelta,
  encodeInSync,
  encodeSnapshot,
} from '../../control-plane/src/sync/wire-encoding.js';

const rows = [
  { id: 1n, cidr: '10.0.0.0/8', action: 1, direction: 1, mode: 1, expire_time: null },
  { id: 2n, cidr: '2001:db8::/32', action: 2, direction: 2, mode: 1, expire_time: new Date('2030-01-02T03:04:05.678Z') },
  { id: 300n, cidr: '192.0.2.7/32', action: 1, direction: 1, mode: 2, expire_time: null },
  { id: 18446744073709551615n, cidr: '0.0.0.0/0', action: 1, direction: 2, mode: 1, expire_time: null },
];
const expected: AgentRule[] = [
  { id: 1n, address: Buffer.from([10, 0, 0, 0]), prefixLength: 8, action: 1, direction: 1, mode: 1, expireTime: undefined },
  {
    id: 2n,
    address: Buffer.from('20010db8000000000000000000000000', 'hex'),
    prefixLength: 32,
    action: 2,
    direction: 2,
    mode: 1,
    expireTime: new Date('2030-01-02T03:04:05.678Z'),
  },
  { id: 300n, address: Buffer.from([192, 0, 2, 7]), prefixLength: 32, action: 1, direction: 1, mode: 2, expireTime: undefined },
  {
    id: 18446744073709551615n,
    address: Buffer.from([0, 0, 0, 0]),
    prefixLength: 0,
    action: 1,
    direction: 2,
    mode: 1,
    expireTime: undefined,
  },
];

test('AgentRule bytes', () => {
  rows.forEach((r, i) => assert.deepEqual(AgentRule.decode(Buffer.from(encodeAgentRule(r), 'latin1')), expected[i]));
});

test("the fast AgentRule encoder writes the generated encoder's bytes", () => {
  const cidrs = [
    '0.0.0.0/0',
    '255.255.255.255/32',
    '10.0.0.0/8',
    '192.0.2.128/25',
    '::/0',
    '2001:db8::/32',
    'fe80::1/128',
    '::ffff:1.2.3.4/128',
  ];
  const ids = [1n, 127n, 128n, 16383n, 16384n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];
  const times = [null, new Date(0), new Date('2030-05-06T07:08:09.010Z'), new Date(1000)];
  let n = 0;
  for (const cidr of cidrs) {
    for (const id of ids) {
      for (const expire_time of times) {
        for (const [action, direction, mode] of [
          [1, 1, 1],
          [2, 2, 1],
          [1, 2, 2],
        ] as const) {
          const r = { id, cidr, action, direction, mode, expire_time };
          assert.equal(
            Buffer.from(encodeAgentRule(r), 'latin1').toString('hex'),
            Buffer.from(encodeAgentRuleReference(r), 'latin1').toString('hex'),
            JSON.stringify({ ...r, id: String(id) }),
          );
          n++;
        }
      }
    }
  }
  assert.equal(n, 8 * 8 * 4 * 3);
});

test('snapshot in one chunk and in many', () => {
  const enc = rows.map(encodeAgentRule);
  const one = encodeSnapshot(7n, enc, 4, 1 << 20);
  assert.equal(one.length, 1);
  assert.deepEqual(SyncResponse.decode(one[0]!), {
    msg: { $case: 'snapshotChunk', value: { revision: 7n, rules: expected, last: true, totalRules: 4n } },
  });
  const many = encodeSnapshot(7n, enc, 4, 20);
  assert.ok(many.length >= 3, `split into ${many.length} chunks`);
  const decoded = many.map((b) => SyncResponse.decode(b).msg);
  const all: AgentRule[] = [];
  decoded.forEach((m, i) => {
    assert.equal(m?.$case, 'snapshotChunk');
    if (m?.$case !== 'snapshotChunk') return;
    assert.equal(m.value.revision, 7n);
    assert.equal(m.value.last, i === decoded.length - 1);
    assert.equal(m.value.totalRules, 4n);
    all.push(...m.value.rules);
  });
  assert.deepEqual(all, expected);
  const empty = encodeSnapshot(3n, [], 0, 1024);
  assert.deepEqual(SyncResponse.decode(empty[0]!), {
    msg: { $case: 'snapshotChunk', value: { revision: 3n, rules: [], last: true, totalRules: 0n } },
  });
});

test('delta, empty delta, parts with more', () => {
  const t = new Date('2026-01-01T00:00:00.123Z');
  const enc = rows.map(encodeAgentRule);
  const [d] = encodeDelta(9n, t, enc.slice(0, 2), [5n, 18446744073709551615n], 1 << 20);
  assert.deepEqual(SyncResponse.decode(d!), {
    msg: {
      $case: 'delta',
      value: { revision: 9n, upserts: expected.slice(0, 2), deletes: [5n, 18446744073709551615n], commitTime: t, more: false },
    },
  });
  const empty = encodeDelta(10n, t, [], [], 1024);
  assert.equal(empty.length, 1);
  assert.deepEqual(SyncResponse.decode(empty[0]!), {
    msg: { $case: 'delta', value: { revision: 10n, upserts: [], deletes: [], commitTime: t, more: false } },
  });
  const dels = Array.from({ length: 50 }, (_, i) => BigInt(i + 1000));
  const parts = encodeDelta(11n, t, enc, dels, 40);
  assert.ok(parts.length > 2);
  const ups: AgentRule[] = [];
  const ds: bigint[] = [];
  parts.forEach((p, i) => {
    const m = SyncResponse.decode(p).msg;
    assert.equal(m?.$case, 'delta');
    if (m?.$case !== 'delta') return;
    assert.equal(m.value.revision, 11n);
    assert.equal(m.value.more, i < parts.length - 1, `part ${i} more flag`);
    ups.push(...m.value.upserts);
    ds.push(...m.value.deletes);
  });
  assert.deepEqual(ups, expected);
  assert.deepEqual(ds, dels);
});

test('in-sync', () => {
  assert.deepEqual(SyncResponse.decode(encodeInSync(42n)), { msg: { $case: 'inSync', value: { revision: 42n } } });
});
