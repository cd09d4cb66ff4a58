// Counters: every interval, one batch read of the rule counters and one of the
// interface counters; report the CUMULATIVE totals of the entries that changed
// since the last report sent on this stream (the first report on a stream
// carries every non-zero entry). The control plane turns totals into deltas,
// so restarts, reconnects and lost reports never miscount.
//
// Slots of deleted rules stay RETIRED until a report taken after the delete
// was acknowledged (CounterAck): only then is the rule's final total known to
// the control plane and the slot goes back to the free list.

import type { Datapath, InterfaceCounters } from '../datapath/datapath.js';
import type { CounterReport, InterfaceCounterSample, RuleCounterSample } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { RuleTable } from '../reconcile/rule-table.js';
import type { SlotPool } from '../reconcile/slot-pool.js';
import { directionToWire } from '../sync/wire.js';

/** Samples per CounterReport message (keeps messages well under gRPC's 4 MB). */
const MAX_SAMPLES_PER_REPORT = 40_000;

function ifaceValues(c: InterfaceCounters): bigint[] {
  const t = c.totals;
  return [t.pass.packets, t.pass.bytes, t.drop.packets, t.drop.bytes, t.wouldDrop.packets, t.wouldDrop.bytes];
}

export class CounterReporter {
  /** Last totals sent on this stream, per slot, as u32 word pairs (no BigInt per slot). */
  private lastPackets: Uint32Array;
  private lastBytes: Uint32Array;
  private readonly lastIf = new Map<string, bigint[]>();
  private seq = 0n;
  /** Retired slot -> seq of the first report taken after it retired (on this stream). */
  private readonly retiredIn = new Map<number, bigint>();
  /** Totals of the latest read (metrics). */
  readonly stats = { reports: 0, samples: 0, lastReadMs: 0, acked: 0n };

  constructor(
    private readonly dp: Datapath,
    private readonly table: RuleTable,
    private readonly slots: () => SlotPool,
  ) {
    const cap = dp.capacity.counterSlots;
    this.lastPackets = new Uint32Array(cap * 2);
    this.lastBytes = new Uint32Array(cap * 2);
  }

  /** A new stream: the next report carries every non-zero entry. */
  newStream(): void {
    this.lastPackets.fill(0);
    this.lastBytes.fill(0);
    this.lastIf.clear();
    this.retiredIn.clear();
  }

  /**
   * Reads the counters and returns the reports to send (empty when nothing
   * changed). The values are recorded as sent: call only when the reports
   * will be written to the live stream.
   */
  collect(now: Date = new Date()): CounterReport[] {
    const t0 = performance.now();
    const pool = this.slots();
    const upTo = pool.watermark;
    const rules: RuleCounterSample[] = [];
    const retiredNow: number[] = [];
    if (upTo > 0) {
      const { packets, bytes } = this.dp.readRuleCounters(upTo);
      const pw = new Uint32Array(packets.buffer, packets.byteOffset, upTo * 2);
      const bw = new Uint32Array(bytes.buffer, bytes.byteOffset, upTo * 2);
      const lp = this.lastPackets;
      const lb = this.lastBytes;
      const owner = pool.owner;
      for (let s = 0; s < upTo; s++) {
        const i = s * 2;
        if (pw[i] === lp[i] && pw[i + 1] === lp[i + 1] && bw[i] === lb[i] && bw[i + 1] === lb[i + 1]) {
          if (owner[s] === -1 && pool.retired.has(s)) retiredNow.push(s);
          continue;
        }
        const r = owner[s]!;
        let id: bigint | undefined;
        if (r >= 0) id = this.table.id[r];
        else {
          id = pool.retired.get(s);
          if (id !== undefined) retiredNow.push(s);
        }
        if (id === undefined) continue; // free slot with stale counts: nobody's
        rules.push({ ruleId: id, packets: packets[s]!, bytes: bytes[s]! });
        lp[i] = pw[i]!;
        lp[i + 1] = pw[i + 1]!;
        lb[i] = bw[i]!;
        lb[i + 1] = bw[i + 1]!;
      }
    }
    const interfaces: InterfaceCounterSample[] = [];
    for (const c of this.dp.readInterfaceCounters()) {
      const key = `${c.ifname}/${c.direction}`;
      const v = ifaceValues(c);
      const last = this.lastIf.get(key);
      if (last ? last.every((x, k) => x === v[k]) : v.every((x) => x === 0n)) continue;
      this.lastIf.set(key, v);
      interfaces.push({
        interface: c.ifname,
        direction: directionToWire(c.direction),
        counters: { passPackets: v[0]!, passBytes: v[1]!, dropPackets: v[2]!, dropBytes: v[3]!, wouldDropPackets: v[4]!, wouldDropBytes: v[5]! },
      });
    }
    this.stats.lastReadMs = performance.now() - t0;
    const reports: CounterReport[] = [];
    for (let i = 0; i === 0 || i < rules.length; i += MAX_SAMPLES_PER_REPORT) {
      const part = rules.slice(i, i + MAX_SAMPLES_PER_REPORT);
      const ifs = i === 0 ? interfaces : [];
      if (part.length === 0 && ifs.length === 0) break;
      this.seq++;
      reports.push({ seq: this.seq, rules: part, interfaces: ifs, sampleTime: now });
      this.stats.samples += part.length + ifs.length;
    }
    this.stats.reports += reports.length;
    // Retired slots whose final totals this read covered (sent now or in an
    // earlier report on this stream): freed once the latest report is
    // acknowledged (an ack of a later seq implies the earlier ones).
    for (const s of retiredNow) {
      if (this.retiredIn.has(s)) continue;
      if (this.isZero(s)) this.release(s); // never counted: nothing to report
      else this.retiredIn.set(s, this.seq);
    }
    if (this.stats.acked > 0n) this.onAck(this.stats.acked);
    return reports;
  }

  private isZero(s: number): boolean {
    const i = s * 2;
    return this.lastPackets[i] === 0 && this.lastPackets[i + 1] === 0 && this.lastBytes[i] === 0 && this.lastBytes[i + 1] === 0;
  }

  private release(s: number): void {
    this.retiredIn.delete(s);
    this.slots().release(s);
    // The slot starts from zero for its next owner (counter.reset).
    this.lastPackets[s * 2] = 0;
    this.lastPackets[s * 2 + 1] = 0;
    this.lastBytes[s * 2] = 0;
    this.lastBytes[s * 2 + 1] = 0;
  }

  /** CounterAck{seq}: the control plane holds every total up to that report. */
  onAck(seq: bigint): void {
    if (seq > this.stats.acked) this.stats.acked = seq;
    for (const [s, covered] of this.retiredIn) if (covered <= seq) this.release(s);
  }

  get lastSeq(): bigint {
    return this.seq;
  }
}
