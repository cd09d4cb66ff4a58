// What is pinned about the install as a whole: fw_meta (ABI version, default
// action, K, the maxima, the dirty flag an apply sets while it runs, the sync
// revision and store id, the generation in force and the one being swapped
// in) and fw_lenstat (entries per prefix length of each
// table, so a reopen knows where every length lives without a scan).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FW_ABI_VERSION, FW_LEN_SLOTS, LAYOUT, MAP, type MetaValue, decodeMeta, encodeMeta } from './abi.js';
import { BpfMap } from './bpf-map.js';
import type { SyncMeta } from './datapath.js';

export class PinnedMeta {
  /** The value as this process last wrote or read it. */
  value: MetaValue;

  constructor(
    private readonly meta: BpfMap,
    private readonly lenstat: BpfMap,
  ) {
    this.value = decodeMeta(meta.lookupU32(0)!);
  }

  /** No install yet, or a creation that died before it wrote its meta (abi_version 0). */
  get fresh(): boolean {
    return this.value.abiVersion === 0;
  }

  /** The meta of a new install (its first generation: 1), written. */
  create(defaultAction: number, maxHashLens: number, prefixesPerTable: number, ruleSlots: number): void {
    this.value = {
      revision: 0n,
      storeId: '',
      abiVersion: FW_ABI_VERSION,
      defaultAction,
      maxHashLens,
      dirty: false,
      createdUnixMs: BigInt(Date.now()),
      prefixesPerTable,
      ruleSlots,
      gen: 1,
      nextGen: 0,
    };
    this.write();
  }

  /** Changes some fields and writes the value. */
  update(change: Partial<MetaValue>): void {
    this.value = { ...this.value, ...change };
    this.write();
  }

  /** The sync meta as pinned now (read from the map). */
  readSync(): SyncMeta {
    const m = decodeMeta(this.meta.lookupU32(0)!);
    return { revision: m.revision, storeId: m.storeId };
  }

  /** A table's pinned entries per prefix length, into `counts`. */
  readCounts(table: number, counts: Uint32Array): void {
    const v = this.lenstat.lookupU32(table)!;
    for (let i = 0; i < FW_LEN_SLOTS; i++) counts[i] = v.readUInt32LE(LAYOUT.fw_lenstat.fields.count + i * 4);
  }

  writeCounts(table: number, counts: Uint32Array): void {
    const b = Buffer.alloc(LAYOUT.fw_lenstat.size);
    for (let i = 0; i < FW_LEN_SLOTS; i++) b.writeUInt32LE(counts[i]!, LAYOUT.fw_lenstat.fields.count + i * 4);
    this.lenstat.updateU32(table, b);
  }

  private write(): void {
    this.meta.updateU32(0, encodeMeta(this.value));
  }
}

/** The pinned fw_meta, or null when there is none. */
export function readPinnedMeta(pinDir: string): ReturnType<typeof decodeMeta> | null {
  const path = join(pinDir, MAP.META);
  if (!existsSync(path)) return null;
  const m = BpfMap.fromPin(path, MAP.META);
  try {
    const v = m.lookupU32(0);
    return v ? decodeMeta(v) : null;
  } finally {
    m.close();
  }
}
