// The lists' Prometheus metrics, on the control plane's registry:
//   fleetwall_list_refresh_seconds            histogram: fetch start to commit (or to the refusal)
//   fleetwall_list_refresh_total{list,outcome} refreshes this process ran, by outcome
//   fleetwall_list_entries{list}              rules each list owns (read from the store at scrape
//                                             time: every control plane exports the same values)
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ListStore } from './list-store.js';

export interface ListMetricsSink {
  observeRefresh(list: string, outcome: string, seconds: number): void;
}

export class ListMetrics implements ListMetricsSink {
  private readonly seconds: Histogram;
  private readonly total: Counter;

  constructor(registry: Registry, store: ListStore) {
    this.seconds = new Histogram({
      name: 'fleetwall_list_refresh_seconds',
      help: 'Time a list refresh took, from the start of the fetch to the commit of its revision (or its refusal).',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    });
    this.total = new Counter({
      name: 'fleetwall_list_refresh_total',
      help: 'List refreshes run by this control plane, by list and outcome.',
      labelNames: ['list', 'outcome'],
      registers: [registry],
    });
    new Gauge({
      name: 'fleetwall_list_entries',
      help: 'Rules each subscribed list owns.',
      labelNames: ['list'],
      registers: [registry],
      async collect() {
        const rows = await store.entries().catch(() => undefined);
        if (!rows) return;
        this.reset();
        for (const r of rows) this.set({ list: r.name }, Number(r.entries));
      },
    });
  }

  observeRefresh(list: string, outcome: string, seconds: number): void {
    this.seconds.observe(seconds);
    this.total.inc({ list, outcome });
  }
}
