// CounterService handlers: persisted totals (this process's pending totals
// flushed first) for the fleet, per node and per rule.
import type { CounterQuery, CounterSnapshot } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import type {
  GetCountersRequest,
  GetCountersResponse,
  WatchCountersRequest,
  WatchCountersResponse,
} from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { echo } from '../../../common/src/echo.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { durationMs } from '../rules/validate.js';
import type { CounterStore } from '../store/counter-store.js';
import type { NodeStore } from '../store/node-store.js';

const MAX_TOP = 1000;
const MAX_RULE_IDS = 1000;
const MIN_INTERVAL_MS = 100;

export class CounterService {
  constructor(
    private readonly store: CounterStore,
    private readonly nodes: NodeStore,
    private readonly flush: () => Promise<void>,
  ) {}

  private async checkQuery(q: CounterQuery | undefined): Promise<{ nodeName?: string; ruleIds?: bigint[]; top: number }> {
    const top = q?.topRules ?? 0;
    if (top > MAX_TOP)
      throw new FleetwallError('INVALID_QUERY', `query.top_rules ${top} is over ${MAX_TOP}; ask for fewer or name rule_ids`, {
        field: 'query.top_rules',
      });
    if ((q?.ruleIds.length ?? 0) > MAX_RULE_IDS)
      throw new FleetwallError('INVALID_QUERY', `query.rule_ids has more than ${MAX_RULE_IDS} ids`, { field: 'query.rule_ids' });
    const nodeName = q?.nodeName.trim() || undefined;
    if (nodeName && !(await this.nodes.labels(nodeName))) {
      throw new FleetwallError('NODE_NOT_FOUND', `no node named ${echo(nodeName)} has connected; ListNodes shows the known nodes`, {
        node: nodeName.slice(0, 63),
      });
    }
    return { nodeName, ruleIds: q?.ruleIds.length ? q.ruleIds : undefined, top: top === 0 ? 10 : top };
  }

  private async snapshot(q: { nodeName?: string; ruleIds?: bigint[]; top: number }): Promise<CounterSnapshot> {
    await this.flush();
    const [fleet, nodes, rules] = await Promise.all([this.store.fleet(), this.store.nodes(q.nodeName), this.store.rules(q)]);
    return { fleet, nodes, rules, collectTime: new Date() };
  }

  async getCounters(req: GetCountersRequest): Promise<GetCountersResponse> {
    return { snapshot: await this.snapshot(await this.checkQuery(req.query)) };
  }

  /** Validates the request; then `emit` receives a snapshot now and every interval until `signal` aborts. */
  async watchCounters(
    req: WatchCountersRequest,
    emit: (res: WatchCountersResponse) => Promise<void> | void,
    signal: AbortSignal,
  ): Promise<void> {
    const q = await this.checkQuery(req.query);
    const ms = req.interval ? durationMs(req.interval) : 1000;
    const interval = ms === 0 ? 1000 : ms;
    if (interval < MIN_INTERVAL_MS) {
      throw new FleetwallError(
        'INVALID_INTERVAL',
        `interval ${interval}ms is under ${MIN_INTERVAL_MS}ms: counters are collected every few seconds; use 1s or more`,
        { field: 'interval' },
      );
    }
    while (!signal.aborted) {
      await emit({ snapshot: await this.snapshot(q) });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, interval);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  }
}
