// The maps and programs the phases measure, and their cleanup: fleetwall
// datapaths holding a set of prefixes, bench variants of the programs with
// their source-rotation table filled, every pin directory under a tag of this
// run (fleetwall-bench-<name>-<pid>-<hex>). What is opened here is on
// `objects`, `datapaths` and `pinDirs`, released by the phase or by main.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMeta, GEN_MAPS, MAP, type MapName, PROG } from '../../node-agent/src/datapath/abi.js';
import { type BpfDatapath, openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import { type LoadedObject, loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import type { MapOp } from '../../node-agent/src/datapath/datapath.js';
import { check, raw } from '../../node-agent/src/datapath/libbpf.js';
import { applyOps } from '../../test/support/object-forms.js';
import { entries } from '../lib/prefix-sets.js';
import { root } from './options.js';

export const tag = `${process.pid}-${randomBytes(2).toString('hex')}`;
export const pinDirs: string[] = [];
export const objects: LoadedObject[] = [];
export const datapaths: BpfDatapath[] = [];

export function newPinDir(name: string): string {
  const d = `/sys/fs/bpf/fleetwall-bench-${name}-${tag}`;
  pinDirs.push(d);
  return d;
}

/** A datapath holding n prefixes; counter slots i % 1024, or one per rule (ruleSlots). */
export async function openSet(
  name: string,
  family: 4 | 6,
  n: number,
  k: number,
  ruleSlots = false,
): Promise<{ dp: BpfDatapath; pinDir: string; seconds: number }> {
  const pinDir = newPinDir(name);
  const slots = ruleSlots ? n : 1024;
  const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: Math.max(n, 1024) + 1024, counterSlots: slots }, maxHashLengths: k });
  datapaths.push(dp);
  const ops: MapOp[] = entries(family, n).map((entry, i) => ({ kind: 'entry.upsert', entry: ruleSlots ? { ...entry, slot: i } : entry }));
  const t0 = process.hrtime.bigint();
  await applyOps(dp, ops);
  await dp.settled(); // a swap the apply made due (grow ahead) lands before the set is used, and is timed as before
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { dp, pinDir, seconds };
}

/** Rotation-table entries for the random-order cases (the table holds 65536). */
export const RANDOM_DRAWS = 65536;

/**
 * Where a map of a pin dir is pinned: a fleetwall generation's maps in the
 * folder of the generation in force (bound now: a later swap leaves the
 * variant on the old maps), the others at the top.
 */
export function pinPathIn(pinDir: string, pinPrefix = 'fw_'): (name: string) => string | null {
  const metaPath = join(pinDir, MAP.META);
  let gen = 0;
  if (existsSync(metaPath)) {
    const m = BpfMap.fromPin(metaPath, MAP.META);
    try {
      gen = decodeMeta(m.lookupU32(0)!).gen;
    } finally {
      m.close();
    }
  }
  return (name) => {
    // The table configs: the programs' global (.bss), pinned as the generation's fw_tblcfg.
    if (gen > 0 && name.endsWith('.bss')) return join(pinDir, `gen-${gen}`, MAP.TBLCFG);
    if (!name.startsWith(pinPrefix)) return null;
    return gen > 0 && GEN_MAPS.has(name as MapName) ? join(pinDir, `gen-${gen}`, name) : join(pinDir, name);
  };
}

/**
 * The XDP program an events-off node runs in a build of xdp_ingress (or a bench
 * variant of it): fw_xdp_noev, or fw_xdp_ingress in a build from before the noev pair.
 */
export function noevProgramOf(objFile: string): string {
  const obj = raw.bpf_object__open_file(objFile, null);
  if (!obj) throw new Error(`open ${objFile}`);
  try {
    return raw.bpf_object__find_program_by_name(obj, PROG.XDP_NOEV) ? PROG.XDP_NOEV : PROG.XDP;
  } finally {
    raw.bpf_object__close(obj);
  }
}

/** A bench variant of a program with its source-rotation table filled (maps named pinPrefix* shared through pinDir). */
export function variant(objFile: string, prog: string, sources: Uint8Array[], pinDir?: string, pinPrefix = 'fw_'): number {
  return loadVariant(objFile, prog, sources, pinDir ? pinPathIn(pinDir, pinPrefix) : undefined);
}

/**
 * A vary object of another tree (--compare-pinned: the issue-time program, a build of another ABI) on the
 * maps ITS agent pinned in pinDir (its own layout; flat, or its generation in force; never removed here):
 * each fw_* map of the object must be pinned there.
 */
export function pinnedVariant(objFile: string, prog: string, sources: Uint8Array[], pinDir: string): number {
  // A tree of ABI 6 or later pins its tables under gen-<n>/ (its fw_meta says which); ABI 5's are flat.
  const gens = readdirSync(pinDir).some((f) => f.startsWith('gen-'));
  const at = gens ? pinPathIn(pinDir) : (name: string) => (name.startsWith('fw_') ? join(pinDir, name) : null);
  return loadVariant(objFile, prog, sources, (name) => {
    const p = at(name);
    if (p === null) return null;
    if (!existsSync(p)) throw new Error(`--compare-pinned: ${p} is not pinned (made by bench/dataplane/issue-time-pins.ts?)`);
    return p;
  });
}

function loadVariant(objFile: string, prog: string, sources: Uint8Array[], pinPath?: (name: string) => string | null): number {
  // Only the program measured is loaded (an object holds the event and the noev program).
  const obj = loadObject(objFile.startsWith('/') ? objFile : join(root, 'bpf/bench/obj', objFile), {
    ...(pinPath ? { pinPath } : {}),
    programs: [prog],
  });
  objects.push(obj);
  const key = Buffer.alloc(4);
  const val = Buffer.alloc(20);
  const fd = obj.mapFd('bench_srcs');
  sources.forEach((a, i) => {
    key.writeUInt32LE(i, 0);
    val.fill(0);
    if (a.length === 4) val.set(a, 0);
    else val.set(a, 4);
    check(raw.bpf_map_update_elem(fd, key, val, 0n) as number, 'fill', 'bench_srcs');
  });
  const ctl = Buffer.alloc(8);
  ctl.writeUInt32LE(sources.length - 1, 0);
  key.writeUInt32LE(0, 0);
  check(raw.bpf_map_update_elem(obj.mapFd('bench_ctl'), key, ctl, 0n) as number, 'fill', 'bench_ctl');
  return obj.progFd(prog);
}
