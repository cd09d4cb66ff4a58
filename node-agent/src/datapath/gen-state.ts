// What the datapath writes and reads in one generation: its table configs
// (fw_tblcfg), its four tables (hash, spill hash, /24 index, over the tries
// every generation shares), its journal and its rule counters (fw_rule_cnt
// and fw_rule_xcnt). Opened over a
// generation in force, or built for the next one from the current: each map
// the next generation keeps is the same kernel object (nothing to copy);
// each new one is filled from the current one while no program reads it yet
// (entries inserted into a resized hash, the /24 index compacted into a
// resized pool, the journal copied). The rule counters of a new counter map
// start at zero: the swap carries the totals over once the old programs
// have stopped (swap.ts).

import { FW_CFG_OVERFLOW_ROW, LAYOUT, MAP, type MapName, TABLES, type TableCfg } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { Generation } from './generation.js';
import { Journal } from './journal.js';
import { MapRegion } from './libbpf.js';
import { PrefixTable } from './prefix-table.js';
import { RuleCounters } from './rule-counters.js';
import { TableConfigs } from './table-config.js';

export class GenState {
  readonly configs: TableConfigs;
  readonly tables: PrefixTable[] = [];
  readonly journal: Journal;
  readonly counters: RuleCounters;
  private closed = false;

  private constructor(
    readonly gen: Generation,
    configs: TableConfigs,
    tables: (configs: TableConfigs) => PrefixTable[],
  ) {
    this.configs = configs;
    try {
      this.tables.push(...tables(configs));
      this.journal = new Journal(gen.map(MAP.JOURNAL));
      const c = configs.read(0);
      this.counters = new RuleCounters(gen.map(MAP.RULE_CNT), gen.map(MAP.RULE_XCNT), {
        slots: c.ruleSlots,
        cpuRows: c.cpuRows,
        overflowRow: (c.flags & FW_CFG_OVERFLOW_ROW) !== 0,
      });
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * A generation in force (or a new install's first, its configs given):
   * counts: entries per length of each table (pinned), k: K.
   */
  static open(gen: Generation, tries: readonly BpfMap[], counts: readonly Uint32Array[], k: number, init?: readonly TableCfg[]): GenState {
    const configs = new TableConfigs(gen.map(MAP.TBLCFG));
    if (init) for (const d of TABLES) configs.init(d.id, init[d.id]!);
    return new GenState(gen, configs, (cf) =>
      TABLES.map(
        (d) =>
          new PrefixTable(
            d,
            {
              tab: gen.map(d.tab),
              spill: gen.map(d.spill),
              trie: tries[d.id]!,
              pool: d.d24 ? gen.map(d.d24) : null,
              d16: d.d24 ? cf.d16(d.id) : null,
            },
            cf.read(d.id),
            cf,
            k,
            counts[d.id]!,
            null,
            init !== undefined,
          ),
      ),
    );
  }

  /**
   * The next generation's state, filled from `cur` (in force: its programs
   * run; nothing writes it meanwhile). The new configs get the new hashes'
   * geometry and the counters' rows.
   */
  static next(gen: Generation, cur: GenState, tries: readonly BpfMap[], k: number): GenState {
    const configs = new TableConfigs(gen.map(MAP.TBLCFG));
    const isNew = (name: MapName) => !gen.shares(cur.gen, name);
    const g = gen.sizes;
    try {
      for (const d of TABLES) {
        const old = cur.tables[d.id]!;
        const cfg: TableCfg = {
          ...old.config,
          nbuckets: gen.map(d.tab).maxEntries,
          ruleSlots: g.slots,
          cpuRows: g.cpuRows,
          flags: g.overflowRow ? FW_CFG_OVERFLOW_ROW : 0,
        };
        configs.init(d.id, cfg);
        if (!d.d24) continue;
        // The /16 words: the same blocks when the pool is kept, else the index compacted into the new pool.
        const dst = configs.d16(d.id);
        dst.ensure();
        if (!isNew(d.d24)) {
          const src = cur.configs.d16(d.id);
          src.ensure();
          dst.words.set(
            src.words.subarray(src.first, src.first + (LAYOUT.fw_table_cfg.size - LAYOUT.fw_table_cfg.fields.d16) / 4),
            dst.first,
          );
        } else {
          const pool = gen.map(d.d24);
          const r = new MapRegion(pool.fd, pool.maxEntries * LAYOUT.fw_d24_block.size, pool.name);
          try {
            r.mapAll();
            old.d24!.copyTo(new Uint32Array(r.buffer, 0, (pool.maxEntries * LAYOUT.fw_d24_block.size) / 4), dst.words, dst.first);
          } finally {
            r.close();
          }
        }
      }
    } catch (e) {
      configs.close();
      throw e;
    }
    const state = new GenState(gen, configs, (cf) =>
      TABLES.map((d) => {
        const old = cur.tables[d.id]!;
        const fresh = isNew(d.tab);
        const t = new PrefixTable(
          d,
          {
            tab: gen.map(d.tab),
            spill: gen.map(d.spill),
            trie: tries[d.id]!,
            pool: d.d24 ? gen.map(d.d24) : null,
            d16: d.d24 ? cf.d16(d.id) : null,
          },
          cf.read(d.id),
          cf,
          k,
          old.counts,
          old.d24?.longerCounts() ?? null,
          fresh,
        );
        if (fresh) t.fillFrom(old);
        return t;
      }),
    );
    try {
      if (isNew(MAP.JOURNAL)) cur.journal.copyTo(state.journal);
    } catch (e) {
      state.close();
      throw e;
    }
    state.release();
    cur.release();
    return state;
  }

  /** Unmaps every window (nothing stays mapped at rest). */
  release(): void {
    for (const t of this.tables) t.release();
    this.configs.region.release();
    this.counters?.release();
    this.journal?.region.release();
  }

  /** Pages mapped now (0 at rest). */
  get mappedPages(): number {
    let n = this.configs.region.mapped + (this.counters?.mapped ?? 0) + (this.journal?.region.mapped ?? 0);
    for (const t of this.tables) n += t.mappedPages;
    return n;
  }

  /** Unmaps and closes the state (not the generation: its maps may still be in force). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.tables) t.close();
    this.journal?.close();
    this.counters?.close();
    this.configs.close();
  }
}
