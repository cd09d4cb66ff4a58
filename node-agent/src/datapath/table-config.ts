// fw_tblcfg: per table, the hash geometry and seed, the default action, and
// the published length sets (which lengths the programs probe in the hash,
// whether they look up the trie), double-buffered: a publish writes the
// inactive set, then flips `active` with one atomic store, so a program
// never reads a half-written set. Written through a mapping of windows
// (MapRegion), released after every operation.

import { LAYOUT, type LenSet, type TableCfg, decodeTableCfg, encodeLenSet, encodeTableCfg } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { MapRegion } from './libbpf.js';

/** Bytes between fw_tblcfg values in its mapping. */
const STRIDE = Math.ceil(LAYOUT.fw_table_cfg.size / 8) * 8;

export function emptySet(): LenSet {
  return { hashLens: [], useTrie: false };
}

export function sameSet(a: LenSet, b: LenSet): boolean {
  return a.useTrie === b.useTrie && a.hashLens.length === b.hashLens.length && a.hashLens.every((l, i) => l === b.hashLens[i]);
}

/** The set the programs read now. */
export function activeSet(cfg: TableCfg): LenSet {
  return cfg.sets[cfg.active & 1]!;
}

export class TableConfigs {
  readonly region: MapRegion;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;

  constructor(map: BpfMap) {
    this.region = new MapRegion(map.fd, map.maxEntries * STRIDE, map.name);
    this.bytes = new Uint8Array(this.region.buffer, 0, map.maxEntries * STRIDE);
    this.words = new Uint32Array(this.region.buffer, 0, (map.maxEntries * STRIDE) / 4);
  }

  close(): void {
    this.region.close();
  }

  read(table: number): TableCfg {
    this.region.ensure(table * STRIDE, LAYOUT.fw_table_cfg.size);
    return decodeTableCfg(Buffer.from(this.bytes.buffer, this.bytes.byteOffset + table * STRIDE, LAYOUT.fw_table_cfg.size));
  }

  /** Writes a whole config: only before any program reads the table (a new install, nothing attached yet). */
  init(table: number, cfg: TableCfg): void {
    this.region.ensure(table * STRIDE, STRIDE);
    this.bytes.fill(0, table * STRIDE, (table + 1) * STRIDE);
    this.bytes.set(encodeTableCfg(cfg), table * STRIDE);
  }

  /** Publishes `next` as the table's length set; returns the config as it now is. */
  publish(table: number, cfg: TableCfg, next: LenSet): TableCfg {
    const cur = cfg.active & 1;
    const staged: TableCfg = { ...cfg, sets: [...cfg.sets] as [LenSet, LenSet] };
    staged.sets[cur ^ 1] = { hashLens: [...next.hashLens], useTrie: next.useTrie };
    const base = table * STRIDE;
    this.region.ensure(base, LAYOUT.fw_table_cfg.size);
    // The inactive set (no program reads it), then the flip (a seq-cst store: after the set's bytes).
    this.bytes.set(encodeLenSet(staged.sets[cur ^ 1]!), base + LAYOUT.fw_table_cfg.fields.set + (cur ^ 1) * LAYOUT.fw_lenset.size);
    Atomics.store(this.words, (base + LAYOUT.fw_table_cfg.fields.active) / 4, cur ^ 1);
    staged.active = cur ^ 1;
    return staged;
  }
}
