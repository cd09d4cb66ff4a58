// "Counters only for rules it was sent" (issue 15): an agent's counter
// report keeps only the rules this node was sent, i.e. rules that select it
// now, or that were withdrawn from it recently (deleted, or their selector
// changed: the agent reports a rule's final counts after it removed it).
// The rest is dropped and counted
// (fleetwall_counter_samples_dropped_total): a node cannot invent counters
// for rules it does not have. Withdrawals are remembered for
// WITHDRAWN_WINDOW_MS and at most MAX_WITHDRAWN rules (the newest).
import { Counter, type Registry } from 'prom-client';
import type { CounterReport } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { RuleCache, RuleTransition } from './rule-cache.js';
import type { HubSession, SyncHub } from './sync-hub.js';

export const WITHDRAWN_WINDOW_MS = 15 * 60_000;
export const MAX_WITHDRAWN = 200_000;

export class CounterScope {
  /** Rule id -> the selector it had when it was withdrawn, and when (insertion order = age). */
  private readonly withdrawn = new Map<bigint, { readonly sel: string; readonly at: number }>();
  private readonly dropped: Counter;

  constructor(
    private readonly cache: RuleCache,
    private readonly hub: Pick<SyncHub, 'selects'>,
    registry: Registry,
    private readonly now: () => number = Date.now,
  ) {
    this.dropped = new Counter({
      name: 'fleetwall_counter_samples_dropped_total',
      help: 'Rule counter samples dropped because the reporting node was not sent that rule.',
      registers: [registry],
    });
  }

  /** Called with every revision's transitions (before they are published). */
  record(transitions: readonly RuleTransition[]): void {
    const t0 = this.now();
    for (const t of transitions) {
      if (t.prev === undefined || (t.next !== undefined && t.next.sel === t.prev.sel)) continue;
      this.withdrawn.delete(t.id);
      this.withdrawn.set(t.id, { sel: t.prev.sel, at: t0 });
    }
    while (this.withdrawn.size > MAX_WITHDRAWN) this.withdrawn.delete(this.withdrawn.keys().next().value!);
  }

  /** Whether `s`'s node was sent rule `id`. */
  wasSent(s: HubSession, id: bigint): boolean {
    const r = this.cache.get(id);
    if (r && this.hub.selects(s, r.sel)) return true;
    const w = this.withdrawn.get(id);
    return w !== undefined && this.now() - w.at <= WITHDRAWN_WINDOW_MS && this.hub.selects(s, w.sel);
  }

  /** The report with only the rules `s` was sent (the same object when nothing is dropped). */
  filter(s: HubSession, report: CounterReport): CounterReport {
    let drop = 0;
    for (const r of report.rules) if (!this.wasSent(s, r.ruleId)) drop++;
    if (drop === 0) return report;
    this.dropped.inc(drop);
    return { ...report, rules: report.rules.filter((r) => this.wasSent(s, r.ruleId)) };
  }

  /** Samples dropped so far (tests). */
  async droppedTotal(): Promise<number> {
    return (await this.dropped.get()).values[0]?.value ?? 0;
  }
}
