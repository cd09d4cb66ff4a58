// Churn under traffic: the tables are written by this process (through the
// mapping) while the kernel reads them for real packets. Sources in namespace
// a send UDP continuously to namespace b (fleetwall attached there) while
// more than 100k other prefixes are inserted and deleted in batches, aimed so
// that the buckets of the sources' own keys fill, overflow (flags and the
// other keys' tags written into the tag word that holds a blocked source's
// tag), spill, and empty again; the direct /24 index words of the sources'
// ranges change and change back; prefix lengths come
// and go (length sets republished, the trie flag too); IPv6 slots around a
// blocked key are freed and reused (grace periods). Exact counts: what each
// sender sent, what the receiver got, what the rule counters and interface
// totals say.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress } from '../../common/src/cidr.js';
import {
  FW_B4_SLOTS,
  FW_B6_SLOTS,
  FW_D24_LEN_SHIFT,
  FW_D24_LONGER,
  FW_TABLE,
  LAYOUT,
  MAP,
  type MapName,
  decodeTableCfg,
} from '../../node-agent/src/datapath/abi.js';
import { openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { ATTR_ALLOW, OpBatch, type TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { bucketsOf } from '../../node-agent/src/datapath/fwtab-hash.js';
import { type NetnsPair, withNetnsPair } from '../support/netns.js';
import { rng32 } from '../support/rng.js';
import { startChild } from '../support/dataplane-child.js';
import { cleanupPins, indexWordAt, pinnedMap, pinnedTableCfg, uniquePinDir } from '../support/pin-dirs.js';
import { readRuleCounters } from '../support/object-forms.js';

const CAP = { prefixesPerTable: 262_144, counterSlots: 4096 };
const PORT = 9555;
const ROUNDS = 4;
const BG4_PER_ROUND = 25_000; // /32 + /24 + /20 under 10.0.0.0/8
const BG6_PER_ROUND = 10_000; // /128 + /48 under 2001:db9::/32
const IN4: TableIndex = 0;
const IN6: TableIndex = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SENDER = `
const dgram = require('node:dgram');
const [dst4, dst6, port, ...srcs] = process.argv.slice(1);
const socks = srcs.map((s) => dgram.createSocket(s.includes(':') ? 'udp6' : 'udp4'));
const sent = srcs.map(() => 0);
const errors = srcs.map(() => 0);
let stop = false;
process.stdin.on('data', () => { stop = true; });
Promise.all(socks.map((s, i) => new Promise((r) => s.bind(0, srcs[i], r)))).then(async () => {
  process.stdout.write('ready\\n');
  const payload = Buffer.alloc(16, 0x61);
  while (!stop) {
    await Promise.all(socks.map((s, i) => new Promise((r) => s.send(payload, Number(port), srcs[i].includes(':') ? dst6 : dst4, (e) => { if (e) errors[i]++; else sent[i]++; r(); }))));
    await new Promise((r) => setTimeout(r, 1));
  }
  process.stdout.write(JSON.stringify({ sent, errors }) + '\\n');
  process.exit(0);
});
`;

const RECEIVER = `
const dgram = require('node:dgram');
const [a4, a6, port] = process.argv.slice(1);
const got = {};
const count = (m, r) => { got[r.address] = (got[r.address] || 0) + 1; };
const s4 = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
const s6 = dgram.createSocket({ type: 'udp6', recvBufferSize: 8 << 20 });
s4.on('message', count);
s6.on('message', count);
let up = 0;
const ready = () => { if (++up === 2) process.stdout.write('ready\\n'); };
s4.bind(Number(port), a4, ready);
s6.bind(Number(port), a6, ready);
process.stdin.on('data', () => { process.stdout.write(JSON.stringify(got) + '\\n'); process.exit(0); });
`;

/** Collects a child's stdout lines. */
function lines(child: import('node:child_process').ChildProcess): { next: (re: RegExp, timeoutMs?: number) => Promise<string> } {
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => (buf += d.toString()));
  return {
    async next(re, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(buf);
        if (m) {
          buf = buf.slice(m.index + m[0].length);
          return m[0];
        }
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${re} from child (exit ${child.exitCode}): "${buf}"`);
        await sleep(10);
      }
    },
  };
}

function v4(text: string): number {
  return Buffer.from(parseAddress(text).bytes).readUInt32BE(0);
}
const v4Bytes = (w: number) => new Uint8Array([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);

interface Geometry {
  seed: number;
  nbuckets: number;
}

/** Keys (as bytes) of length `len` whose first bucket is `bucket`, drawn from `draw`, skipping `used`. */
function keysInBucket(g: Geometry, len: number, bucket: number, n: number, draw: () => Uint8Array, used: Set<string>): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > 50_000_000) throw new Error('no keys for the bucket');
    const k = draw();
    if (bucketsOf(g.seed, g.nbuckets, len, k)[0] !== bucket) continue;
    const id = `${len}/${Buffer.from(k).toString('hex')}`;
    if (used.has(id)) continue;
    used.add(id);
    out.push(k);
  }
  return out;
}

/**
 * Prefixes aimed at one key's first bucket: enough to fill it and overflow
 * (flag in the bucket's tag word, IPv4), plus one key whose second bucket
 * is filled first, so it lands in the spill hash (spill flag).
 */
function aimedAt(g: Geometry, family: 4 | 6, len: number, target: Uint8Array, draw: () => Uint8Array, used: Set<string>): Uint8Array[] {
  const per = family === 4 ? FW_B4_SLOTS : FW_B6_SLOTS;
  const [b1] = bucketsOf(g.seed, g.nbuckets, len, target);
  const fill = keysInBucket(g, len, b1, per + 2, draw, used); // more than fit: the rest overflow
  const spiller = keysInBucket(g, len, b1, 1, draw, used)[0]!;
  const [, b2] = bucketsOf(g.seed, g.nbuckets, len, spiller);
  const block = b2 === b1 ? [] : keysInBucket(g, len, b2, per, draw, used); // its second bucket full first
  return [...fill, ...block, spiller];
}

function tableCfg(pinDir: string, table: number) {
  const v = pinnedTableCfg(pinDir, table);
  return { cfg: decodeTableCfg(v), value: v };
}

/** Bucket b of a table: the overflow and spill flags. */
function bucketFlags(pinDir: string, family: 4 | 6, b: number): { ovf: boolean; spill: boolean } {
  const name = family === 4 ? MAP.IN4_TAB : MAP.IN6_TAB;
  const m = pinnedMap(pinDir, name);
  try {
    const v = m.lookupU32(b)!;
    if (family === 4) {
      const w0 = v.readBigUInt64LE(0);
      return { ovf: w0 >> 63n === 1n, spill: ((w0 >> 62n) & 1n) === 1n };
    }
    const f = v.readBigUInt64LE(LAYOUT.fw_bucket6.fields.flags);
    return { ovf: (f & 1n) === 1n, spill: (f & 2n) === 2n };
  } finally {
    m.close();
  }
}

function mapCount(pinDir: string, name: MapName): number {
  const m = pinnedMap(pinDir, name);
  try {
    return m.lookupAll().count;
  } finally {
    m.close();
  }
}

/** The direct /24 index word of an IPv4 address in table 0: LONGER, and the length of the entry of length <= 24 it holds (-1: none). */
function d24Of(pinDir: string, addr: number): { longer: boolean; len: number } {
  const w = indexWordAt(pinDir, addr);
  return { longer: (w & FW_D24_LONGER) !== 0, len: ((w >>> FW_D24_LEN_SHIFT) & 31) - 1 };
}

function dropped(bed: NetnsPair): { txDroppedA: number; rxDroppedB: number; rcvbufErrorsB: number } {
  const stats = (side: 'a' | 'b', ifname: string) => {
    const j = JSON.parse(bed.execSync(side, ['ip', '-j', '-s', 'link', 'show', ifname]).stdout) as Array<{
      stats64: { rx: { dropped: number }; tx: { dropped: number } };
    }>;
    return j[0]!.stats64;
  };
  const snmp = bed
    .execSync('b', ['cat', '/proc/net/snmp'])
    .stdout.split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const [hdr, val] = snmp.map((l) => l.split(/\s+/));
  const rcvbuf = Number(val![hdr!.indexOf('RcvbufErrors')]);
  return { txDroppedA: stats('a', bed.a.ifname).tx.dropped, rxDroppedB: stats('b', bed.b.ifname).rx.dropped, rcvbufErrorsB: rcvbuf };
}

test('churn under traffic: >100k prefixes inserted and deleted in batches around the sources; not one blocked packet passes, not one allowed or unlisted packet is dropped (exact counts)', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('churn');
    const children: Array<import('node:child_process').ChildProcess> = [];
    try {
      // Two more IPv4 sources in namespace a, in /16s whose filter bits the churn flips.
      const F4 = '198.19.0.9'; // blocked by deny 198.18.0.0/15 (its /24's index word, while /24s come and go around it)
      const G4 = '198.20.1.1'; // unlisted
      for (const a of [F4, G4]) bed.execSync('a', ['ip', 'addr', 'add', `${a}/32`, 'dev', bed.a.ifname]);
      for (const a of [F4, G4]) {
        bed.execSync('b', ['ip', 'neigh', 'replace', a, 'lladdr', bed.a.mac, 'dev', bed.b.ifname, 'nud', 'permanent']);
        bed.execSync('b', ['ip', 'route', 'add', `${a}/32`, 'dev', bed.b.ifname]);
      }
      const [A4, W4, U4, B4] = bed.a.v4Extra as [string, string, string, string]; // .2 .3 .4 .5
      const [B6, W6, U6] = bed.a.v6Extra as [string, string, string]; // ::2 ::3 ::4
      const sources = [A4, B4, F4, W4, U4, G4, B6, W6, U6];
      const blocked = new Map([
        [A4, 1], // deny 192.0.2.0/30 (slot 1): its own /32 bucket is churned, the /30 decides
        [B4, 2], // deny /32 (slot 2): the first slot of a bucket that fills, overflows and spills
        [F4, 4], // deny 198.18.0.0/15 (slot 4)
        [B6, 5], // deny /128 (slot 5): IPv6 slots around it freed and reused
      ]);
      const allowed = new Map([
        [W4, 3], // allow /32 (slot 3) inside the /30 deny
        [W6, 6], // allow /128 (slot 6) inside deny ::/126 (slot 7)
      ]);

      // fleetwall attached on b by a process inside namespace b (held until the end).
      // The maps kept at their full size (a reserve): the churn aims at buckets of one geometry (generation swaps
      // under traffic are resize.test.ts's).
      const loader = startChild(bed, 'b', [
        { open: { pinDir, capacity: CAP, reserve: CAP } },
        { attach: { ifname: bed.b.ifname } },
        { hold: true },
      ]);
      children.push(loader.child);
      const res = await loader.results(3);
      assert.ok(
        res.every((r) => r.ok),
        JSON.stringify(res),
      );
      assert.equal(res[1]!.result.xdpMode, 'native');

      const dp = openDatapath({ pinDir, reserve: CAP });
      try {
        const g4 = tableCfg(pinDir, FW_TABLE.IN4).cfg;
        const g6 = tableCfg(pinDir, FW_TABLE.IN6).cfg;
        const up = (b: OpBatch, cidrAddr: string, len: number, slot: number, allow = false) => {
          const bytes = parseAddress(cidrAddr).bytes;
          b.entryUpsert(bytes.length === 4 ? IN4 : IN6, bytes, 0, len, allow ? ATTR_ALLOW : 0, slot);
        };
        // The static rules, first into empty buckets: B4 and B6 take their buckets' first slot.
        const st = new OpBatch(16);
        up(st, B4, 32, 2);
        up(st, B6, 128, 5);
        up(st, '192.0.2.0', 30, 1);
        up(st, W4, 32, 3, true);
        up(st, '198.18.0.0', 15, 4);
        up(st, W6, 128, 6, true);
        up(st, '2001:db8:f00::', 126, 7);
        await dp.applyBatch(st);

        // Receiver in b, sender in a.
        const rx = bed.spawn('b', [process.execPath, '-e', RECEIVER, bed.b.v4, bed.b.v6, String(PORT)]);
        children.push(rx);
        const rxOut = lines(rx);
        await rxOut.next(/ready\n/);
        const before = dropped(bed);
        const tx = bed.spawn('a', [process.execPath, '-e', SENDER, bed.b.v4, bed.b.v6, String(PORT), ...sources]);
        children.push(tx);
        const txOut = lines(tx);
        await txOut.next(/ready\n/);
        await sleep(300);

        // The churn.
        const rand = rng32(7);
        const used = new Set<string>();
        const draw4 = () => v4Bytes((0x0a000000 | (rand() & 0xffffff)) >>> 0); // 10.0.0.0/8
        const draw6 = () => {
          const b = new Uint8Array(16);
          b.set([0x20, 0x01, 0x0d, 0xb9]); // 2001:db9::/32
          for (let i = 4; i < 16; i++) b[i] = rand() & 0xff;
          return b;
        };
        const g4g = { seed: g4.seed, nbuckets: g4.nbuckets };
        const g6g = { seed: g6.seed, nbuckets: g6.nbuckets };
        const batch = new OpBatch(4096);
        let inserted = 0;
        let deleted = 0;
        let sawSpill4 = false;
        let sawSpill6 = false;
        let sawFlags = 0;
        let indexFlips = 0;
        for (let round = 0; round < ROUNDS; round++) {
          // What this round inserts (and then deletes): [table, bytes, len].
          const ops: Array<[TableIndex, Uint8Array, number]> = [];
          // Aimed at the sources' /32 and /128 keys (blocked, allowed, unlisted), and at the unlisted source's /24.
          for (const s of [B4, A4, W4, U4]) for (const k of aimedAt(g4g, 4, 32, parseAddress(s).bytes, draw4, used)) ops.push([IN4, k, 32]);
          // (/24s drawn from 1.0.0.0 - 126.255.255.0: enough of them to fill one bucket.)
          const draw24 = () => v4Bytes((((rand() % (126 << 16)) + (1 << 16)) * 256) >>> 0);
          for (const k of aimedAt(g4g, 4, 24, v4Bytes(v4(G4) & 0xffffff00), draw24, used)) ops.push([IN4, k, 24]);
          for (const s of [B6, W6, U6]) for (const k of aimedAt(g6g, 6, 128, parseAddress(s).bytes, draw6, used)) ops.push([IN6, k, 128]);
          // The /24 index: 198.19/16 (inside the static /15) and 198.20/16 get entries (then lose them all), 198.20.1.0/24 longer ones.
          for (let i = 0; i < 64; i++) ops.push([IN4, v4Bytes(v4('198.19.128.0') + i * 256), 24]);
          ops.push([IN4, v4Bytes(v4('198.20.2.0')), 24], [IN4, v4Bytes(v4('198.20.1.64')), 28], [IN4, v4Bytes(v4('198.20.1.128')), 25]);
          const aimed = ops.length;
          // Background: random /32, /24 and /20 (a 7th length: the trie) under 10/8; /128 and /48 under 2001:db9::/32.
          for (let i = 0; i < BG4_PER_ROUND; i++) {
            const len = i % 50 === 0 ? 20 : i % 2 === 0 ? 32 : 24;
            const w = (0x0a000000 | (rand() & 0xffffff)) >>> 0;
            const m = len === 32 ? w : (w & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
            const id = `${len}/${Buffer.from(v4Bytes(m)).toString('hex')}`;
            if (used.has(id)) continue;
            used.add(id);
            ops.push([IN4, v4Bytes(m), len]);
          }
          for (let i = 0; i < BG6_PER_ROUND; i++) {
            const len = i % 2 === 0 ? 128 : 48;
            const b = draw6();
            if (len === 48) b.fill(0, 6);
            const id = `${len}/${Buffer.from(b).toString('hex')}`;
            if (used.has(id)) continue;
            used.add(id);
            ops.push([IN6, b, len]);
          }
          // Insert: the aimed keys in small batches (page windows), the rest in big ones (whole table mapped).
          for (let i = 0; i < ops.length; ) {
            batch.clear();
            const n = i < aimed ? 7 : batch.capacity;
            for (; i < ops.length && batch.length < n; i++) {
              const [t, k, len] = ops[i]!;
              batch.entryUpsert(t, k, 0, len, 0, 100 + (i % 3000));
            }
            await dp.applyBatch(batch);
            inserted += batch.length;
            await sleep(i < aimed ? 1 : 15);
          }
          // The aimed buckets overflowed and spilled, with the blocked keys in them.
          const f4 = bucketFlags(pinDir, 4, bucketsOf(g4.seed, g4.nbuckets, 32, parseAddress(B4).bytes)[0]);
          const f6 = bucketFlags(pinDir, 6, bucketsOf(g6.seed, g6.nbuckets, 128, parseAddress(B6).bytes)[0]);
          if (f4.ovf && f4.spill && f6.ovf && f6.spill) sawFlags++;
          sawSpill4 ||= mapCount(pinDir, MAP.IN4_SPILL) > 0;
          sawSpill6 ||= mapCount(pinDir, MAP.IN6_SPILL) > 0;
          // The /24 index: G4's /24 holds longer entries, 198.19.128.0/24 its own entry (inside the static /15).
          const on = [d24Of(pinDir, v4(G4)).longer, d24Of(pinDir, v4('198.19.128.1')).len === 24, d24Of(pinDir, v4(F4)).len === 15];
          // Delete everything again, in another order (deletes of the aimed keys last, in small batches).
          for (let i = ops.length - 1; i >= 0; ) {
            batch.clear();
            const small = i < aimed;
            const n = small ? 5 : batch.capacity;
            const end = small ? -1 : aimed - 1; // a big batch stops where the aimed keys begin
            for (; i > end && batch.length < n; i--) {
              const [t, k, len] = ops[i]!;
              batch.entryDelete(t, k, 0, len);
            }
            await dp.applyBatch(batch);
            deleted += batch.length;
            await sleep(i < aimed ? 1 : 15);
          }
          // ...and after the deletes: no LONGER, 198.19.128.0/24 back to the /15, F4's /24 the /15 throughout.
          const off = [d24Of(pinDir, v4(G4)).longer, d24Of(pinDir, v4('198.19.128.1')).len === 24, d24Of(pinDir, v4(F4)).len !== 15];
          if (on.every((x) => x) && off.every((x) => !x) && d24Of(pinDir, v4('198.19.128.1')).len === 15) indexFlips++;
          assert.equal(dp.usage().find((u) => u.family === 4 && u.direction === 'ingress')!.entries, 4, 'only the static IPv4 rules left');
          assert.equal(dp.usage().find((u) => u.family === 6 && u.direction === 'ingress')!.entries, 3, 'only the static IPv6 rules left');
        }
        assert.ok(inserted >= 100_000 && deleted === inserted, `inserted ${inserted}, deleted ${deleted}`);
        assert.equal(sawFlags, ROUNDS, "every round: the blocked keys' buckets carried the overflow and spill flags");
        assert.ok(sawSpill4 && sawSpill6, 'spill hashes used');
        assert.equal(indexFlips, ROUNDS, "every round: the /24 index words of the sources' ranges changed and changed back");
        assert.equal(mapCount(pinDir, MAP.IN4_SPILL) + mapCount(pinDir, MAP.IN6_SPILL), 0);

        // Stop the traffic, then read everything.
        await sleep(300);
        tx.stdin!.write('x');
        const { sent, errors } = JSON.parse(await txOut.next(/\{.*\}\n/)) as { sent: number[]; errors: number[] };
        await sleep(500);
        rx.stdin!.write('x');
        const got = JSON.parse(await rxOut.next(/\{.*\}\n/)) as Record<string, number>;
        const after = dropped(bed);
        assert.deepEqual(
          errors,
          sources.map(() => 0),
          'no send errors',
        );
        assert.deepEqual(
          {
            tx: after.txDroppedA - before.txDroppedA,
            rx: after.rxDroppedB - before.rxDroppedB,
            rcvbuf: after.rcvbufErrorsB - before.rcvbufErrorsB,
          },
          { tx: 0, rx: 0, rcvbuf: 0 },
          'nothing lost outside fleetwall (veth, socket buffers)',
        );
        const c = readRuleCounters(dp, 8).packets;
        let blockedSent = 0;
        for (const [i, s] of sources.entries()) {
          const n = sent[i]!;
          assert.ok(n > 1000, `${s} sent ${n} packets during the churn`);
          const slot = blocked.get(s);
          if (slot !== undefined) {
            blockedSent += n;
            assert.equal(got[s] ?? 0, 0, `not one packet from blocked ${s} passed`);
            assert.equal(c[slot], BigInt(n), `every packet from ${s} dropped and counted on slot ${slot}`);
          } else {
            assert.equal(got[s] ?? 0, n, `every packet from ${allowed.has(s) ? 'allowed' : 'unlisted'} ${s} arrived`);
            const a = allowed.get(s);
            if (a !== undefined) assert.equal(c[a], BigInt(n), `${s} counted on its allow (slot ${a})`);
          }
        }
        assert.equal(c[7], 0n, 'the /126 deny decided nothing (its addresses have longer rules)');
        const ifc = dp.readInterfaceCounters().find((x) => x.ifname === bed.b.ifname && x.direction === 'ingress')!;
        assert.equal(ifc.totals.drop.packets, BigInt(blockedSent), 'interface drops == packets of the blocked sources');
        process.stderr.write(`# churn: ${inserted} inserted and deleted; sent ${sent.join(' ')}\n`);
      } finally {
        dp.close();
      }
    } finally {
      for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL');
      cleanupPins(pinDir);
    }
  });
});
