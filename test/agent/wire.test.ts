// The raw Sync decoder against the generated encoder: snapshot chunks and
// deltas decode to the same rules ts-proto would, straight into the table,
// with the same validation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { formatPrefix } from '../../common/src/cidr.js';
import { SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { RuleTable } from '../../node-agent/src/reconcile/rule-table.js';
import { applyRawRules } from '../../node-agent/src/sync/raw-rules.js';
import { decodeSyncResponse } from '../../node-agent/src/sync/sync-codec.js';
import { wireRule } from '../support/scripted-control-plane.js';

const enc = (m: SyncResponse): Buffer => Buffer.from(SyncResponse.encode(m).finish());
const show = (t: RuleTable): string[] =>
  t
    .desiredRules()
    .map((r) => `${r.id} ${r.direction} ${formatPrefix(r.prefix)} ${r.action} ${r.mode} ${r.expireUnixMs}`)
    .sort();

test('snapshot chunk: every field, u64 ids beyond 2^53, IPv6, expiry', () => {
  const future = new Date(Date.now() + 3_600_000);
  const rules = [
    wireRule(1, '192.0.2.0/24'),
    // The largest id a control plane sends (a Postgres bigserial); 2^63 and up are the agent's own (failsafe entries).
    wireRule(2n ** 63n - 1n, '2001:db8::/32', { action: 'allow', direction: 'egress' }),
    wireRule(2n ** 53n + 1n, '198.51.100.9', { mode: 'monitor', expire: future }),
    wireRule(7, '0.0.0.0/0'),
  ];
  const m = decodeSyncResponse(enc({ msg: { $case: 'snapshotChunk', value: { revision: 2n ** 60n, rules, last: true, totalRules: 4n } } }));
  assert.equal(m.msg?.$case, 'snapshotChunk');
  if (m.msg?.$case !== 'snapshotChunk') return;
  assert.equal(m.msg.value.revision, 2n ** 60n);
  assert.equal(m.msg.value.last, true);
  assert.equal(m.msg.value.totalRules, 4n);
  const t = new RuleTable();
  const res = applyRawRules(t, m.msg.value.rules, Date.now());
  assert.deepEqual(res, { upserted: 4, expired: 0, invalid: 0 });
  assert.deepEqual(show(t), [
    `1 ingress 192.0.2.0/24 deny enforce 0`,
    `7 ingress 0.0.0.0/0 deny enforce 0`,
    `9007199254740993 ingress 198.51.100.9/32 deny monitor ${future.getTime()}`,
    `9223372036854775807 egress 2001:db8::/32 allow enforce 0`,
  ]);
});

test('delta: upserts, packed deletes, commit time, more; other messages decode as generated', () => {
  const commit = new Date(1_800_000_000_123);
  const m = decodeSyncResponse(
    enc({
      msg: {
        $case: 'delta',
        value: { revision: 9n, upserts: [wireRule(3, '10.0.0.0/8')], deletes: [1n, 2n ** 63n], commitTime: commit, more: true },
      },
    }),
  );
  assert.equal(m.msg?.$case, 'delta');
  if (m.msg?.$case !== 'delta') return;
  assert.equal(m.msg.value.revision, 9n);
  assert.deepEqual(m.msg.value.deletes, [1n, 2n ** 63n]);
  assert.equal(m.msg.value.commitTime?.getTime(), commit.getTime());
  assert.equal(m.msg.value.more, true);
  assert.equal(m.msg.value.upserts.count, 1);
  const p = decodeSyncResponse(enc({ msg: { $case: 'ping', value: { nonce: 5n, sendTime: undefined } } }));
  assert.deepEqual(p.msg, { $case: 'ping', value: { nonce: 5n, sendTime: undefined } });
  const s = decodeSyncResponse(enc({ msg: { $case: 'inSync', value: { revision: 4n } } }));
  assert.deepEqual(s.msg, { $case: 'inSync', value: { revision: 4n } });
});

test('unpacked deletes and unknown fields are read', () => {
  const w = new BinaryWriter();
  // SyncResponse.delta (field 4) with: revision 5, unknown field 9 (string), deletes 7 and 8 unpacked.
  const d = new BinaryWriter();
  d.uint32(0x08).uint64(5n);
  d.uint32((9 << 3) | 2).string('future field');
  d.uint32(0x18).uint64(7n);
  d.uint32(0x18).uint64(8n);
  w.uint32(0x22).bytes(d.finish());
  const m = decodeSyncResponse(Buffer.from(w.finish()));
  assert.equal(m.msg?.$case, 'delta');
  if (m.msg?.$case === 'delta') {
    assert.equal(m.msg.value.revision, 5n);
    assert.deepEqual(m.msg.value.deletes, [7n, 8n]);
  }
});

test('validation: host bits, address length, unsupported enums, expired on arrival', () => {
  const hostBits = { ...wireRule(1, '10.0.0.0/24'), address: Buffer.from([10, 0, 0, 1]) };
  const badLen = { ...wireRule(2, '10.0.0.0/24'), address: Buffer.from([10, 0, 0]) };
  const badAction = { ...wireRule(3, '10.0.0.0/24'), action: 7 };
  const tooLong = { ...wireRule(4, '10.0.0.0/24'), prefixLength: 33 };
  const expired = wireRule(5, '10.0.5.0/24', { expire: new Date(Date.now() - 1000) });
  const ok = wireRule(6, '10.0.6.0/24');
  const m = decodeSyncResponse(
    enc({
      msg: {
        $case: 'snapshotChunk',
        value: { revision: 1n, rules: [hostBits, badLen, badAction, tooLong, expired, ok], last: true, totalRules: 6n },
      },
    }),
  );
  if (m.msg?.$case !== 'snapshotChunk') throw new Error('not a chunk');
  const t = new RuleTable();
  const res = applyRawRules(t, m.msg.value.rules, Date.now());
  assert.deepEqual(res, { upserted: 1, expired: 1, invalid: 4 });
  assert.match(t.invalidRules.get(1n)!, /host bits set after \/24/);
  assert.match(t.invalidRules.get(2n)!, /address must be 4 or 16 bytes, got 3/);
  assert.match(t.invalidRules.get(3n)!, /action 7 is not supported/);
  assert.match(t.invalidRules.get(4n)!, /prefix length 33 is out of range/);
  assert.deepEqual(show(t), ['6 ingress 10.0.6.0/24 deny enforce 0']);
});
