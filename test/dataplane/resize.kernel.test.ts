// Maps that follow the rules, under traffic: sources in namespace a send UDP
// (IPv4 and IPv6) to namespace b the whole time, where fleetwall is attached,
// while (1) the tables grow from empty through several sizes to ~140k
// prefixes with a journal entry and a counter slot each, and shrink back to
// their least size, each resize a generation swapped in on the pinned links;
// (2) the process that swaps is killed (kill -9) at each step of a swap and a
// new one finishes the swap or rolls it back. Exact counts: not one packet of
// a blocked source passes, every packet of an allowed or unlisted one
// arrives, and the rule counters and interface totals count every packet
// once, across every swap.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { parseAddress } from '../../common/src/cidr.js';
import { decodeMeta, MAP } from '../../node-agent/src/datapath/abi.js';
import { type BpfDatapath, openDatapath, type SwapStep } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import { ATTR_ALLOW, OpBatch, type TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { StreamTraffic } from '../support/stream-traffic.js';
import { type NetnsPair, withNetnsPair } from '../support/netns.js';
import { readEntries, readRuleCounters } from '../support/object-forms.js';
import { rng32 } from '../support/rng.js';
import { startChild } from '../support/dataplane-child.js';
import { cleanupPins, uniquePinDir } from '../support/pin-dirs.js';

const CAP = { prefixesPerTable: 262_144, counterSlots: 262_144 };
const IN4: TableIndex = 0;
const IN6: TableIndex = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The bed's sources and the static rules that decide them (slot per rule). */
function sources(bed: NetnsPair) {
  const [A4, W4, U4, B4] = bed.a.v4Extra as [string, string, string, string]; // .2 .3 .4 .5
  const [B6, W6, U6] = bed.a.v6Extra as [string, string, string]; // ::2 ::3 ::4
  return {
    v4: [A4, W4, U4, B4],
    v6: [B6, W6, U6],
    /** source -> the slot that counts it (blocked) */
    blocked: new Map([
      [A4, 1], // deny 192.0.2.0/30
      [B4, 2], // deny /32
      [B6, 5], // deny /128
    ]),
    allowed: new Map([
      [W4, 3], // allow /32 inside the /30
      [W6, 6], // allow /128 inside deny ::/126 (slot 7)
    ]),
    /** [table, address, length, allow, slot, id] */
    rules: [
      [IN4, '192.0.2.0', 30, false, 1, 1n],
      [IN4, B4, 32, false, 2, 2n],
      [IN4, W4, 32, true, 3, 3n],
      [IN6, B6, 128, false, 5, 5n],
      [IN6, W6, 128, true, 6, 6n],
      [IN6, '2001:db8:f00::', 126, false, 7, 7n],
    ] as Array<[TableIndex, string, number, boolean, number, bigint]>,
    unlisted: [U4, U6],
  };
}

/**
 * Stops both streams and checks every count: blocked sources got nothing
 * through and were counted once each; every packet of the others was passed
 * by the program (counted once on its allow; the interface's drops are the
 * blocked sources' packets alone) and arrived, or was dropped by the
 * receiving socket's full buffer (UDP RcvbufErrors: a starved receiver on a
 * busy machine), which accounts for every one missing.
 */
async function checkExact(bed: NetnsPair, dp: BpfDatapath, streams: StreamTraffic[], what: string): Promise<void> {
  const s = sources(bed);
  const sent: Record<string, number> = {};
  const got: Record<string, number> = {};
  let socketDrops = 0;
  for (const st of streams) {
    const r = await st.stop();
    Object.assign(sent, r.sent);
    Object.assign(got, r.received);
    socketDrops += r.rcvbufErrors;
  }
  const c = readRuleCounters(dp, 8).packets;
  let blockedSent = 0;
  let missing = 0;
  for (const src of [...s.v4, ...s.v6]) {
    const n = sent[src]!;
    assert.ok(n > 50, `${what}: ${src} sent ${n} packets`);
    const slot = s.blocked.get(src);
    if (slot !== undefined) {
      blockedSent += n;
      assert.equal(got[src] ?? 0, 0, `${what}: not one packet from blocked ${src} passed`);
      assert.equal(c[slot], BigInt(n), `${what}: every packet from ${src} counted once on slot ${slot}`);
    } else {
      const a = s.allowed.get(src);
      if (a !== undefined) assert.equal(c[a], BigInt(n), `${what}: ${src} counted once on its allow (slot ${a})`);
      assert.ok((got[src] ?? 0) <= n, `${what}: ${src} received ${got[src]} of ${n}`);
      missing += n - (got[src] ?? 0);
    }
  }
  const ifc = dp.readInterfaceCounters().find((x) => x.ifname === bed.b.ifname && x.direction === 'ingress')!;
  assert.equal(ifc.totals.drop.packets, BigInt(blockedSent), `${what}: interface drops == packets of the blocked sources`);
  assert.equal(
    missing,
    socketDrops,
    `${what}: every packet from an allowed or unlisted source arrived, or the receiving socket dropped it for a full buffer (${socketDrops} such)`,
  );
}

test('maps grow from empty through several sizes to ~140k prefixes and shrink back, under traffic: nothing blocked passes, nothing allowed drops, counters exact across every swap', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('resize');
    try {
      const loader = startChild(bed, 'b', [{ open: { pinDir, capacity: CAP } }, { attach: { ifname: bed.b.ifname } }, { hold: true }]);
      const res = await loader.results(3);
      assert.ok(
        res.every((r) => r.ok),
        JSON.stringify(res),
      );
      const swaps: SwapStep[] = [];
      const dp = openDatapath({ pinDir, onSwapStep: (step) => swaps.push(step) });
      try {
        const s = sources(bed);
        const st = new OpBatch(16);
        for (const [t, a, len, allow, slot, id] of s.rules) {
          st.journalUpsert(id, t, parseAddress(a).bytes, 0, len, allow ? ATTR_ALLOW : 0, slot, 0);
        }
        for (const [t, a, len, allow, slot] of s.rules) st.entryUpsert(t, parseAddress(a).bytes, 0, len, allow ? ATTR_ALLOW : 0, slot);
        await dp.applyBatch(st);
        await dp.settled();
        const least = dp.generation().sizes;
        const streams = [await StreamTraffic.start(bed, s.v4, bed.b.v4, 2), await StreamTraffic.start(bed, s.v6, bed.b.v6, 2)];
        await sleep(300);

        // Background rules: /32 under 10/8, /24 under 11/8 (many /16s: /24 index blocks), /20 under 12/8,
        // /128 and /48 under 2001:db9::/32. Each a rule: journal entry and counter slot.
        const rand = rng32(11);
        const bg: Array<[TableIndex, Uint8Array, number]> = [];
        const seen = new Set<string>();
        const add = (t: TableIndex, b: Uint8Array, len: number) => {
          const k = `${len}/${Buffer.from(b).toString('hex')}`;
          if (seen.has(k)) return;
          seen.add(k);
          bg.push([t, b, len]);
        };
        const v4 = (w: number) => new Uint8Array([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
        for (let i = 0; i < 70_000; i++) add(IN4, v4((0x0a000000 | (rand() & 0xffffff)) >>> 0), 32);
        for (let i = 0; i < 50_000; i++) add(IN4, v4((0x0b000000 | (rand() & 0xffff00)) >>> 0), 24);
        for (let i = 0; i < 2_000; i++) add(IN4, v4((0x0c000000 | (rand() & 0xfff000)) >>> 0), 20);
        for (let i = 0; i < 16_000; i++) {
          const b = new Uint8Array(16);
          b.set([0x20, 0x01, 0x0d, 0xb9]);
          for (let j = 4; j < 16; j++) b[j] = rand() & 255;
          if (i % 2) b.fill(0, 6);
          add(IN6, b, i % 2 ? 48 : 128);
        }
        const CHUNK = 4096;
        const batch = new OpBatch(2 * CHUNK);
        const in4Sizes = new Set<number>([least.prefixes[IN4]!]);
        const slotSizes = new Set<number>([least.slots]);
        const blockSizes = new Set<number>([least.blocks[IN4]!]);
        const note = () => {
          const g = dp.generation().sizes;
          in4Sizes.add(g.prefixes[IN4]!);
          slotSizes.add(g.slots);
          blockSizes.add(g.blocks[IN4]!);
        };
        // Grow: journal upserts, then entry upserts (the agent's order), a chunk at a time.
        for (let i = 0; i < bg.length; i += CHUNK) {
          batch.clear();
          const end = Math.min(bg.length, i + CHUNK);
          for (let k = i; k < end; k++) {
            const [t, b, len] = bg[k]!;
            batch.journalUpsert(BigInt(1000 + k), t, b, 0, len, 0, 100 + k, 0);
          }
          for (let k = i; k < end; k++) {
            const [t, b, len] = bg[k]!;
            batch.entryUpsert(t, b, 0, len, 0, 100 + k);
          }
          await dp.applyBatch(batch);
          await dp.settled(); // the swap it made due (grow ahead) goes on after it resolves
          note();
          await sleep(5);
        }
        const peak = dp.generation().sizes;
        const grown = swaps.filter((x) => x === 'committed').length;
        assert.ok(
          in4Sizes.size >= 4 && slotSizes.size >= 4 && blockSizes.size >= 3,
          `several sizes: ${[...in4Sizes]} / ${[...slotSizes]} / ${[...blockSizes]}`,
        );
        const n4 = bg.filter(([t]) => t === IN4).length;
        assert.ok(peak.prefixes[IN4]! >= n4 && peak.slots >= bg.length + 100, JSON.stringify(peak));
        const mem = dp.memory();
        assert.deepEqual(
          [mem.tables[IN4]!.entries, mem.tables[IN6]!.entries, mem.journalRules],
          [n4 + 3, bg.length - n4 + 3, bg.length + s.rules.length],
          'every rule in the kernel and the journal',
        );
        // Shrink: journal deletes, then entry deletes, a chunk at a time.
        for (let i = bg.length; i > 0; i -= CHUNK) {
          batch.clear();
          const start = Math.max(0, i - CHUNK);
          for (let k = start; k < i; k++) batch.journalDelete(BigInt(1000 + k), 100 + k);
          for (let k = start; k < i; k++) {
            const [t, b, len] = bg[k]!;
            batch.entryDelete(t, b, 0, len);
          }
          await dp.applyBatch(batch);
          await dp.settled();
          await sleep(5);
        }
        const shrunk = swaps.filter((x) => x === 'committed').length - grown;
        assert.ok(grown >= 5 && shrunk >= 3, `swaps: ${grown} growing, ${shrunk} shrinking`);
        assert.deepEqual(dp.generation().sizes, least, 'back to the least sizes');
        assert.equal(readEntries(dp).length, s.rules.length, 'only the static rules left');
        await sleep(300);
        await checkExact(bed, dp, streams, 'grow and shrink');
        process.stderr.write(
          `# resize: ${bg.length} rules, ${grown} + ${shrunk} swaps, peak ${JSON.stringify(peak)}, ${(mem.bytes / 1e6).toFixed(1)} MB\n`,
        );
      } finally {
        dp.close();
      }
    } finally {
      cleanupPins(pinDir);
    }
  });
});

test('kill -9 at each step of a swap: the old or the new generation enforces throughout, the next open rolls back (before the mark) or finishes the swap; counters exact', async () => {
  await withNetnsPair(async (bed) => {
    const s = sources(bed);
    const wire = s.rules.map(([, a, len, allow, slot]) => ({
      upsert: { direction: 'ingress' as const, cidr: `${a}/${len}`, action: allow ? ('allow' as const) : ('deny' as const), slot },
    }));
    for (const step of ['built', 'marked', 'linked', 'carried'] as const) {
      const pinDir = uniquePinDir(`resize-kill-${step}`);
      try {
        // 3,000 /32s need a larger hash and 5,000 counter slots: one swap, stopped at `step`.
        const child = startChild(bed, 'b', [
          { open: { pinDir, capacity: CAP, pauseAtSwap: step } },
          { attach: { ifname: bed.b.ifname } },
          { apply: wire },
          { sleep: 1500 },
          { fill: { base: '10.0.0.0', count: 3000, len: 32, firstSlot: 2000 } },
        ]);
        const first = await child.results(3);
        assert.ok(
          first.every((r) => r.ok),
          JSON.stringify(first),
        );
        const streams = [await StreamTraffic.start(bed, s.v4, bed.b.v4, 2), await StreamTraffic.start(bed, s.v6, bed.b.v6, 2)];
        const paused = (await child.results(5))[4]!;
        assert.equal((paused as { paused?: string }).paused, step, `the swap stopped at ${step}`);
        await sleep(250);
        child.child.kill('SIGKILL');
        await new Promise((r) =>
          child.child.exitCode !== null || child.child.signalCode !== null ? r(null) : child.child.once('exit', r),
        );
        await sleep(250);
        const dp = openDatapath({ pinDir });
        try {
          const meta = BpfMap.fromPin(`${pinDir}/${MAP.META}`, MAP.META);
          const m = decodeMeta(meta.lookupU32(0)!);
          meta.close();
          const rolledBack = step === 'built';
          assert.deepEqual(
            [m.gen, m.nextGen, existsSync(`${pinDir}/gen-1`), existsSync(`${pinDir}/gen-2`)],
            rolledBack ? [1, 0, true, false] : [2, 0, false, true],
            `${step}: ${rolledBack ? 'rolled back' : 'finished'}`,
          );
          // The swap ran before the apply wrote anything: either generation holds the six static rules.
          assert.equal(readEntries(dp).length, 6, `${step}: the entries of the generation in force`);
          assert.equal(dp.generation().n, rolledBack ? 1 : 2);
          await sleep(250);
          await checkExact(bed, dp, streams, `killed at ${step}`);
        } finally {
          dp.close();
        }
      } finally {
        cleanupPins(pinDir);
      }
    }
  });
});
