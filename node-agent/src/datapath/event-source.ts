// The datapath's side of sampled drop events: the budget settings written to
// fw_ev_cfg (split over the counters' CPU rows), the per-rule budgets read
// back from the generation's counter rows (fw_rule_cnt: each row's
// fw_rule_row.ev; events lost for want of ring room, and the drops still
// pending: the row's counter minus its mark) and the default's from
// fw_ev_cpu, and the ring reader (event-ring.ts) over fw_events. Turning
// events on sets every mark to its counter first (fw_events_abi.h): the
// first events do not carry the drops counted while events were off.

import { constants as osConstants } from 'node:os';
import { LAYOUT, MAP } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { EventBudgets, EventSource } from './datapath.js';
import { EventRing } from './event-ring.js';
import { type EventSettings, FW_EV_F_ENABLED, FW_EV_NO_SLOT, encodeEventCfg } from './events-abi.js';
import { DatapathError } from './errors.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;

const ROW = LAYOUT.fw_rule_row;
const S = LAYOUT.fw_ev_state.fields;
/** Byte offsets inside a counter row: the budget's lost and mark words, the counter's packets (low half). */
const ROW_LOST = ROW.fields.ev + S.lost;
const ROW_MARK = ROW.fields.ev + S.mark;
const ROW_PACKETS = ROW.fields.c + LAYOUT.fw_counter.fields.packets;
const CPU = LAYOUT.fw_ev_cpu;
const CPU_LOST = CPU.fields.dflt + S.lost;
const CPU_MARK = CPU.fields.dflt + S.mark;
const CPU_DROPS = CPU.fields.drops;
/** Slots per window when setting the marks (1 MB per CPU row). */
const MARK_WINDOW = 32768;

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
    /** The programs carry the event code (false: the _noev pair is loaded, events cannot be turned on). */
    private readonly eventCode = true,
  ) {}

  get ringBytes(): number {
    return this.ring.maxEntries;
  }

  get settings(): EventSettings | null {
    return this.settingsValue;
  }

  configure(s: EventSettings): void {
    if (s.enabled && !this.eventCode) {
      throw new DatapathError(
        'turn on drop events',
        'datapath',
        E.EINVAL,
        'the datapath was opened with events off: its programs have no event code; reopen it with events on',
      );
    }
    const rows = this.geometry().cpuRows;
    if (s.enabled && !this.enabledInKernel()) this.markAll();
    this.cfg.updateU32(0, encodeEventCfg(s, rows));
    this.settingsValue = s;
    this.rowsWritten = rows;
  }

  /** Whether the pinned fw_ev_cfg has events on (a restarted agent finds them as the previous one left them). */
  private enabledInKernel(): boolean {
    const v = this.cfg.lookupU32(0);
    return v !== null && (v.readUInt32LE(LAYOUT.fw_ev_cfg.fields.flags) & FW_EV_F_ENABLED) !== 0;
  }

  /**
   * Every budget's mark = its count (events are off: no program moves a
   * mark), so nothing counted until now is pending when they turn on.
   */
  private markAll(): void {
    const g = this.geometry();
    const region = new MapRegion(g.counters.fd, g.counters.maxEntries * ROW.size, g.counters.name);
    try {
      const w = new Uint32Array(region.buffer);
      for (let row = 0; row < g.cpuRows; row++) {
        for (let first = 0; first < g.slots; first += MARK_WINDOW) {
          const n = Math.min(MARK_WINDOW, g.slots - first);
          const base = row * g.slots + first;
          region.ensure(base * ROW.size, n * ROW.size);
          for (let k = 0; k < n; k++) {
            const o = (base + k) * ROW.size;
            const c = w[(o + ROW_PACKETS) >> 2]!;
            if (w[(o + ROW_MARK) >> 2] !== c) Atomics.store(w, (o + ROW_MARK) >> 2, c);
          }
          region.release();
        }
      }
    } finally {
      region.close();
    }
    const cpu = new MapRegion(this.cpu.fd, this.cpu.maxEntries * CPU.size, this.cpu.name);
    try {
      const w = new Uint32Array(cpu.buffer);
      for (let c = 0; c < this.cpu.maxEntries; c++) {
        cpu.ensure(c * CPU.size, CPU.size);
        Atomics.store(w, (c * CPU.size + CPU_MARK) >> 2, w[(c * CPU.size + CPU_DROPS) >> 2]!);
      }
    } finally {
      cpu.close();
    }
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
   * pending drops (each row's count since its mark: for a deny rule, its
   * drops no event carried yet; an allow rule's slot reads its passes since
   * events were turned on, no event ever moving its marks). Returns the slots read (0 past the end). The maps are
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
            out.pending[k] = out.pending[k]! + ((w[(o + ROW_PACKETS) >> 2]! - w[(o + ROW_MARK) >> 2]!) >>> 0);
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
        out.defaultPending += (w[(cpu * CPU.size + CPU_DROPS) >> 2]! - w[(cpu * CPU.size + CPU_MARK) >> 2]!) >>> 0;
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
