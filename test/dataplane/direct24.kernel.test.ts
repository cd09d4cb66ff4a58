// The IPv4 direct /24 index against a reference: random IPv4 entries of
// every length, drawn inside 10.0.0.0/14 so that they nest (a /8, /12, /16,
// /20 ... over the /24s and /32s inside), upserted, replaced and deleted in
// random batches, a prefix and its cover often in the same batch, in either
// order, deletes of absent prefixes among them; now and then a /0. With most lengths in the trie (K=2) and with the
// default layout (K=6). After every batch: the index word of every /24 the
// entries touch equals the longest entry of length <= 24 over it and LONGER
// says whether a longer entry lies inside it; and packets from addresses at,
// inside and beside every entry get the verdict of a longest-prefix match
// over the entries the batch left (ingress, XDP); exact lookups read back
// each entry, and nothing for an absent prefix.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FW_D24_LEN_SHIFT, FW_D24_LONGER, FW_D24_SLOT_MASK, FW_D24_VERDICT_SHIFT } from '../../node-agent/src/datapath/abi.js';
import type { MapOp } from '../../node-agent/src/datapath/datapath.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { rng32 } from '../support/rng.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { applyOps } from '../support/object-forms.js';

interface Entry {
  len: number;
  a: number; // masked, host order
  slot: number;
  action: 'deny' | 'allow';
  mode: 'enforce' | 'monitor';
}

const LENS = [8, 12, 14, 16, 16, 18, 20, 20, 22, 23, 24, 24, 24, 24, 25, 26, 28, 28, 30, 31, 32, 32, 32, 32];
const BASE = 0x0a000000; // 10.0.0.0/14: 1024 /24s
const mask = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
const dotted = (v: number) => `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
const keyOf = (len: number, a: number) => len * 2 ** 32 + a;
const covers = (e: Entry, v: number) => (v & mask(e.len)) >>> 0 === e.a;
const verdictCode = (e: Entry) => (e.action === 'allow' ? 0 : e.mode === 'monitor' ? 2 : 1);

for (const k of [2, 6]) {
  test(`direct /24 index, K=${k}: random nested IPv4 entries in random batches match a longest-prefix reference, word by word and packet by packet`, async () => {
    await withDatapath(`d24-rand-k${k}`, { maxHashLengths: k }, async (dp) => {
      const rand = rng32(0x5eed + k);
      const pick = <T>(xs: readonly T[]): T => xs[rand() % xs.length]!;
      const model = new Map<number, Entry>();
      const op = (e: Entry): MapOp => ({
        kind: 'entry.upsert',
        entry: {
          direction: 'ingress',
          prefix: { family: 4, bytes: bytesOf(e.a), len: e.len },
          action: e.action,
          mode: e.mode,
          slot: e.slot,
        },
      });
      const del = (e: Entry): MapOp => ({
        kind: 'entry.delete',
        direction: 'ingress',
        prefix: { family: 4, bytes: bytesOf(e.a), len: e.len },
      });
      const fresh = (len: number): Entry => ({
        len,
        a: ((BASE | (rand() & 0x3ffff)) & mask(len)) >>> 0,
        slot: 1 + (rand() % 4000),
        action: rand() % 4 === 0 ? 'allow' : 'deny',
        mode: rand() % 5 === 0 ? 'monitor' : 'enforce',
      });
      let wordsChecked = 0;
      let packets = 0;
      let longerSeen = 0;
      let coverDeletes = 0;
      try {
        for (let round = 0; round < 40; round++) {
          const ops: MapOp[] = [];
          const apply = (o: MapOp, e: Entry, remove: boolean) => {
            ops.push(o);
            if (remove) model.delete(keyOf(e.len, e.a));
            else model.set(keyOf(e.len, e.a), e);
          };
          const n = 5 + (rand() % 40);
          for (let i = 0; i < n; i++) {
            const live = [...model.values()];
            const r = rand() % 10;
            if (r < 5 || live.length < 10) {
              const e = fresh(round % 13 === 12 && i === 0 ? 0 : pick(LENS)); // now and then a /0
              apply(op(e), e, false);
            } else if (r < 7) {
              const e = pick(live); // replace: new slot and verdict
              const again: Entry = {
                ...e,
                slot: 1 + (rand() % 4000),
                action: rand() % 2 ? 'allow' : 'deny',
                mode: rand() % 3 ? 'enforce' : 'monitor',
              };
              apply(op(again), again, false);
            } else if (r < 9) {
              const e = pick(live);
              apply(del(e), e, true);
              // Now and then also a delete of an absent prefix of a live length (a no-op that must not
              // hide the live entries of that length from the index's covers).
              const x = { ...fresh(pick(live).len) };
              if (rand() % 3 === 0 && !model.has(keyOf(x.len, x.a))) ops.push(del(x));
            } else {
              // A prefix and the longest entry that covers it, in one batch, either order.
              const e = pick(live);
              const cover = live.filter((c) => c.len < e.len && covers(c, e.a)).sort((x, y) => y.len - x.len)[0];
              if (!cover) continue;
              coverDeletes++;
              const pair = rand() % 2 ? [e, cover] : [cover, e];
              for (const x of pair) apply(del(x), x, true);
            }
          }
          // Deletes of the /0 do not wait for chance.
          if (round % 13 === 0) for (const e of [...model.values()]) if (e.len === 0) apply(del(e), e, true);
          await applyOps(dp, ops);

          const entries = [...model.values()];
          const lpm = (v: number, maxLen = 32) => {
            let best: Entry | null = null;
            for (const e of entries) if (e.len <= maxLen && covers(e, v) && (!best || e.len > best.len)) best = e;
            return best;
          };
          // The index words of every /24 the entries touch (first, last and one inside), and a few more.
          const blocks = new Set<number>();
          for (const e of entries) {
            const first = e.a >>> 8;
            const last = ((e.a | ~mask(e.len)) >>> 0) >>> 8;
            blocks
              .add(first)
              .add(last)
              .add(first + (rand() % (last - first + 1)));
          }
          for (let i = 0; i < 32; i++) blocks.add((BASE >>> 8) + (rand() % 1024));
          for (const blk of blocks) {
            const w = dp.indexWord('ingress', (blk << 8) >>> 0);
            const best = lpm(blk << 8, 24);
            const longer = entries.some((e) => e.len > 24 && e.a >>> 8 === blk);
            if (longer) longerSeen++;
            const want = best ? [best.len, best.slot, verdictCode(best), longer] : [-1, 0, 0, longer];
            const got = [
              ((w >>> FW_D24_LEN_SHIFT) & 31) - 1,
              w & FW_D24_SLOT_MASK,
              (w >>> FW_D24_VERDICT_SHIFT) & 3,
              (w & FW_D24_LONGER) !== 0,
            ];
            assert.deepEqual(got, want, `round ${round}: index word of ${dotted(blk << 8)}/24`);
            wordsChecked++;
          }
          // Exact lookups: an entry reads back as itself; an absent prefix is absent even where a
          // shorter entry covers it (a trie lookup alone would answer with that one).
          for (let i = 0; i < 8; i++) {
            const e = pick(entries);
            const got = dp.lookupEntry('ingress', { family: 4, bytes: bytesOf(e.a), len: e.len });
            assert.deepEqual(
              got && [got.slot, got.action, got.mode],
              [e.slot, e.action, e.mode],
              `round ${round}: lookup of ${dotted(e.a)}/${e.len}`,
            );
            const x = fresh(pick(LENS));
            if (!model.has(keyOf(x.len, x.a)))
              assert.equal(
                dp.lookupEntry('ingress', { family: 4, bytes: bytesOf(x.a), len: x.len }),
                null,
                `round ${round}: lookup of absent ${dotted(x.a)}/${x.len}`,
              );
          }
          // Packets: at, inside and just beside every entry.
          const sources = new Set<number>();
          for (const e of entries) {
            const end = (e.a | ~mask(e.len)) >>> 0;
            for (const v of [e.a, end, (e.a + (rand() % (end - e.a + 1))) >>> 0, (end + 1) >>> 0, (e.a - 1) >>> 0]) sources.add(v);
          }
          for (const v of sources) {
            const best = lpm(v);
            const want = best && best.action === 'deny' && best.mode === 'enforce' ? XDP_DROP : XDP_PASS;
            assert.equal(
              dp.testRun('xdp', ipFrame(dotted(v), '192.0.2.254')).retval,
              want,
              `round ${round}: packet from ${dotted(v)} (best: ${best ? `${dotted(best.a)}/${best.len} ${best.action} ${best.mode}` : 'none'})`,
            );
            packets++;
          }
        }
      } finally {
        /* nothing held */
      }
      assert.ok(
        wordsChecked > 3000 && packets > 5000 && longerSeen > 500 && coverDeletes > 20,
        `coverage: ${wordsChecked} words, ${packets} packets, ${longerSeen} LONGER words, ${coverDeletes} prefix+cover deletes`,
      );
    });
  });
}

function bytesOf(v: number): Uint8Array {
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}
