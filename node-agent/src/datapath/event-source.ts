// The datapath's side of sampled drop events: the budget settings written to
// fw_ev_cfg (split over the counters' CPU rows), the per-rule budgets read
// back from the generation's counter rows (fw_rule_cnt: each row's
// fw_rule_row.ev; events lost for want of ring room, drops still pending) and
// the default's from fw_ev_cpu, and the ring reader (event-ring.ts) over
// fw_events.

import { LAYOUT, MAP } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { EventBudgets, EventSource } from './datapath.js';
import { EventRing } from './event-ring.js';
import { type EventSettings, FW_EV_NO_SLOT, encodeEventCfg } from './events-abi.js';
import { MapRegion } from './libbpf.js';

const ROW = LAYOUT.fw_rule_row;
const S = LAYOUT.fw_ev_state.fields;
/** Byte offsets of a rule budget's lost and weight words inside a counter row, and of the default's inside fw_ev_cpu. */
const ROW_LOST = ROW.fields.ev + S.lost;
const ROW_WEIGHT = ROW.fields.ev + S.weight;
const CPU = LAYOUT.fw_ev_cpu;
const CPU_LOST = CPU.fields.dflt + S.lost;
const CPU_WEIGHT = CPU.fields.dflt + S.weight;

/** The generation in force, as the event budgets need it. */
export interface EventGeometry {
  /** fw_rule_cnt of the generation in force (the rule budgets live in its CPU rows). */
  readonly counters: BpfMap;
  readonly slots: number;
  readonly cpuRows: number;
}

export class DatapathEvents implements EventSource {
  private settingsValue: EventSettings | null = null;
  private rowsWritten = 0;

  constructor(
    private readonly cfg: BpfMap,
    private readonly ring: BpfMap,
    /** fw_ev_cpu: the node budget per CPU and the default's budget. */
    private readonly cpu: BpfMap,
    private readonly geometry: () => EventGeometry,
  ) {}

  get ringBytes(): number {
    return this.ring.maxEntries;
  }

  get settings(): EventSettings | null {
    return this.settingsValue;
  }

  configure(s: EventSettings): void {
    const rows = this.geometry().cpuRows;
    this.cfg.updateU32(0, encodeEventCfg(s, rows));
    this.settingsValue = s;
    this.rowsWritten = rows;
  }

  /** After a generation swap: the budget is split over the rows again if their number changed. */
  refresh(): void {
    if (this.settingsValue && this.geometry().cpuRows !== this.rowsWritten) this.configure(this.settingsValue);
  }

  openRing(): EventRing {
    return new EventRing(this.ring.fd, this.ring.maxEntries, MAP.EVENTS);
  }

  /**
   * Sums every CPU row's budget of slots [first, first + lost.length) (and
   * of the default's drops, FW_EV_NO_SLOT, in `out.defaultSlot`) into the
   * caller's arrays: lost events (u32, wrapping: compare as deltas) and
   * pending drops. Returns the slots read (0 past the end). The maps are
   * mapped only for the read.
   */
  readBudgets(first: number, out: EventBudgets): number {
    const g = this.geometry();
    const n = Math.max(0, Math.min(out.lost.length, g.slots - first));
    out.defaultLost = 0;
    out.defaultPending = 0;
    out.lost.fill(0, 0, n);
    out.pending.fill(0, 0, n);
    if (n > 0) {
      const region = new MapRegion(g.counters.fd, g.counters.maxEntries * ROW.size, g.counters.name);
      try {
        const w = new Uint32Array(region.buffer);
        for (let row = 0; row < g.cpuRows; row++) {
          const base = row * g.slots + first;
          region.ensure(base * ROW.size, n * ROW.size);
          for (let k = 0; k < n; k++) {
            const o = (base + k) * ROW.size;
            out.lost[k] = (out.lost[k]! + w[(o + ROW_LOST) >> 2]!) >>> 0;
            out.pending[k] = out.pending[k]! + w[(o + ROW_WEIGHT) >> 2]!;
          }
        }
      } finally {
        region.close();
      }
    }
    const region = new MapRegion(this.cpu.fd, this.cpu.maxEntries * CPU.size, this.cpu.name);
    try {
      const w = new Uint32Array(region.buffer);
      for (let cpu = 0; cpu < Math.min(g.cpuRows, this.cpu.maxEntries); cpu++) {
        region.ensure(cpu * CPU.size, CPU.size);
        out.defaultLost = (out.defaultLost + w[(cpu * CPU.size + CPU_LOST) >> 2]!) >>> 0;
        out.defaultPending += w[(cpu * CPU.size + CPU_WEIGHT) >> 2]!;
      }
    } finally {
      region.close();
    }
    return n;
  }

  /**
   * The map id of the rule budgets in force: it changes when a swap gives the
   * counters a new size (the budgets restart). The default's (fw_ev_cpu) never restart.
   */
  get budgetsId(): number {
    return this.geometry().counters.info.id;
  }
}

export { FW_EV_NO_SLOT };
