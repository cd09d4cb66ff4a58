// Pinned state: journal, meta, counters, capacity, prefix-length placement,
// reopen and crash recovery, typed errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { parseCidr } from '../../common/src/cidr.js';
import {
  decodeMeta,
  encodeMeta,
  FW_ABI_VERSION,
  FW_D16_BLOCK,
  FW_D16_INDEX_MASK,
  FW_D24_LONGER,
  LAYOUT,
  MAP,
} from '../../node-agent/src/datapath/abi.js';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import { openDatapath, removePins, uninstallPins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { check, closeFd, raw } from '../../node-agent/src/datapath/libbpf.js';
import { BPF_MAP_TYPE_ARRAY, XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { ATTR_ALLOW, ATTR_MONITOR, type KernelEntry, type MapOp, OpBatch } from '../../node-agent/src/datapath/datapath.js';
import { DatapathError } from '../../node-agent/src/datapath/datapath.js';
import { placeNewLengths } from '../../node-agent/src/datapath/lengths.js';
import { ipFrame } from '../support/frames.js';
import { cleanupPins, indexWordAt, pinnedMap, uniquePinDir, withDatapath } from '../support/pin-dirs.js';
import { applyOps, readEntries, readJournal, readRuleCounters, batchOps } from '../support/object-forms.js';

const deny = (cidr: string, slot: number, direction: 'ingress' | 'egress' = 'ingress'): KernelEntry => ({
  direction,
  prefix: parseCidr(cidr),
  action: 'deny',
  mode: 'enforce',
  slot,
});
const up = (entry: KernelEntry): MapOp => ({ kind: 'entry.upsert', entry });
const del = (cidr: string, direction: 'ingress' | 'egress' = 'ingress'): MapOp => ({
  kind: 'entry.delete',
  direction,
  prefix: parseCidr(cidr),
});

test('placeNewLengths puts the most populated new lengths in the hash, up to K', () => {
  assert.deepEqual(
    placeNewLengths(
      [],
      new Map([
        [32, 10],
        [24, 50],
        [16, 1],
      ]),
      2,
    ),
    { toHash: [32, 24], toTrie: [16] },
  );
  assert.deepEqual(
    placeNewLengths(
      [32],
      new Map([
        [24, 5],
        [8, 9],
      ]),
      2,
    ),
    { toHash: [8], toTrie: [24] },
  );
  assert.deepEqual(placeNewLengths([32, 24], new Map([[16, 5]]), 2), { toHash: [], toTrie: [16] });
  assert.deepEqual(placeNewLengths([], new Map([[16, 5]]), 0), { toHash: [], toTrie: [16] });
});

test('journal, meta and counter reset round-trip through the pins and survive reopen', async () => {
  await withDatapath('state-journal', {}, async (dp, pinDir) => {
    const rule = (id: bigint, cidr: string, slot: number, expireUnixMs = 0) => ({
      id,
      direction: 'egress' as const,
      prefix: parseCidr(cidr),
      action: 'deny' as const,
      mode: 'monitor' as const,
      expireUnixMs,
      slot,
    });
    await applyOps(
      dp,
      [
        { kind: 'journal.upsert', rule: rule(7n, '2001:db8::/48', 3, 1_900_000_000_000) },
        { kind: 'journal.upsert', rule: rule(2n ** 63n + 5n, '198.51.100.0/24', 4) },
        { kind: 'journal.upsert', rule: rule(9n, '203.0.113.9/32', 5) },
        up(deny('203.0.113.9/32', 5)),
      ],
      { revision: 42n, storeId: 'store-a' },
    );
    await applyOps(dp, [
      { kind: 'journal.delete', id: 9n, slot: 5 },
      { kind: 'journal.delete', id: 12345n, slot: 4 },
    ]); // a slot that holds another rule: ignored
    assert.deepEqual(dp.readMeta(), { revision: 42n, storeId: 'store-a' });
    const j = readJournal(dp);
    assert.deepEqual(
      j.map((r) => [
        r.id,
        r.prefix.family,
        Buffer.from(r.prefix.bytes).toString('hex'),
        r.prefix.len,
        r.direction,
        r.action,
        r.mode,
        r.expireUnixMs,
        r.slot,
      ]),
      [
        [7n, 6, '20010db8000000000000000000000000', 48, 'egress', 'deny', 'monitor', 1_900_000_000_000, 3],
        [2n ** 63n + 5n, 4, 'c6336400', 24, 'egress', 'deny', 'monitor', 0, 4],
      ],
    );
    // Count, reset, count.
    for (let i = 0; i < 3; i++) assert.equal(dp.testRun('xdp', ipFrame('203.0.113.9', '192.0.2.1')).retval, XDP_DROP);
    assert.equal(readRuleCounters(dp, 6).packets[5], 3n);
    await applyOps(dp, [{ kind: 'counter.reset', slot: 5 }]);
    assert.equal(readRuleCounters(dp, 6).packets[5], 0n);
    dp.close();

    const again = openDatapath({ pinDir });
    try {
      assert.equal(again.createdFresh, false);
      assert.deepEqual(again.readMeta(), { revision: 42n, storeId: 'store-a' });
      assert.equal(readJournal(again).length, 2);
      assert.equal(readEntries(again).length, 1);
      assert.equal(again.testRun('xdp', ipFrame('203.0.113.9', '192.0.2.1')).retval, XDP_DROP, 'entries kept');
      assert.deepEqual(again.capacity, { prefixesPerTable: 8192, counterSlots: 4096 }, 'reopened pins keep their size');
      const reopenedBigger = openDatapath({ pinDir, capacity: { prefixesPerTable: 99999, counterSlots: 99 } });
      assert.deepEqual(reopenedBigger.capacity, { prefixesPerTable: 8192, counterSlots: 4096 });
      reopenedBigger.close();
    } finally {
      again.close();
    }
  });
});

test('a full table is refused before anything changes; bad ops are refused with EINVAL', async () => {
  await withDatapath('state-cap', { capacity: { prefixesPerTable: 16, counterSlots: 8 } }, async (dp) => {
    const ops: MapOp[] = [];
    for (let i = 0; i < 16; i++) ops.push(up(deny(`10.0.0.${i}/32`, 1)));
    await applyOps(dp, ops);
    assert.equal(dp.usage().find((u) => u.direction === 'ingress' && u.family === 4)!.entries, 16);
    // Re-applying the same 16 fits (replacements), 1 more does not.
    await applyOps(dp, ops);
    const err = await (async () => {
      try {
        await applyOps(dp, [up(deny('10.0.1.0/24', 2)), up(deny('10.0.0.99/32', 2))]);
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err instanceof DatapathError);
    assert.equal(err.code, 'E2BIG');
    assert.equal(err.errno, 7);
    assert.match(err.message, /would hold 18 prefixes, capacity is 16; nothing was changed/);
    assert.equal(readEntries(dp).length, 16, 'nothing half-applied');
    assert.equal(dp.testRun('xdp', ipFrame('10.0.1.5', '192.0.2.1')).retval, XDP_PASS);
    // Other tables are separate.
    await applyOps(dp, [up(deny('10.0.1.0/24', 2, 'egress'))]);
    await assert.rejects(async () => applyOps(dp, [up(deny('10.0.0.1/32', 8))]), {
      code: 'EINVAL',
      message: /counter slot 8 out of 0\.\.7/,
    });
    await assert.rejects(
      async () => applyOps(dp, [up({ ...deny('10.0.0.1/32', 1), prefix: { family: 4, bytes: new Uint8Array(16), len: 8 } })]),
      {
        code: 'EINVAL',
        message: /IPv4 prefix needs 4 bytes/,
      },
    );
  });
});

test('capacity is counted net of the deletes of the same call, in the order the ops run', async () => {
  await withDatapath('state-net', { capacity: { prefixesPerTable: 4, counterSlots: 8 } }, async (dp) => {
    const ingress4 = () => dp.usage().find((u) => u.direction === 'ingress' && u.family === 4)!.entries;
    await applyOps(
      dp,
      [1, 2, 3, 4].map((i) => up(deny(`10.1.0.${i}/32`, 1))),
    );
    // Adds before the deletes would overfill the table at that point: refused, nothing changed.
    await assert.rejects(
      async () => applyOps(dp, [up(deny('10.1.1.0/24', 2)), up(deny('10.1.0.5/32', 2)), del('10.1.0.1/32'), del('10.1.0.2/32')]),
      {
        code: 'E2BIG',
        message: /would hold 6 prefixes, capacity is 4; nothing was changed/,
      },
    );
    assert.equal(ingress4(), 4);
    assert.equal(dp.testRun('xdp', ipFrame('10.1.0.1', '192.0.2.254')).retval, XDP_DROP, 'nothing deleted');
    assert.equal(dp.testRun('xdp', ipFrame('10.1.1.9', '192.0.2.254')).retval, XDP_PASS, 'nothing added');
    // The same ops with the deletes first fit: the table never holds more than 4.
    await applyOps(dp, [del('10.1.0.1/32'), del('10.1.0.2/32'), up(deny('10.1.1.0/24', 2)), up(deny('10.1.0.5/32', 2))]);
    assert.equal(ingress4(), 4);
    assert.equal(dp.testRun('xdp', ipFrame('10.1.1.9', '192.0.2.254')).retval, XDP_DROP);
    // A replacement takes no room; a delete of an absent prefix frees none; an add deleted again in the same call frees its room.
    await applyOps(dp, [up(deny('10.1.0.3/32', 3)), del('10.9.9.9/32')]);
    await assert.rejects(async () => applyOps(dp, [del('10.9.9.9/32'), up(deny('10.2.0.0/16', 3))]), {
      code: 'E2BIG',
      message: /would hold 5 prefixes/,
    });
    await applyOps(dp, [del('10.1.0.3/32'), up(deny('10.2.0.0/16', 3)), del('10.2.0.0/16'), up(deny('10.3.0.0/16', 3))]);
    assert.deepEqual(
      readEntries(dp)
        .map((e) => `${e.prefix.len}`)
        .sort(),
      ['16', '24', '32', '32'],
    );
    // Tables are counted separately: egress has its own room.
    await applyOps(dp, [up(deny('10.1.0.1/32', 1, 'egress')), up(deny('10.1.0.2/32', 1, 'egress'))]);
  });
});

test('the bulk forms: applyBatch, entry and journal chunks, counters into caller buffers', async () => {
  await withDatapath('state-bulk', { capacity: { prefixesPerTable: 1024, counterSlots: 64 } }, async (dp) => {
    const b = new OpBatch(64);
    for (let i = 0; i < 10; i++) b.entryUpsert(0, (0x0a000000 | (i << 8) | 0x37) >>> 0, 0, 24, i % 3 === 0 ? ATTR_ALLOW : 0, i); // host bits masked
    b.entryUpsert(3, parseCidr('2001:db8:1::/48').bytes, 0, 48, ATTR_MONITOR, 11);
    b.entryUpsert(0, 0x0b000001, 0, 32, 0, 12);
    b.journalUpsert(5n, 2, 0xc0000200, 0, 24, ATTR_ALLOW | ATTR_MONITOR, 13, 1_900_000_000_000);
    b.journalUpsert(2n ** 64n - 1n, 1, parseCidr('2001:db8::1/128').bytes, 0, 128, 0, 14, 0);
    await dp.applyBatch(b, { revision: 3n, storeId: 'bulk' });
    assert.equal(dp.testRun('xdp', ipFrame('10.0.1.200', '192.0.2.254')).retval, XDP_DROP);
    assert.equal(dp.testRun('xdp', ipFrame('10.0.3.200', '192.0.2.254')).retval, XDP_PASS, 'allow');
    // Chunks of 3 give exactly what the object forms give.
    const fromChunks = (it: Iterable<OpBatch>) => {
      const out: MapOp[] = [];
      for (const c of it) {
        assert.ok(c.length <= 3);
        out.push(...batchOps(c));
      }
      return out;
    };
    const key = (o: MapOp) => JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? [...v] : v));
    assert.deepEqual(
      fromChunks(dp.readEntryChunks(3)).map(key).sort(),
      readEntries(dp)
        .map((entry) => key({ kind: 'entry.upsert', entry }))
        .sort(),
    );
    assert.equal(readEntries(dp).length, 12);
    assert.deepEqual(
      fromChunks(dp.readJournalChunks(3)).map(key).sort(),
      readJournal(dp)
        .map((rule) => key({ kind: 'journal.upsert', rule }))
        .sort(),
    );
    assert.deepEqual(
      readJournal(dp).map(
        (j) =>
          `${j.id} ${j.direction} ${j.prefix.family} ${Buffer.from(j.prefix.bytes).toString('hex')}/${j.prefix.len} ${j.action} ${j.mode} ${j.slot} ${j.expireUnixMs}`,
      ),
      [
        '5 egress 4 c0000200/24 allow monitor 13 1900000000000',
        `${2n ** 64n - 1n} ingress 6 20010db8000000000000000000000001/128 deny enforce 14 0`,
      ],
    );
    // Counters: a window of slots into the caller's arrays, the same as the allocating read.
    for (let k = 0; k < 4; k++) dp.testRun('xdp', ipFrame('10.0.2.9', '192.0.2.254'));
    const packets = new BigUint64Array(5);
    const bytes = new BigUint64Array(5);
    assert.equal(dp.readRuleCountersInto(0, packets, bytes), 5);
    assert.equal(packets[2], 4n);
    assert.equal(dp.readRuleCountersInto(62, packets, bytes), 2, 'cut at the capacity');
    assert.equal(dp.readRuleCountersInto(1, packets, bytes), 5);
    assert.deepEqual([...packets], [1n, 4n, 1n, 0n, 0n], 'slots 1..5 (a drop on 1, an allow on 3, four drops on 2)');
    assert.deepEqual([...bytes], [...readRuleCounters(dp, 6).bytes.subarray(1, 6)]);
    assert.equal(dp.mappedPages(), 0, 'nothing mapped at rest');
    // Bad columns are refused before anything changes.
    const bad = new OpBatch(2);
    bad.entryUpsert(0, 0x0c000000, 0, 33, 0, 1);
    await assert.rejects(async () => dp.applyBatch(bad), { code: 'EINVAL', message: /op 0: prefix length 33 out of 0\.\.32/ });
    bad.clear();
    bad.counterReset(64);
    await assert.rejects(async () => dp.applyBatch(bad), { code: 'EINVAL', message: /op 0: counter slot 64 out of 0\.\.63/ });
  });
});

test('prefix lengths: first K populated go to the hash, the rest to the trie; an emptied length frees its place', async () => {
  await withDatapath('state-lens', { maxHashLengths: 2 }, async (dp) => {
    const v4 = () => dp.layout().find((t) => t.direction === 'ingress' && t.family === 4)!;
    // Bulk: the two most populated lengths win the hash.
    await applyOps(dp, [
      up(deny('10.0.0.0/8', 1)),
      up(deny('192.0.2.0/24', 1)),
      up(deny('198.51.100.0/24', 1)),
      up(deny('203.0.113.1/32', 1)),
      up(deny('203.0.113.2/32', 1)),
      up(deny('203.0.113.3/32', 1)),
    ]);
    // IPv4: a trie of lengths up to 24 is never looked up (the /24 index holds them): no trie flag.
    assert.deepEqual(v4(), { direction: 'ingress', family: 4, hashLens: [32, 24], trieLens: [8], useTrie: false });
    await applyOps(dp, [up(deny('172.16.0.0/12', 1))]);
    assert.deepEqual(v4().trieLens, [8, 12], 'hash full: a new length goes to the trie');
    // A trie length above 24 sets the flag (the programs look it up in /24s that hold it), and clears it when it goes.
    await applyOps(dp, [up(deny('203.0.113.64/28', 1))]);
    assert.deepEqual([v4().trieLens, v4().useTrie], [[8, 12, 28], true]);
    assert.equal(dp.testRun('xdp', ipFrame('203.0.113.70', '192.0.2.254')).retval, XDP_DROP);
    assert.equal(dp.testRun('xdp', ipFrame('203.0.113.99', '192.0.2.254')).retval, XDP_PASS);
    await applyOps(dp, [del('203.0.113.64/28')]);
    assert.deepEqual([v4().trieLens, v4().useTrie], [[8, 12], false]);
    assert.equal(dp.testRun('xdp', ipFrame('203.0.113.70', '192.0.2.254')).retval, XDP_PASS);
    assert.equal(dp.testRun('xdp', ipFrame('10.9.9.9', '192.0.2.254')).retval, XDP_DROP, 'the /8 in the trie, through the /24 index');
    // Empty /24: its place frees; the next new length takes it.
    await applyOps(dp, [del('192.0.2.0/24'), del('198.51.100.0/24')]);
    assert.deepEqual(v4().hashLens, [32]);
    await applyOps(dp, [up(deny('100.64.0.0/16', 1))]);
    assert.deepEqual(v4().hashLens, [32, 16]);
    // Empty the trie: the programs stop looking it up.
    await applyOps(dp, [del('10.0.0.0/8'), del('172.16.0.0/12')]);
    assert.deepEqual(v4(), { direction: 'ingress', family: 4, hashLens: [32, 16], trieLens: [], useTrie: false });
    // Deleting an absent prefix changes nothing.
    await applyOps(dp, [del('203.0.113.99/32'), del('9.9.9.0/24')]);
    assert.deepEqual(v4().hashLens, [32, 16]);
    assert.equal(dp.usage().find((u) => u.family === 4 && u.direction === 'ingress')!.entries, 4);
    for (const [src, v] of [
      ['203.0.113.2', XDP_DROP],
      ['100.64.9.9', XDP_DROP],
      ['10.1.1.1', XDP_PASS],
      ['192.0.2.1', XDP_PASS],
    ] as const) {
      assert.equal(dp.testRun('xdp', ipFrame(src, '192.0.2.254')).retval, v, src);
    }
  });
});

test('a crash in the middle of apply is repaired at the next open (counts and the /24 index rebuilt from the maps)', async () => {
  const pinDir = uniquePinDir('state-dirty');
  try {
    const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: 1024, counterSlots: 16 }, maxHashLengths: 1 });
    await applyOps(dp, [up(deny('203.0.113.0/24', 1)), up(deny('198.51.100.7/32', 1)), up(deny('10.0.0.0/8', 2))]);
    dp.close();
    // Simulate a process that died mid-apply: dirty meta, wrong per-length counts, a /24 index
    // that missed the last writes (203.0.113.0/24 not painted, 198.51.100.0/24 without LONGER).
    const meta = BpfMap.fromPin(`${pinDir}/${MAP.META}`, MAP.META);
    const stat = BpfMap.fromPin(`${pinDir}/${MAP.LENSTAT}`, MAP.LENSTAT);
    const wordOf = (a: number, b: number, c: number) => indexWordAt(pinDir, ((a << 24) | (b << 16) | (c << 8)) >>> 0);
    let good: number[] = [];
    try {
      meta.updateU32(0, encodeMeta({ ...decodeMeta(meta.lookupU32(0)!), dirty: true }));
      stat.updateU32(0, Buffer.alloc(stat.info.valueSize));
      good = [wordOf(203, 0, 113), wordOf(198, 51, 100)];
      assert.ok(good[0] !== 0 && good[1] === FW_D24_LONGER, 'the /24 index as written');
      // The blocks of 203.0/16 and 198.51/16, emptied.
      const cfg = pinnedMap(pinDir, MAP.TBLCFG);
      const pool = pinnedMap(pinDir, MAP.IN4_D24);
      try {
        for (const x of [(203 << 8) | 0, (198 << 8) | 51]) {
          const w = cfg.lookupU32(0)!.readUInt32LE(LAYOUT.fw_table_cfg.fields.d16 + x * 4);
          assert.ok(w & FW_D16_BLOCK, 'a /16 that holds entries longer than /16 has a block');
          pool.updateU32(w & FW_D16_INDEX_MASK, Buffer.alloc(LAYOUT.fw_d24_block.size));
        }
      } finally {
        cfg.close();
        pool.close();
      }
      assert.equal(wordOf(203, 0, 113) | wordOf(198, 51, 100), 0, 'the words cleared');
    } finally {
      meta.close();
      stat.close();
    }
    const again = openDatapath({ pinDir });
    try {
      assert.equal(again.usage().find((u) => u.family === 4 && u.direction === 'ingress')!.entries, 3, 'recounted');
      const lay = again.layout().find((t) => t.family === 4 && t.direction === 'ingress')!;
      assert.equal(lay.hashLens.length + lay.trieLens.length, 3);
      assert.equal(again.testRun('xdp', ipFrame('10.2.3.4', '192.0.2.254')).retval, XDP_DROP);
      assert.deepEqual([wordOf(203, 0, 113), wordOf(198, 51, 100)], good, 'the /24 index rebuilt from the entries');
      assert.equal(again.testRun('xdp', ipFrame('203.0.113.9', '192.0.2.254')).retval, XDP_DROP);
      assert.equal(again.testRun('xdp', ipFrame('198.51.100.7', '192.0.2.254')).retval, XDP_DROP);
      await applyOps(again, [del('10.0.0.0/8')]);
      assert.equal(again.testRun('xdp', ipFrame('10.2.3.4', '192.0.2.254')).retval, XDP_PASS);
    } finally {
      again.close();
    }
  } finally {
    cleanupPins(pinDir);
  }
  assert.equal(existsSync(pinDir), false);
});

test('store ids: a UUID and 64 bytes are pinned whole; a longer one is refused', async () => {
  await withDatapath('state-store', {}, async (dp, pinDir) => {
    const uuid = 'b3b0c442-98fc-4c1c-9d3b-1c6e0a1f2d3e';
    await applyOps(dp, [], { revision: 7n, storeId: uuid });
    assert.deepEqual(dp.readMeta(), { revision: 7n, storeId: uuid });
    const max = 'é'.repeat(32); // 64 bytes of UTF-8
    await applyOps(dp, [], { revision: 8n, storeId: max });
    await assert.rejects(async () => applyOps(dp, [], { revision: 9n, storeId: `${max}x` }), {
      code: 'EINVAL',
      message: /is longer than 64 bytes/,
    });
    dp.close();
    const again = openDatapath({ pinDir });
    try {
      assert.deepEqual(again.readMeta(), { revision: 8n, storeId: max }, 'survives reopen');
    } finally {
      again.close();
    }
  });
});

test('pins of another ABI version: a clear error, nothing touched; uninstallPins removes them', async () => {
  // An ABI-2 install (fw_meta of 56 bytes, abi_version 2 at offset 24) with one link pin name.
  const old = uniquePinDir('state-abi2');
  mkdirSync(`${old}/links`, { recursive: true });
  try {
    const fd = raw.bpf_map_create(BPF_MAP_TYPE_ARRAY, 'fw_meta', 4, 56, 1, null) as number;
    assert.ok(fd >= 0, 'create an ABI-2 fw_meta');
    try {
      const v = Buffer.alloc(56);
      v.writeBigUInt64LE(41n, 0);
      v.writeUInt32LE(2, 24);
      check(raw.bpf_map_update_elem(fd, Buffer.alloc(4), v, 0n) as number, 'write', 'fw_meta');
      check(raw.bpf_obj_pin(fd, `${old}/fw_meta`) as number, 'pin', old);
    } finally {
      closeFd(fd);
    }
    assert.throws(() => openDatapath({ pinDir: old }), {
      code: 'EINVAL',
      message: new RegExp(
        `pinned state has ABI version 2 \\(fw_meta of 56 bytes\\), this build speaks ${FW_ABI_VERSION}; uninstall the old pins first \\("fleetwall agent uninstall" detaches and removes pins of any version\\)`,
      ),
    });
    assert.ok(existsSync(`${old}/fw_meta`), 'the old pins are left as they were');
    assert.deepEqual(uninstallPins(old), []);
    assert.equal(existsSync(old), false, 'removed');
  } finally {
    cleanupPins(old);
  }
  // Same fw_meta layout, another version number (the previous build's pins, whose tables
  // differ, or a future build's): refused at open as well.
  for (const version of [FW_ABI_VERSION - 1, FW_ABI_VERSION + 1]) {
    const pinDir = uniquePinDir(`state-abi${version}`);
    try {
      openDatapath({ pinDir, capacity: { prefixesPerTable: 64, counterSlots: 8 } }).close();
      const meta = BpfMap.fromPin(`${pinDir}/${MAP.META}`, MAP.META);
      try {
        meta.updateU32(0, encodeMeta({ ...decodeMeta(meta.lookupU32(0)!), abiVersion: version }));
      } finally {
        meta.close();
      }
      assert.throws(() => openDatapath({ pinDir }), {
        code: 'EINVAL',
        message: new RegExp(`pinned state has ABI version ${version}, this build speaks ${FW_ABI_VERSION}; uninstall the old pins first`),
      });
      assert.ok(existsSync(pinDir));
    } finally {
      removePins(pinDir);
    }
  }
});

test('typed errors: a pin dir off bpffs, a missing object, a closed datapath', async () => {
  assert.throws(
    () => openDatapath({ pinDir: '/tmp/not-bpffs/fleetwall' }),
    (e: unknown) => {
      assert.ok(e instanceof DatapathError);
      assert.equal(e.code, 'EOPNOTSUPP');
      assert.match(e.message, /^open pins \/tmp\/not-bpffs\/fleetwall: EOPNOTSUPP, not on a bpf filesystem/);
      return true;
    },
  );
  const pinDir = uniquePinDir('state-err');
  try {
    assert.throws(() => openDatapath({ pinDir, objDir: '/nonexistent' }), {
      code: 'ENOENT',
      message: /open object \/nonexistent\/xdp_ingress\.bpf\.o: ENOENT/,
    });
    const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: 64, counterSlots: 8 } });
    dp.close();
    assert.throws(() => readEntries(dp), { code: 'EBADF', message: /the datapath was closed/ });
  } finally {
    cleanupPins(pinDir);
  }
});
