// The bucketed hash (node-agent/src/datapath/fwtab.ts, fw_decide.h) on its
// rare paths, with keys crafted from the table's own seed so they collide:
// a full first bucket (second bucket behind the overflow flag), both buckets
// full (spill hash behind the spill flag), replacements and deletes there,
// IPv4 keys whose tags collide in one bucket, IPv6 slots freed and reused
// (grace period), the IPv4 direct /24 index (nesting, covers, LONGER, /0,
// reopen), and interface totals of two interfaces whose counter slots collide.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAddress, parseCidr } from '../../common/src/cidr.js';
import {
  FW_B4_SLOTS,
  FW_B6_SLOTS,
  FW_D24_LEN_SHIFT,
  FW_D24_LONGER,
  FW_D24_SLOT_MASK,
  FW_D24_VERDICT_SHIFT,
  LAYOUT,
  MAP,
  type MapName,
  decodeTableCfg,
  FW_TABLE,
} from '../../node-agent/src/datapath/abi.js';
import { type BpfDatapath, openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import type { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import type { MapOp } from '../../node-agent/src/datapath/datapath.js';
import { bucketsOf, keyHash, tag4 } from '../../node-agent/src/datapath/fwtab-hash.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { withNetnsPair } from '../support/netns.js';
import { runChild } from '../support/dataplane-child.js';
import { ipFrame } from '../support/frames.js';
import { cleanupPins, indexWordAt, pinnedMap, pinnedTableCfg, uniquePinDir, withDatapath } from '../support/pin-dirs.js';
import { applyOps, readEntries, readRuleCounters } from '../support/object-forms.js';

function pinned(pinDir: string, name: MapName): BpfMap {
  return pinnedMap(pinDir, name);
}

function tableCfg(pinDir: string, table: number): { seed: number; nbuckets: number } {
  return decodeTableCfg(pinnedTableCfg(pinDir, table));
}

/** `n` distinct prefixes of length len whose first and second buckets are the same two buckets. */
function colliding(
  family: 4 | 6,
  seed: number,
  nbuckets: number,
  len: number,
  n: number,
  avoid: (b: Uint8Array) => boolean = () => false,
): Uint8Array[] {
  const byPair = new Map<string, Uint8Array[]>();
  for (let i = 1; i < 2_000_000; i++) {
    const b = new Uint8Array(family === 4 ? 4 : 16);
    if (family === 4) b.set([10, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
    else b.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, (i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
    if (avoid(b)) continue;
    const [b1, b2] = bucketsOf(seed, nbuckets, len, b);
    if (b1 === b2) continue;
    const key = `${b1}/${b2}`;
    const list = byPair.get(key) ?? [];
    list.push(b);
    byPair.set(key, list);
    if (list.length === n) return list;
  }
  throw new Error('no colliding keys found');
}

const addr = (b: Uint8Array) => formatAddress({ family: b.length === 4 ? 4 : 6, bytes: b });
const deny = (bytes: Uint8Array, len: number, slot: number, action: 'deny' | 'allow' = 'deny'): MapOp => ({
  kind: 'entry.upsert',
  entry: { direction: 'ingress', prefix: { family: bytes.length === 4 ? 4 : 6, bytes, len }, action, mode: 'enforce', slot },
});
const del = (bytes: Uint8Array, len: number): MapOp => ({
  kind: 'entry.delete',
  direction: 'ingress',
  prefix: { family: bytes.length === 4 ? 4 : 6, bytes, len },
});

function verdict(dp: BpfDatapath, src: string): number {
  return dp.testRun('xdp', ipFrame(src, src.includes(':') ? '2001:db8:ffff::1' : '192.0.2.254')).retval;
}

/** Occupied slots of bucket b and its flags (IPv4: the tag word's top bits; IPv6: the flags word). */
function bucket(pinDir: string, name: MapName, family: 4 | 6, b: number): { used: number; ovf: boolean; spill: boolean } {
  const m = pinned(pinDir, name);
  try {
    const v = m.lookupU32(b)!;
    if (family === 4) {
      let used = 0;
      for (let i = 1; i <= FW_B4_SLOTS; i++) {
        const key = v.readBigUInt64LE(i * 8) & ((1n << 33n) - 1n);
        const tag = v[i - 1]!; // slot i's tag is byte i - 1 of the tag word
        assert.equal(tag !== 0, key !== 0n, `bucket ${b} slot ${i}: a tag iff a key`);
        if (key !== 0n) used++;
      }
      const w0 = v.readBigUInt64LE(0);
      return { used, ovf: w0 >> 63n === 1n, spill: ((w0 >> 62n) & 1n) === 1n };
    }
    let used = 0;
    for (let i = 0; i < FW_B6_SLOTS; i++) if (v.readBigUInt64LE(i * 24 + 16) & 0x100n) used++;
    const f = v.readBigUInt64LE(LAYOUT.fw_bucket6.fields.flags);
    return { used, ovf: (f & 1n) === 1n, spill: (f & 2n) === 2n };
  } finally {
    m.close();
  }
}

function spillCount(pinDir: string, name: MapName): number {
  const m = pinned(pinDir, name);
  try {
    return m.lookupAll().count;
  } finally {
    m.close();
  }
}

for (const family of [4, 6] as const) {
  const len = family === 4 ? 32 : 128;
  const per = family === 4 ? FW_B4_SLOTS : FW_B6_SLOTS;
  const tab = family === 4 ? MAP.IN4_TAB : MAP.IN6_TAB;
  const spill = family === 4 ? MAP.IN4_SPILL : MAP.IN6_SPILL;

  test(`IPv${family} hash: a full first bucket overflows to the second, both full to the spill hash; lookups, packets, counters, replacements and deletes stay exact`, async () => {
    await withDatapath(`tab-ovf${family}`, { capacity: { prefixesPerTable: 256, counterSlots: 64 } }, async (dp, pinDir) => {
      const { seed, nbuckets } = tableCfg(pinDir, family === 4 ? FW_TABLE.IN4 : FW_TABLE.IN6);
      const n = 2 * per + 3;
      const keys = colliding(family, seed, nbuckets, len, n + 1);
      const extra = keys.pop()!; // same two buckets, inserted later
      const [b1, b2] = bucketsOf(seed, nbuckets, len, keys[0]!);
      await applyOps(
        dp,
        keys.map((k, i) => deny(k, len, i + 1)),
      );

      assert.deepEqual(bucket(pinDir, tab, family, b1), { used: per, ovf: true, spill: true }, 'first bucket full, both flags');
      assert.equal(bucket(pinDir, tab, family, b2).used, per, 'second bucket full');
      assert.equal(spillCount(pinDir, spill), 3, 'the rest in the spill hash');
      assert.equal(readEntries(dp).length, n);
      for (const [i, k] of keys.entries()) {
        assert.deepEqual(dp.lookupEntry('ingress', { family, bytes: k, len })?.slot, i + 1, `lookup ${addr(k)}`);
        assert.equal(verdict(dp, addr(k)), XDP_DROP, `packet from ${addr(k)}`);
      }
      assert.equal(verdict(dp, addr(extra)), XDP_PASS, 'a colliding address not in the set passes');
      const c = readRuleCounters(dp, n + 1).packets;
      for (let i = 1; i <= n; i++) assert.equal(c[i], 1n, `slot ${i} counted once`);

      // Replace one entry in each place (first bucket, second bucket, spill): allow, new slot.
      const firstIdx = 0;
      const secondIdx = per;
      const spillIdx = n - 1;
      await applyOps(
        dp,
        [firstIdx, secondIdx, spillIdx].map((i) => deny(keys[i]!, len, 40 + i, 'allow')),
      );
      for (const i of [firstIdx, secondIdx, spillIdx]) {
        assert.equal(verdict(dp, addr(keys[i]!)), XDP_PASS, `replaced ${addr(keys[i]!)} allows`);
        assert.equal(readRuleCounters(dp, 64).packets[40 + i], 1n, 'counted on its new slot');
      }
      assert.equal(
        dp.usage().find((u) => u.family === family && u.direction === 'ingress')!.entries,
        n,
        'replacements are not new entries',
      );

      // Delete one from each place; the others still match; a new colliding key takes the freed first-bucket slot.
      await applyOps(dp, [del(keys[1]!, len), del(keys[per + 1]!, len), del(keys[n - 2]!, len)]);
      for (const i of [1, per + 1, n - 2]) assert.equal(verdict(dp, addr(keys[i]!)), XDP_PASS, `deleted ${addr(keys[i]!)} passes`);
      for (const i of [2, per + 2, n - 3]) assert.equal(verdict(dp, addr(keys[i]!)), XDP_DROP, `kept ${addr(keys[i]!)} drops`);
      await applyOps(dp, [deny(extra, len, 60)]);
      assert.equal(bucket(pinDir, tab, family, b1).used, per, 'the freed slot of the first bucket is reused');
      assert.equal(verdict(dp, addr(extra)), XDP_DROP);
      assert.equal(readEntries(dp).length, n - 3 + 1);

      // Flags stay while keys need them; an emptied table drops them.
      const last = keys[2]!; // a deny in the first bucket
      const left = [...keys.filter((_, i) => ![1, 2, per + 1, n - 2].includes(i)), extra];
      await applyOps(
        dp,
        left.map((k) => del(k, len)),
      );
      assert.equal(verdict(dp, addr(last)), XDP_DROP, 'the last key still found');
      assert.equal(bucket(pinDir, tab, family, b1).ovf, true, 'one key left: flags kept');
      await applyOps(dp, [del(last, len)]);
      assert.deepEqual(bucket(pinDir, tab, family, b1), { used: 0, ovf: false, spill: false }, 'empty table: flags cleared');
      assert.equal(spillCount(pinDir, spill), 0);
    });
  });
}

test('IPv4 hash: keys whose low 32 key bits are equal (addresses differing only in the top bit) in one bucket stay apart', async () => {
  await withDatapath('tab-lo32', { capacity: { prefixesPerTable: 256, counterSlots: 64 } }, async (dp, pinDir) => {
    const { seed, nbuckets } = tableCfg(pinDir, FW_TABLE.IN4);
    // hi = x.y.z.7 with the top bit set, lo = the same with it cleared (same low 32 key bits).
    // Multiplicative hashing puts them in different first buckets: make lo overflow into hi's.
    let pair: [Uint8Array, Uint8Array] | null = null;
    for (let i = 1; i < 1_000_000 && !pair; i++) {
      const hi = new Uint8Array([0x80 | ((i >>> 16) & 0x7f), (i >>> 8) & 0xff, i & 0xff, 7]);
      const lo = new Uint8Array([hi[0]! & 0x7f, hi[1]!, hi[2]!, hi[3]!]);
      const [lo1, lo2] = bucketsOf(seed, nbuckets, 32, lo);
      if (lo2 === bucketsOf(seed, nbuckets, 32, hi)[0] && lo1 !== lo2) pair = [hi, lo];
    }
    assert.ok(pair, 'a pair whose second/first buckets meet');
    const [hiAddr, loAddr] = pair;
    const loFirst = bucketsOf(seed, nbuckets, 32, loAddr)[0];
    // Fill lo's first bucket with other keys, so lo goes to its second bucket (hi's first).
    const fill: Uint8Array[] = [];
    for (let i = 1; fill.length < FW_B4_SLOTS; i++) {
      const k = new Uint8Array([10, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
      if (bucketsOf(seed, nbuckets, 32, k)[0] === loFirst) fill.push(k);
    }
    await applyOps(dp, [...fill.map((k, i) => deny(k, 32, 10 + i)), deny(loAddr, 32, 2, 'allow')]);
    const hiBucket = bucketsOf(seed, nbuckets, 32, hiAddr)[0];
    assert.equal(bucket(pinDir, MAP.IN4_TAB, 4, hiBucket).used, 1, 'lo sits in the bucket hi hashes to');
    assert.equal(verdict(dp, addr(hiAddr)), XDP_PASS, `${addr(hiAddr)} must not match ${addr(loAddr)}`);
    assert.equal(dp.lookupEntry('ingress', { family: 4, bytes: hiAddr, len: 32 }), null);
    await applyOps(dp, [deny(hiAddr, 32, 3)]);
    assert.equal(verdict(dp, addr(hiAddr)), XDP_DROP);
    assert.equal(verdict(dp, addr(loAddr)), XDP_PASS);
    const c = readRuleCounters(dp, 4).packets;
    assert.deepEqual([c[2], c[3]], [1n, 1n]);
    await applyOps(dp, [del(hiAddr, 32)]);
    assert.equal(verdict(dp, addr(hiAddr)), XDP_PASS);
    assert.equal(dp.lookupEntry('ingress', { family: 4, bytes: loAddr, len: 32 })?.action, 'allow');
  });
});

test('IPv4 hash: keys with the same tag in one bucket: each is found, wherever it sits; deleting the lowest keeps the others', async () => {
  await withDatapath('tab-tags', { capacity: { prefixesPerTable: 256, counterSlots: 64 } }, async (dp, pinDir) => {
    const { seed, nbuckets } = tableCfg(pinDir, FW_TABLE.IN4);
    // Four /32 keys with one first bucket and one tag (the fourth is never inserted), and other keys of the bucket.
    const v4 = (i: number) => new Uint8Array([10, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
    const target = bucketsOf(seed, nbuckets, 32, v4(1))[0];
    const tag = tag4(keyHash(seed, 32, v4(1)));
    const same: Uint8Array[] = [v4(1)];
    const other: Uint8Array[] = [];
    for (let i = 2; i < 4_000_000 && same.length < 4; i++) {
      const k = v4(i);
      if (bucketsOf(seed, nbuckets, 32, k)[0] !== target) continue;
      if (tag4(keyHash(seed, 32, k)) === tag) same.push(k);
      else if (other.length < 2) other.push(k);
    }
    assert.equal(same.length, 4, 'four keys sharing bucket and tag');
    const [k1, k2, k3, absent] = same as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    // Slots fill in order: other[0], k1, other[1], k2, k3: the tag matches slots 2, 4 and 5.
    await applyOps(dp, [deny(other[0]!, 32, 1), deny(k1, 32, 2), deny(other[1]!, 32, 3), deny(k2, 32, 4), deny(k3, 32, 5, 'allow')]);
    assert.equal(bucket(pinDir, MAP.IN4_TAB, 4, target).used, 5);
    assert.equal(verdict(dp, addr(k1)), XDP_DROP, 'the lowest match is the key');
    assert.equal(verdict(dp, addr(k2)), XDP_DROP, 'a key behind another with its tag');
    assert.equal(verdict(dp, addr(k3)), XDP_PASS, 'the third (an allow) found');
    assert.equal(verdict(dp, addr(absent)), XDP_PASS, 'an absent key with the same tag and bucket matches nothing');
    assert.equal(verdict(dp, addr(other[1]!)), XDP_DROP, 'a key with another tag');
    const c = readRuleCounters(dp, 8).packets;
    assert.deepEqual([c[1], c[2], c[3], c[4], c[5]], [0n, 1n, 1n, 1n, 1n], 'each packet counted on its own rule');
    await applyOps(dp, [del(k1, 32)]);
    assert.equal(verdict(dp, addr(k1)), XDP_PASS, 'deleted');
    assert.equal(verdict(dp, addr(k2)), XDP_DROP, 'now the lowest match');
    assert.equal(dp.lookupEntry('ingress', { family: 4, bytes: k3, len: 32 })?.slot, 5);
    await applyOps(dp, [deny(absent, 32, 6)]); // takes k1's freed slot
    assert.equal(verdict(dp, addr(absent)), XDP_DROP);
    assert.equal(verdict(dp, addr(k1)), XDP_PASS, 'the reused slot holds another key with the same tag');
    assert.equal(verdict(dp, addr(k3)), XDP_PASS);
    assert.equal(readRuleCounters(dp, 8).packets[6], 1n);
  });
});

test('IPv6 hash: deleted slots are reused after a grace period; delete and re-add cycles keep every verdict', async () => {
  await withDatapath('tab-v6reuse', { capacity: { prefixesPerTable: 256, counterSlots: 64 } }, async (dp, pinDir) => {
    const { seed, nbuckets } = tableCfg(pinDir, FW_TABLE.IN6);
    const keys = colliding(6, seed, nbuckets, 128, FW_B6_SLOTS * 2);
    const [b1] = bucketsOf(seed, nbuckets, 128, keys[0]!);
    const a = keys.slice(0, FW_B6_SLOTS); // fill the first bucket
    const b = keys.slice(FW_B6_SLOTS);
    await applyOps(
      dp,
      a.map((k, i) => deny(k, 128, i + 1)),
    );
    assert.deepEqual(bucket(pinDir, MAP.IN6_TAB, 6, b1), { used: FW_B6_SLOTS, ovf: false, spill: false });
    for (let round = 0; round < 3; round++) {
      // Swap the bucket's content in one apply: deletes, then adds of keys that hash to the same bucket.
      const [out, inn] = round % 2 === 0 ? [a, b] : [b, a];
      await applyOps(dp, [...out.map((k) => del(k, 128)), ...inn.map((k, i) => deny(k, 128, 10 + i))]);
      for (const k of out) assert.equal(verdict(dp, addr(k)), XDP_PASS, `round ${round}: deleted ${addr(k)}`);
      for (const k of inn) assert.equal(verdict(dp, addr(k)), XDP_DROP, `round ${round}: added ${addr(k)}`);
      assert.equal(readEntries(dp).length, FW_B6_SLOTS);
    }
  });
});

test('direct /24 index: each /24 holds its longest entry of length <= 24 and LONGER while a longer entry lies inside; deletes fall back to the cover; rebuilt after reopen', async () => {
  await withDatapath('tab-d24', {}, async (dp, dir) => {
    const up = (cidr: string, slot: number, action: 'deny' | 'allow' = 'deny', mode: 'enforce' | 'monitor' = 'enforce'): MapOp => ({
      kind: 'entry.upsert',
      entry: { direction: 'ingress', prefix: parseCidr(cidr), action, mode, slot },
    });
    const rm = (cidr: string): MapOp => ({ kind: 'entry.delete', direction: 'ingress', prefix: parseCidr(cidr) });
    /** The index word of a.b.c.0/24: [length or -1, slot, verdict, LONGER]. */
    const at = (d: string, a: number, b: number, c: number): [number, number, number, boolean] => {
      const w = indexWordAt(d, ((a << 24) | (b << 16) | (c << 8)) >>> 0);
      return [((w >>> FW_D24_LEN_SHIFT) & 31) - 1, w & FW_D24_SLOT_MASK, (w >>> FW_D24_VERDICT_SHIFT) & 3, (w & FW_D24_LONGER) !== 0];
    };
    const DROP = 1;
    const PASS = 0;
    const WOULD = 2;
    await applyOps(dp, [up('10.1.2.3/32', 1), up('10.1.9.0/24', 2), up('10.2.0.0/16', 3), up('172.16.0.0/12', 4, 'deny', 'monitor')]);
    assert.deepEqual(at(dir, 10, 1, 2), [-1, 0, 0, true], 'only a /32 in 10.1.2: LONGER, no shorter entry');
    assert.deepEqual(at(dir, 10, 1, 9), [24, 2, DROP, false]);
    assert.deepEqual(
      [at(dir, 10, 2, 0), at(dir, 10, 2, 255)],
      [
        [16, 3, DROP, false],
        [16, 3, DROP, false],
      ],
      'a /16 fills its 256 /24s',
    );
    assert.deepEqual(
      [at(dir, 172, 16, 0), at(dir, 172, 31, 255), at(dir, 172, 32, 0)],
      [
        [12, 4, WOULD, false],
        [12, 4, WOULD, false],
        [-1, 0, 0, false],
      ],
    );
    assert.deepEqual(at(dir, 10, 3, 0), [-1, 0, 0, false]);

    // A longer entry inside keeps its /24s from a shorter one, written before or after it.
    await applyOps(dp, [up('10.2.7.0/24', 5, 'allow'), up('10.0.0.0/8', 6)]);
    assert.deepEqual(
      [at(dir, 10, 2, 7), at(dir, 10, 2, 8), at(dir, 10, 1, 9), at(dir, 10, 3, 0)],
      [
        [24, 5, PASS, false],
        [16, 3, DROP, false],
        [24, 2, DROP, false],
        [8, 6, DROP, false],
      ],
    );
    assert.deepEqual(at(dir, 10, 1, 2), [8, 6, DROP, true], 'the /8 takes 10.1.2 and LONGER stays');
    // Same prefix, new verdict and slot: rewritten in place.
    await applyOps(dp, [up('10.2.0.0/16', 13, 'deny', 'monitor')]);
    assert.deepEqual(
      [at(dir, 10, 2, 8), at(dir, 10, 2, 7)],
      [
        [16, 13, WOULD, false],
        [24, 5, PASS, false],
      ],
    );
    // Deletes: the /24s go to the longest entry that still covers them.
    await applyOps(dp, [rm('10.2.0.0/16')]);
    assert.deepEqual(
      [at(dir, 10, 2, 8), at(dir, 10, 2, 7)],
      [
        [8, 6, DROP, false],
        [24, 5, PASS, false],
      ],
    );
    await applyOps(dp, [up('10.2.0.0/16', 3)]);
    // A prefix and its cover deleted in one apply, in either order.
    await applyOps(dp, [rm('10.0.0.0/8'), rm('10.2.0.0/16')]);
    assert.deepEqual(
      [at(dir, 10, 2, 8), at(dir, 10, 3, 0), at(dir, 10, 1, 2)],
      [
        [-1, 0, 0, false],
        [-1, 0, 0, false],
        [-1, 0, 0, true],
      ],
    );
    await applyOps(dp, [up('10.0.0.0/8', 6), up('10.2.0.0/16', 3)]);
    await applyOps(dp, [rm('10.2.0.0/16'), rm('10.0.0.0/8')]);
    assert.deepEqual(
      [at(dir, 10, 2, 8), at(dir, 10, 3, 0)],
      [
        [-1, 0, 0, false],
        [-1, 0, 0, false],
      ],
    );

    // A delete of an absent prefix in the same apply does not hide the live entry of its length
    // (the only /16 here) from the covers.
    await applyOps(dp, [up('10.9.0.0/16', 11), up('10.9.5.0/24', 12)]);
    await applyOps(dp, [rm('10.8.0.0/16'), rm('10.9.5.0/24')]);
    assert.deepEqual(at(dir, 10, 9, 5), [16, 11, DROP, false]);
    assert.equal(verdict(dp, '10.9.5.1'), XDP_DROP);
    await applyOps(dp, [rm('10.9.0.0/16')]);
    // LONGER follows the entries longer than /24 of its /24; the packets agree.
    await applyOps(dp, [up('10.1.9.128/25', 7, 'allow')]);
    assert.deepEqual(at(dir, 10, 1, 9), [24, 2, DROP, true]);
    assert.equal(verdict(dp, '10.1.9.200'), XDP_PASS, 'inside the /25 (allow)');
    assert.equal(verdict(dp, '10.1.9.5'), XDP_DROP, 'inside the /24 only');
    await applyOps(dp, [rm('10.1.9.128/25')]);
    assert.deepEqual(at(dir, 10, 1, 9), [24, 2, DROP, false]);
    assert.equal(verdict(dp, '10.1.9.200'), XDP_DROP);
    await applyOps(dp, [rm('10.1.2.3/32')]);
    assert.deepEqual(at(dir, 10, 1, 2), [-1, 0, 0, false], 'the last longer entry of 10.1.2 is gone');
    assert.equal(verdict(dp, '10.1.2.3'), XDP_PASS);
    // /0 fills all 2^24 words, and goes again.
    await applyOps(dp, [up('0.0.0.0/0', 8)]);
    assert.deepEqual(
      [at(dir, 0, 0, 0), at(dir, 255, 255, 255), at(dir, 10, 1, 9)],
      [
        [0, 8, DROP, false],
        [0, 8, DROP, false],
        [24, 2, DROP, false],
      ],
    );
    assert.equal(verdict(dp, '203.0.113.9'), XDP_DROP);
    await applyOps(dp, [rm('0.0.0.0/0')]);
    assert.deepEqual(
      [at(dir, 0, 0, 0), at(dir, 255, 255, 255)],
      [
        [-1, 0, 0, false],
        [-1, 0, 0, false],
      ],
    );
    dp.close();

    // A new instance counts the longer entries from the tables before it changes LONGER.
    const again = openDatapath({ pinDir: dir });
    try {
      await applyOps(again, [up('10.2.7.7/32', 9), up('10.2.7.8/31', 10)]);
      assert.deepEqual(at(dir, 10, 2, 7), [24, 5, PASS, true]);
      await applyOps(again, [rm('10.2.7.7/32')]);
      assert.deepEqual(at(dir, 10, 2, 7), [24, 5, PASS, true], 'the /31 is still there');
      await applyOps(again, [rm('10.2.7.8/31')]);
      assert.deepEqual(at(dir, 10, 2, 7), [24, 5, PASS, false], 'counts rebuilt from the table: the last one clears');
      assert.equal(verdict(again, '10.2.7.9'), XDP_PASS);
      assert.equal(verdict(again, '10.2.8.9'), XDP_PASS);
      assert.equal(verdict(again, '172.20.0.1'), XDP_PASS, 'monitor: counted as would-drop, passed');
    } finally {
      again.close();
    }
  });
});

test('interface totals: two interfaces whose counter slots collide count separately (the second one through fw_if_cntx); detach frees the slot', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('tab-ifslot');
    try {
      // ifindex 700 and 1212 share slot (ifindex % 512).
      for (const [x, y, ix] of [
        ['fwcA', 'fwcB', 700],
        ['fwcC', 'fwcD', 1212],
      ] as const) {
        const r = bed.execSync('b', [
          'ip',
          'link',
          'add',
          x,
          'index',
          String(ix),
          'type',
          'veth',
          'peer',
          'name',
          y,
          'index',
          String(ix + 1),
        ]);
        assert.equal(r.code, 0, r.stderr);
        // No IPv6 on them: no router solicitation or MLD report from a peer lands in the exact totals.
        assert.equal(
          bed.execSync('b', ['sysctl', '-qw', `net.ipv6.conf.${x}.disable_ipv6=1`, `net.ipv6.conf.${y}.disable_ipv6=1`]).code,
          0,
        );
        bed.execSync('b', ['ip', 'link', 'set', x, 'up']);
        bed.execSync('b', ['ip', 'link', 'set', y, 'up']);
      }
      const res = await runChild(bed, 'b', [
        { open: { pinDir, capacity: { prefixesPerTable: 1024, counterSlots: 64 } } },
        { apply: [{ upsert: { direction: 'ingress', cidr: '198.51.100.0/24', action: 'deny', slot: 1 } }] },
        { attach: { ifname: 'fwcA', opts: { egress: false } } },
        { attach: { ifname: 'fwcC', opts: { egress: false } } },
        { testRun: { ifname: 'fwcA', src: '198.51.100.7', dst: '192.0.2.254', count: 3 } },
        { testRun: { ifname: 'fwcC', src: '203.0.113.7', dst: '192.0.2.254', count: 2 } },
        { testRun: { ifname: 'fwcC', src: '198.51.100.8', dst: '192.0.2.254', count: 1 } },
        { interfaceCounters: true },
        { detach: 'fwcA' },
        { testRun: { ifname: 'fwcC', src: '198.51.100.9', dst: '192.0.2.254', count: 1 } },
        { interfaceCounters: true },
        { uninstall: true },
      ]);
      assert.ok(
        res.every((r) => r.ok),
        JSON.stringify(res),
      );
      assert.deepEqual(res[4]!.result, [XDP_DROP, XDP_DROP, XDP_DROP]);
      assert.deepEqual(res[5]!.result, [XDP_PASS, XDP_PASS]);
      const totals = (r: (typeof res)[number]) =>
        Object.fromEntries(
          (r.result as Array<{ ifname: string; direction: string; totals: { pass: { packets: string }; drop: { packets: string } } }>).map(
            (c) => [`${c.ifname}/${c.direction}`, [Number(c.totals.pass.packets), Number(c.totals.drop.packets)]],
          ),
        );
      assert.deepEqual(totals(res[7]!), { 'fwcA/ingress': [0, 3], 'fwcA/egress': [0, 0], 'fwcC/ingress': [2, 1], 'fwcC/egress': [0, 0] });
      assert.deepEqual(totals(res[10]!), { 'fwcC/ingress': [2, 2], 'fwcC/egress': [0, 0] });
    } finally {
      cleanupPins(pinDir);
    }
  });
});
