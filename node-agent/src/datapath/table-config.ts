// fw_tblcfg (one per generation: the programs' global, their .bss map, read
// at a constant address with no map lookup): per table, the hash geometry and seed, the
// default action, the rule counters' geometry, the published length sets
// (which lengths the programs probe in the hash, whether they look up the
// trie), double-buffered: a publish writes the inactive set, then flips
// `active` with one atomic store, so a program never reads a half-written
// set; and, for IPv4 tables, the /16 level of the /24 index (d16()).
// Written through a mapping of windows (MapRegion), released after every
// operation.

import { constants as osConstants } from 'node:os';
import { FW_TABLE_COUNT, LAYOUT, type LenSet, TABLE_CFG_HEAD, type TableCfg, decodeTableCfg, encodeLenSet, encodeTableCfg } from './abi.js';
import { DatapathError } from './errors.js';
import type { BpfMap } from './bpf-map.js';
import type { D16Words } from './direct24.js';
import { MapRegion } from './libbpf.js';

/** Bytes between fw_tblcfg values in its mapping. */
const STRIDE = Math.ceil(LAYOUT.fw_table_cfg.size / 8) * 8;
const D16 = LAYOUT.fw_table_cfg.fields.d16;
const D16_BYTES = LAYOUT.fw_table_cfg.size - D16;

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

  /** map: the programs' .bss (one value: the FW_TABLE_COUNT configs, back to back). */
  constructor(map: BpfMap) {
    const bytes = FW_TABLE_COUNT * STRIDE;
    if (map.maxEntries * map.info.valueSize < bytes)
      throw new DatapathError('open table configs', map.name, osConstants.errno.EINVAL, `${map.info.valueSize} bytes, ${bytes} needed`);
    this.region = new MapRegion(map.fd, bytes, map.name);
    this.bytes = new Uint8Array(this.region.buffer, 0, bytes);
    this.words = new Uint32Array(this.region.buffer, 0, bytes / 4);
  }

  close(): void {
    this.region.close();
  }

  read(table: number): TableCfg {
    this.region.ensure(table * STRIDE, TABLE_CFG_HEAD);
    return decodeTableCfg(Buffer.from(this.bytes.buffer, this.bytes.byteOffset + table * STRIDE, TABLE_CFG_HEAD));
  }

  /**
   * Writes a config's head (everything but the /16 words): only before any
   * program reads the table (a new install or a new generation, not attached yet).
   */
  init(table: number, cfg: TableCfg): void {
    this.region.ensure(table * STRIDE, TABLE_CFG_HEAD);
    this.bytes.set(encodeTableCfg(cfg), table * STRIDE);
  }

  /** The /16 words of a table (IPv4: the first level of its /24 index). */
  d16(table: number): D16Words {
    const region = this.region;
    const memo = { at: -1 };
    return {
      words: this.words,
      first: (table * STRIDE + D16) / 4,
      ensure: () => region.ensureOnce(table * STRIDE + D16, D16_BYTES, memo),
    };
  }

  /** Publishes `next` as the table's length set; returns the config as it now is. */
  publish(table: number, cfg: TableCfg, next: LenSet): TableCfg {
    const cur = cfg.active & 1;
    const staged: TableCfg = { ...cfg, sets: [...cfg.sets] as [LenSet, LenSet] };
    staged.sets[cur ^ 1] = { hashLens: [...next.hashLens], useTrie: next.useTrie };
    const base = table * STRIDE;
    this.region.ensure(base, TABLE_CFG_HEAD);
    // The inactive set (no program reads it), then the flip (a seq-cst store: after the set's bytes).
    this.bytes.set(encodeLenSet(staged.sets[cur ^ 1]!), base + LAYOUT.fw_table_cfg.fields.set + (cur ^ 1) * LAYOUT.fw_lenset.size);
    Atomics.store(this.words, (base + LAYOUT.fw_table_cfg.fields.active) / 4, cur ^ 1);
    staged.active = cur ^ 1;
    return staged;
  }
}
