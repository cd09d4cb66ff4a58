// The kernel memory of the datapath's maps: each map's memlock as the kernel
// reports it (/proc/self/fdinfo of its fd: what `bpftool map show` prints),
// summed per table, for the counters and the journal, and the part that is
// there once per CPU; the total counts every map of the datapath.

import { readFileSync } from 'node:fs';
import { FW_IF_SLOTS, GEN_MAPS, LAYOUT, MAP, type MapName, TABLES } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { KernelMemory, TableMemory } from './datapath.js';
import type { GenState } from './gen-state.js';
import type { SwapStats } from './gen-swapper.js';

/** A map's memlock in bytes (0 if the kernel does not say). */
export function memlockOf(fd: number): number {
  try {
    const m = /^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Everything the datapath's maps hold in the kernel: the generation in force and the maps every generation shares. */
export function kernelMemory(state: GenState, shared: ReadonlyMap<MapName, BpfMap>, possibleCpus: number, swaps: SwapStats): KernelMemory {
  const maps: Array<{ name: string; bytes: number }> = [];
  const counted = new Set<string>();
  const bytesOf = (m: BpfMap): number => {
    const b = memlockOf(m.fd);
    maps.push({ name: m.name, bytes: b });
    counted.add(m.name);
    return b;
  };
  const tables: TableMemory[] = [];
  for (const d of TABLES) {
    const t = state.tables[d.id]!;
    let bytes = bytesOf(state.gen.map(d.tab)) + bytesOf(state.gen.map(d.spill)) + bytesOf(shared.get(d.trie)!);
    if (d.d24) bytes += bytesOf(state.gen.map(d.d24));
    tables.push({
      direction: d.direction,
      family: d.family,
      entries: t.entries(),
      size: t.size,
      bytes,
      blocksInUse: t.d24?.blocksInUse ?? 0,
      blocks: t.d24?.capacity ?? 0,
    });
  }
  const counterBytes = bytesOf(state.gen.map(MAP.RULE_CNT)) + bytesOf(state.gen.map(MAP.RULE_XCNT));
  const journalBytes = bytesOf(state.gen.map(MAP.JOURNAL));
  bytesOf(state.gen.map(MAP.TBLCFG));
  const ifCnt = bytesOf(shared.get(MAP.IF_CNT)!);
  const ifCntx = bytesOf(shared.get(MAP.IF_CNTX)!);
  bytesOf(shared.get(MAP.META)!);
  bytesOf(shared.get(MAP.LENSTAT)!);
  // Every other map counts too (the event ring and budgets, the detection
  // policies' fixed-size maps, any map added later): the total is all of them.
  for (const name of GEN_MAPS) if (!counted.has(name)) bytesOf(state.gen.map(name));
  for (const m of shared.values()) if (!counted.has(m.name)) bytesOf(m);
  const g = state.counters.geometry;
  // Per CPU: a row of rule counters, its share of the interface counters (their values are per CPU).
  const perCpuBytes =
    g.slots * LAYOUT.fw_rule_row.size +
    LAYOUT.fw_ev_cpu.size +
    Math.min(ifCnt / possibleCpus, FW_IF_SLOTS * LAYOUT.fw_if_slot.size) +
    ifCntx / possibleCpus;
  return {
    bytes: maps.reduce((s, m) => s + m.bytes, 0),
    perCpuBytes: Math.round(perCpuBytes),
    tables,
    counterSlots: g.slots,
    counterBytes,
    journalRules: state.journal.rules,
    journalBytes,
    maps,
    swaps: swaps.count,
    swapMaxMs: Math.round(swaps.maxMs * 10) / 10,
    swapFailures: { ...swaps.failed },
    lastSwapFailure: swaps.lastFailure,
    lastSwapFailureAt: swaps.lastFailureAt,
  };
}
