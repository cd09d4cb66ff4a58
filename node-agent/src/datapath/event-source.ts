// The datapath's side of sampled drop events: the budget settings written to
// fw_ev_cfg (split over the counters' CPU rows), the per-rule budgets read
// back from the generation's fw_ev_state (events lost for want of ring room,
// drops still pending), and the ring reader (event-ring.ts) over fw_events.

import { LAYOUT, MAP } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { EventBudgets, EventSource } from './datapath.js';
import { EventRing } from './event-ring.js';
import { type EventSettings, FW_EV_NO_SLOT, encodeEventCfg } from './events-abi.js';
import { MapRegion } from './libbpf.js';

const S = LAYOUT.fw_ev_state;

/** The generation in force, as the event budgets need it. */
export interface EventGeometry {
  /** fw_ev_state of the generation in force. */
  readonly state: BpfMap;
  readonly slots: number;
  readonly cpuRows: number;
}

export class DatapathEvents implements EventSource {
  private settingsValue: EventSettings | null = null;
  private rowsWritten = 0;

  constructor(
    private readonly cfg: BpfMap,
    private readonly ring: BpfMap,
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
   * pending drops. Returns the slots read (0 past the end). The map is
   * mapped only for the read.
   */
  readBudgets(first: number, out: EventBudgets): number {
    const g = this.geometry();
    const stride = g.slots + 1;
    const n = Math.max(0, Math.min(out.lost.length, g.slots - first));
    out.defaultLost = 0;
    out.defaultPending = 0;
    out.lost.fill(0, 0, n);
    out.pending.fill(0, 0, n);
    const region = new MapRegion(g.state.fd, g.state.maxEntries * S.size, g.state.name);
    try {
      const w = new Uint32Array(region.buffer);
      for (let row = 0; row < g.cpuRows; row++) {
        const base = row * stride;
        if (n > 0) {
          region.ensure((base + first) * S.size, n * S.size);
          for (let k = 0; k < n; k++) {
            const o = ((base + first + k) * S.size) >> 2;
            out.lost[k] = (out.lost[k]! + w[o + (S.fields.lost >> 2)]!) >>> 0;
            out.pending[k] = out.pending[k]! + w[o + (S.fields.weight >> 2)]!;
          }
        }
        region.ensure((base + g.slots) * S.size, S.size);
        const o = ((base + g.slots) * S.size) >> 2;
        out.defaultLost = (out.defaultLost + w[o + (S.fields.lost >> 2)]!) >>> 0;
        out.defaultPending += w[o + (S.fields.weight >> 2)]!;
      }
    } finally {
      region.close();
    }
    return n;
  }

  /** The map id of the budgets in force: it changes when a swap gives them a new size (their counts restart). */
  get budgetsId(): number {
    return this.geometry().state.info.id;
  }
}

export { FW_EV_NO_SLOT };
