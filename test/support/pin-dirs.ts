// Shared by the data-plane tests: unique pin directories that are always removed; pinned maps and /24
// index words read from the pins as the programs see them.

import { existsSync } from 'node:fs';
import { onProcessEnd } from './process-end.js';
import { randomBytes } from 'node:crypto';
import { FW_D16_BLOCK, FW_D16_INDEX_MASK, GEN_MAPS, LAYOUT, MAP, type MapName, decodeMeta } from '../../node-agent/src/datapath/abi.js';
import { type BpfDatapath, type BpfDatapathOptions, openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';

/** A fresh pin dir, removed when the process ends if the test did not (a signal, a timeout, a crash). */
export function uniquePinDir(tag: string): string {
  const dir = `/sys/fs/bpf/fleetwall-test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
  onProcessEnd(() => cleanupPins(dir));
  return dir;
}

/** Opens a datapath on a fresh pin dir, runs fn, then uninstalls whatever is left. */
export async function withDatapath<T>(
  tag: string,
  opts: Partial<BpfDatapathOptions>,
  fn: (dp: BpfDatapath, pinDir: string) => Promise<T> | T,
): Promise<T> {
  const pinDir = uniquePinDir(tag);
  const dp = openDatapath({ capacity: { prefixesPerTable: 8192, counterSlots: 4096 }, ...opts, pinDir });
  try {
    return await fn(dp, pinDir);
  } finally {
    // A swap an apply made due goes on after the apply resolved: let it settle before the pins go.
    await dp.settled();
    cleanupPins(pinDir);
    dp.close();
  }
}

/** Uninstalls (detaching anything still attached) and removes the pin dir. */
export function cleanupPins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  try {
    const dp = openDatapath({ pinDir });
    dp.uninstall();
  } catch {
    /* fall through: remove what is there */
  }
  removePins(pinDir);
}

/** A pinned map: a generation's (GEN_MAPS) from the folder of the generation in force, the others from the top. */
export function pinnedMap(pinDir: string, name: MapName): BpfMap {
  if (!GEN_MAPS.has(name)) return BpfMap.fromPin(`${pinDir}/${name}`, name);
  const meta = BpfMap.fromPin(`${pinDir}/${MAP.META}`, MAP.META);
  let gen: number;
  try {
    gen = decodeMeta(meta.lookupU32(0)!).gen;
  } finally {
    meta.close();
  }
  return BpfMap.fromPin(`${pinDir}/gen-${gen}/${name}`, name);
}

/** The config of a table, from the pins (fw_tblcfg is one value: the four configs back to back). */
export function pinnedTableCfg(pinDir: string, table: number): Buffer {
  const m = pinnedMap(pinDir, MAP.TBLCFG);
  try {
    return m.lookupU32(0)!.subarray(table * LAYOUT.fw_table_cfg.size, (table + 1) * LAYOUT.fw_table_cfg.size);
  } finally {
    m.close();
  }
}

/**
 * The /24 index word the programs read for IPv4 address `addr` (host order)
 * of table 0 (ingress) or 2 (egress), from the pins: the /16 word in
 * fw_tblcfg, then its block if it has one.
 */
export function indexWordAt(pinDir: string, addr: number, table: 0 | 2 = 0): number {
  const cfg = pinnedMap(pinDir, MAP.TBLCFG);
  const pool = pinnedMap(pinDir, table === 0 ? MAP.IN4_D24 : MAP.EG4_D24);
  try {
    const w = cfg.lookupU32(0)!.readUInt32LE(table * LAYOUT.fw_table_cfg.size + LAYOUT.fw_table_cfg.fields.d16 + (addr >>> 16) * 4);
    if (!(w & FW_D16_BLOCK)) return w;
    return pool.lookupU32(w & FW_D16_INDEX_MASK)!.readUInt32LE(((addr >>> 8) & 255) * 4);
  } finally {
    cfg.close();
    pool.close();
  }
}
