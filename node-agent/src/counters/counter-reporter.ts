// Counters: every interval, the rule counters in chunks into two reused
// buffers (no allocation per read: nothing for the GC at a million slots),
// and the interface counters; report the CUMULATIVE totals of the entries that changed
// since the last report sent on this stream (the first report on a stream
// carries every non-zero entry). The control plane turns totals into deltas,
// so restarts, reconnects and lost reports never miscount.
//
// Slots of deleted rules stay RETIRED until a report taken after the delete
// was acknowledged (CounterAck): only then is the rule's final total known to
// the control plane and the slot goes back to the free list.

import type { CounterSource, InterfaceCounters } from '../datapath/datapath.js';
import type { CounterReport, InterfaceCounterSample, RuleCounterSample } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { RuleView } from '../reconcile/rule-records.js';
import type { SlotPool } from '../reconcile/slot-pool.js';
import { directionToWire } from '../sync/wire.js';
import { isLocalRuleId } from '../reconcile/local-rules.js';

/** Samples per CounterReport message (keeps messages well under gRPC's 4 MB). */
const MAX_SAMPLES_PER_REPORT = 40_000;
/** Slots per counter read (2 x 512 KB of buffers, reused). */
const READ_CHUNK = 32768;

function ifaceValues(c: InterfaceCounters): bigint[] {
  const t = c.totals;
  return [t.pass.packets, t.pass.bytes, t.drop.packets, t.drop.bytes, t.wouldDrop.packets, t.wouldDrop.bytes];
}

export class CounterReporter {
  /**
   * Low 32 bits of the packet total last sent on this stream, per slot (no
   * BigInt per slot, 4 bytes each). Every packet adds to both totals, so a
   * change shows in the packet count; its low word misses a change only if
   * more than 4 billion packets hit one rule within one interval.
   */
  private lastPackets: Uint32Array;
  /** Reused read buffers: summed packets and bytes of one chunk of slots. */
  private readonly chunkPackets: BigUint64Array;
  private readonly chunkBytes: BigUint64Array;
  /** chunkPackets as u32 halves (the low word of each total, without a BigInt). */
  private readonly chunkWords: Uint32Array;
  /** The next collect reports every non-zero slot (first report on a stream). */
  private fresh = true;
  private readonly lastIf = new Map<string, bigint[]>();
  private seq = 0n;
  /** Retired slot -> seq of the first report taken after it retired (on this stream). */
  private readonly retiredIn = new Map<number, bigint>();
  /** Totals of the latest read (metrics). */
  readonly stats = { reports: 0, samples: 0, lastReadMs: 0, acked: 0n };

  constructor(
    private readonly dp: CounterSource,
    /** Which rule owns which slot, and the retired slots the reporter releases. */
    private readonly slots: SlotPool,
    /** Rule ids by record. */
    private readonly rules: Pick<RuleView, 'idOf'>,
  ) {
    this.lastPackets = new Uint32Array(dp.capacity.counterSlots);
    const n = Math.max(1, Math.min(READ_CHUNK, dp.capacity.counterSlots));
    this.chunkPackets = new BigUint64Array(n);
    this.chunkBytes = new BigUint64Array(n);
    this.chunkWords = new Uint32Array(this.chunkPackets.buffer);
  }

  /** A new stream: the next report carries every non-zero entry. */
  newStream(): void {
    this.lastPackets.fill(0);
    this.fresh = true;
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
    const pool = this.slots;
    const upTo = pool.watermark;
    const rules: RuleCounterSample[] = [];
    const retiredNow: number[] = [];
    const retiredZero: number[] = [];
    if (upTo > 0) {
      const packets = this.chunkPackets;
      const bytes = this.chunkBytes;
      const pw = this.chunkWords;
      const lp = this.lastPackets;
      const owner = pool.owner;
      const fresh = this.fresh;
      const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
      const lo = le ? 0 : 1;
      for (let first = 0; first < upTo; first += packets.length) {
        const n = this.dp.readRuleCountersInto(first, packets.subarray(0, Math.min(packets.length, upTo - first)), bytes);
        for (let k = 0; k < n; k++) {
          const s = first + k;
          const low = pw[k * 2 + lo]!;
          const unchanged = fresh ? low === 0 && pw[k * 2 + 1 - lo] === 0 : low === lp[s];
          if (unchanged) {
            if (owner[s] === -1 && pool.retired.has(s)) {
              if (packets[k] === 0n) retiredZero.push(s);
              else retiredNow.push(s);
            }
            continue;
          }
          const r = owner[s]!;
          let id: bigint | undefined;
          if (r >= 0) id = this.rules.idOf(r);
          else {
            id = pool.retired.get(s);
            if (id !== undefined) retiredNow.push(s);
          }
          if (id === undefined) continue; // free slot with stale counts: nobody's
          if (isLocalRuleId(id)) {
            // An agent-local rule (failsafe entry): the control plane has no such rule.
            lp[s] = low;
            continue;
          }
          rules.push({ ruleId: id, packets: packets[k]!, bytes: bytes[k]! });
          lp[s] = low;
        }
        if (n === 0) break;
      }
      this.fresh = false;
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
        counters: {
          passPackets: v[0]!,
          passBytes: v[1]!,
          dropPackets: v[2]!,
          dropBytes: v[3]!,
          wouldDropPackets: v[4]!,
          wouldDropBytes: v[5]!,
        },
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
    for (const s of retiredZero) this.release(s); // never counted: nothing to report
    for (const s of retiredNow) if (!this.retiredIn.has(s)) this.retiredIn.set(s, this.seq);
    if (this.stats.acked > 0n) this.onAck(this.stats.acked);
    return reports;
  }

  private release(s: number): void {
    this.retiredIn.delete(s);
    this.slots.release(s);
    // The slot starts from zero for its next owner (counter.reset).
    this.lastPackets[s] = 0;
  }

  /** CounterAck{seq}: the control plane holds every total up to that report. */
  onAck(seq: bigint): void {
    if (seq > this.stats.acked) this.stats.acked = seq;
    for (const [s, covered] of this.retiredIn) if (covered <= seq) this.release(s);
  }
}
