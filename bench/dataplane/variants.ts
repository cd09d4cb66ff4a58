// bench:dataplane --variants: the designs the production lookup and counters
// were chosen against, measured side by side with them in the same rounds
// (bpf/bench/variants.h; the per-packet phase adds the cases, `_flat` etc.,
// with `x_a`, the median per-round ratio to this build's case):
//
//  - `_flat`: ABI 5's IPv4 lookup: the table configs looked up in a map (a
//    copy), the /24 index in one level (2^24 words, 64 MB per table), filled
//    from the two levels of the same datapath; `_cfg_map` and `_one_level`:
//    each half of it alone (configs by map lookup on the two-level index; the
//    one-level index with the configs in the programs' global), to tell
//    which one a difference from this build comes from;
//  - `_cnt_shared`: rule counters in one shared array, two atomic adds a
//    packet; `_cnt_hybrid`: per-CPU entries for slots userspace marks hot, the
//    shared array for the others (none marked hot here: its cold path).
//
// And flood(): ns_per_packet.flood_* — one rule hit by every packet from one
// CPU and from both at once (two processes pinned to CPU0 and CPU1 running
// BPF_PROG_TEST_RUN in lockstep on the same program), for the per-CPU rows
// (production), the shared array, and the hybrid with the rule marked hot.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FW_D16_BLOCK, FW_D16_INDEX_MASK, FW_D16_WORDS, LAYOUT, MAP } from '../../node-agent/src/datapath/abi.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BpfMap, mapInfoByFd } from '../../node-agent/src/datapath/bpf-map.js';
import { check, possibleCpus, raw } from '../../node-agent/src/datapath/libbpf.js';
import { checkpoint } from '../lib/interrupt.js';
import { v4Bytes } from '../lib/prefix-sets.js';
import { ROUNDS, root } from './options.js';
import { emit, median } from './report.js';
import { objects, openSet, variant } from './sets.js';

const BW = LAYOUT.fw_d24_block.size / 4;

function borrow(fd: number, name: string): BpfMap {
  return new BpfMap(name, fd, mapInfoByFd(fd, name), false);
}

/**
 * ABI 5's lookup (`flat`), or one half of it, as bench_tblcfg and bench_flat4 are in the object; or a
 * variant of this build's two-level index: `direct` (the pool as one map value, bench_pool1, read
 * through a computed address), `global` (the pool a global of the program in a section of its own,
 * .bss.fw_pool, read at an address the program holds: no lookup), `expect` (the block path marked likely), `collapse` (the configs by map
 * lookup, as `cfg_map`, with every /16 whose block holds 256 equal words given that word in its /16 word
 * instead: the index a writer that frees uniform blocks would leave; read against `cfg_map`), `hashed` (each
 * /16's block copied to the place a hash of the /16 gives in bench_hpool, its owner in bench_howner; a /16
 * whose place is taken keeps its block in the pool, read through its /16 word).
 */
export type LookupVariant = 'flat' | 'cfg_map' | 'one_level' | 'direct' | 'global' | 'expect' | 'collapse' | 'hashed';

/**
 * A lookup variant of the XDP program on dp's maps: its bench_tblcfg (if it has one) a copy of dp's
 * configs, its bench_flat4 (if it has one) filled from dp's two-level index.
 */
export function flatVariant(dp: BpfDatapath, pinDir: string, sources: Uint8Array[], kind: LookupVariant = 'flat'): number {
  const fd = variant(`xdp_ingress_${kind === 'collapse' ? 'cfg_map' : kind}_vary.bpf.o`, 'fw_xdp_noev', sources, pinDir);
  const obj = objects[objects.length - 1]!;
  const cfg = borrow(dp.mapFd(MAP.TBLCFG), MAP.TBLCFG);
  const pool = borrow(dp.mapFd(MAP.IN4_D24), MAP.IN4_D24);
  const c = cfg.lookupU32(0)!; // the four configs, back to back
  if (kind === 'collapse') {
    // The ingress IPv4 config (table 0): a /16 whose block's 256 words are equal gets that word.
    for (let x = 0; x < FW_D16_WORDS; x++) {
      const at = LAYOUT.fw_table_cfg.fields.d16 + x * 4;
      const w = c.readUInt32LE(at);
      if (!(w & FW_D16_BLOCK)) continue;
      const blk = pool.lookupU32(w & FW_D16_INDEX_MASK)!;
      const w0 = blk.readUInt32LE(0);
      let same = true;
      for (let i = 1; i < BW && same; i++) same = blk.readUInt32LE(i * 4) === w0;
      if (same) c.writeUInt32LE(w0, at);
    }
  }
  if (obj.mapNames().includes('bench_hpool')) {
    const hp = borrow(obj.mapFd('bench_hpool'), 'bench_hpool');
    const ho = borrow(obj.mapFd('bench_howner'), 'bench_howner');
    const places = ho.info.valueSize / 4;
    const shift = 32 - Math.log2(places);
    const v = Buffer.alloc(hp.info.valueSize);
    const own = Buffer.alloc(ho.info.valueSize);
    for (let x = 0; x < FW_D16_WORDS; x++) {
      const w = c.readUInt32LE(LAYOUT.fw_table_cfg.fields.d16 + x * 4);
      if (!(w & FW_D16_BLOCK)) continue;
      const at = Math.imul(x, 0x9e3779b1) >>> shift;
      if (own.readUInt32LE(at * 4) !== 0) continue; // taken: this /16 is read through its /16 word
      own.writeUInt32LE(x + 1, at * 4);
      pool.lookupU32(w & FW_D16_INDEX_MASK)!.copy(v, at * BW * 4);
    }
    hp.updateU32(0, v);
    ho.updateU32(0, own);
  }
  const p1Name = ['bench_pool1', '.bss.fw_pool'].find((n) => obj.mapNames().includes(n));
  if (p1Name) {
    const p1 = borrow(obj.mapFd(p1Name), p1Name);
    const v = Buffer.alloc(p1.info.valueSize);
    const blocks = Math.min(pool.info.maxEntries, v.length / (BW * 4));
    for (let b = 0; b < blocks; b++) pool.lookupU32(b)!.copy(v, b * BW * 4);
    if (pool.info.maxEntries > blocks) throw new Error(`${p1Name} holds ${blocks} blocks, the pool ${pool.info.maxEntries}`);
    p1.updateU32(0, v);
  }
  if (obj.mapNames().includes('bench_tblcfg')) {
    const tblcfg = borrow(obj.mapFd('bench_tblcfg'), 'bench_tblcfg');
    for (let t = 0; t < 4; t++) tblcfg.updateU32(t, c.subarray(t * LAYOUT.fw_table_cfg.size, (t + 1) * LAYOUT.fw_table_cfg.size));
  }
  if (!obj.mapNames().includes('bench_flat4')) return fd;
  const flat = borrow(obj.mapFd('bench_flat4'), 'bench_flat4');
  const CH = 4096;
  const keys = Buffer.alloc(CH * 4);
  const vals = Buffer.alloc(CH * BW * 4);
  for (let x0 = 0; x0 < FW_D16_WORDS; x0 += CH) {
    for (let k = 0; k < CH; k++) {
      const x = x0 + k;
      keys.writeUInt32LE(x, k * 4);
      const w = c.readUInt32LE(LAYOUT.fw_table_cfg.fields.d16 + x * 4);
      if (w & FW_D16_BLOCK) pool.lookupU32(w & FW_D16_INDEX_MASK)!.copy(vals, k * BW * 4);
      else for (let i = 0; i < BW; i++) vals.writeUInt32LE(w, (k * BW + i) * 4);
    }
    const r = flat.updateBatch(keys, vals, CH);
    if (r.errno !== 0) throw new Error(`fill bench_flat4: errno ${r.errno}`);
  }
  return fd;
}

/** A counter variant of the XDP program on the maps of pinDir (`hot`: slots marked hot on every CPU, hybrid only). */
export function counterVariant(kind: 'shared' | 'hybrid', pinDir: string, sources: Uint8Array[], hot: number[] = []): number {
  const fd = variant(`xdp_ingress_cnt_${kind}_vary.bpf.o`, 'fw_xdp_noev', sources, pinDir);
  if (kind === 'hybrid' && hot.length > 0) {
    const m = borrow(objects[objects.length - 1]!.mapFd('bench_hot'), 'bench_hot');
    const v = Buffer.alloc(m.info.valueSize);
    for (let cpu = 0; cpu < possibleCpus(); cpu++) {
      for (const s of hot) {
        v.fill(0);
        v.writeUInt32LE(s + 1, 0);
        m.updateU32(cpu * 256 + (s & 255), v);
      }
    }
  }
  return fd;
}

/**
 * ns_per_packet.flood_<variant>_<1|2>cpu: every packet hits one rule
 * (16.0.0.0/24 of the 1k set, 1,024 sources inside it), run on CPU0 alone,
 * then on CPU0 and CPU1 at once (lockstep: each run starts at a set time in
 * both processes); x_percpu is the median per-run ratio to the per-CPU rows.
 */
export async function flood(): Promise<void> {
  await checkpoint();
  const { pinDir } = await openSet('flood', 4, 1000, 6);
  const one = Array.from({ length: 1024 }, (_, i) => v4Bytes((0x10000000 + (i & 255)) >>> 0)); // 16.0.0.0/24: slot 500
  const cases: Array<[string, () => number]> = [
    ['percpu', () => variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', one, pinDir)],
    ['shared', () => counterVariant('shared', pinDir, one)],
    ['hybrid_hot', () => counterVariant('hybrid', pinDir, one, [500])],
  ];
  const pins: string[] = [];
  for (const [name, load] of cases) {
    const pin = join(pinDir, `flood_${name}`);
    check(raw.bpf_obj_pin(load(), pin) as number, 'pin', pin);
    pins.push(pin);
  }
  const rounds = Math.max(10, ROUNDS * 3);
  const runOn = (cpus: number[]): Promise<number[][][]> => {
    const startAt = Date.now() + 3000;
    return Promise.all(
      cpus.map(
        (cpu) =>
          new Promise<number[][]>((resolve, reject) => {
            const ch = spawn(
              'taskset',
              [
                '-c',
                String(cpu),
                process.execPath,
                '--import',
                'tsx',
                join(root, 'bench/dataplane/flood-child.ts'),
                pins.join(','),
                String(rounds),
                String(startAt),
              ],
              { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
            );
            let out = '';
            ch.stdout.on('data', (d: Buffer) => (out += d.toString()));
            ch.once('exit', (code) =>
              code === 0 ? resolve(JSON.parse(out) as number[][]) : reject(new Error(`flood child exited ${code}`)),
            );
          }),
      ),
    );
  };
  for (const cpus of possibleCpus() > 1 ? [[0], [0, 1]] : [[0]]) {
    await checkpoint();
    const out = await runOn(cpus); // [cpu][case][round]
    cases.forEach(([name], v) => {
      const all: number[] = [];
      const ratios: number[] = [];
      for (const per of out) {
        for (let r = 0; r < rounds; r++) {
          all.push(per[v]![r]!);
          ratios.push(per[v]![r]! / per[0]![r]!);
        }
      }
      emit(`ns_per_packet.flood_${name}_${cpus.length}cpu`, median(all), {
        rule: '16.0.0.0/24 (1k set), 1,024 sources inside it',
        cpus: cpus.join('+'),
        x_percpu: Math.round(median(ratios) * 100) / 100,
        runs: all.length,
        min: Math.min(...all),
        max: Math.max(...all),
      });
    });
  }
}
