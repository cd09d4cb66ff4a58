// What a kernel event record names, resolved for the wire: the rule that
// owns a counter slot now (or owned it until its final counts were
// acknowledged), an interface's name, and the event's time on the wall clock
// (the kernel stamps CLOCK_MONOTONIC; the offset to CLOCK_REALTIME is taken
// again every few seconds, so a clock step shows within that time).

import type { RuleView } from '../reconcile/rule-records.js';
import type { SlotPool } from '../reconcile/slot-pool.js';
import type { EventResolver } from './event-queue.js';

const OFFSET_TTL_MS = 5_000;

export class AgentEventResolver implements EventResolver {
  private offsetUs = 0;
  private offsetAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly slots: SlotPool,
    private readonly rules: Pick<RuleView, 'idOf'>,
    private readonly ifnames: (ifindex: number) => string | undefined,
  ) {}

  ruleOf(slot: number): bigint | undefined {
    if (slot >= this.slots.owner.length) return undefined;
    const r = this.slots.owner[slot]!;
    if (r >= 0) return this.rules.idOf(r);
    return this.slots.retired.get(slot);
  }

  ifname(ifindex: number): string {
    return this.ifnames(ifindex) ?? `if${ifindex}`;
  }

  unixMicros(monoNs: bigint): number {
    const now = performance.now();
    if (now - this.offsetAt > OFFSET_TTL_MS) {
      this.offsetAt = now;
      this.offsetUs = Date.now() * 1000 - Number(process.hrtime.bigint() / 1000n);
    }
    return Number(monoNs / 1000n) + this.offsetUs;
  }
}
