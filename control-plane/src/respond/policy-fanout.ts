// Policies to the agents (issue 18): every process keeps the policies in
// memory (re-read on NOTIFY fleetwall_policy, and every few seconds against
// a missed one) and sends each live Sync stream of its own the PolicySet of
// the policies whose node_selector matches that node's labels: after InSync,
// and again whole whenever that set changes. Whole sets (a node runs 8 at
// most) keep resume and reconnects trivially right: a new stream gets the
// current set, whatever it missed.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { AgentPolicy } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { Labels } from '../rules/selector.js';
import { selectorMatches } from '../rules/selector.js';
import { POLICY_CHANNEL, type PolicyRow, type PolicyStore } from './policy-store.js';
import { policyOfSpec } from './policy-spec.js';

/** What the fan-out needs of a Sync stream (sync/agent-session.ts). */
export interface PolicySession {
  readonly labels: Labels;
  readonly live: boolean;
  sendPolicies(policies: AgentPolicy[]): void;
}

const POLL_MS = 5_000;

function agentPolicyOf(p: PolicyRow): AgentPolicy {
  const api = policyOfSpec(p.spec);
  const banMs = p.spec.banMs;
  return {
    id: p.id,
    revision: p.revision,
    name: p.name,
    match: api.match,
    threshold: api.threshold,
    grouping: api.grouping,
    mode: api.mode,
    banDuration: { seconds: BigInt(Math.floor(banMs / 1000)), nanos: (banMs % 1000) * 1_000_000 },
    maxBansPerSecond: p.spec.maxBansPerSecond,
  };
}

export class PolicyFanout {
  private rows: PolicyRow[] = [];
  private readonly byId = new Map<bigint, PolicyRow>();
  private readonly sent = new WeakMap<PolicySession, string>();
  private unlisten: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loading: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly sql: Sql,
    private readonly store: PolicyStore,
    private readonly sessions: () => Iterable<PolicySession>,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const meta = await this.sql.listen(
      POLICY_CHANNEL,
      () => void this.reload(),
      () => void this.reload(),
    );
    this.unlisten = meta.unlisten;
    await this.reload();
    this.timer = setInterval(() => void this.reload(), POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.loading?.catch(() => undefined);
    await this.unlisten?.().catch(() => undefined);
  }

  policy(id: bigint): PolicyRow | undefined {
    return this.byId.get(id);
  }

  /** By name (a few policies: a scan). */
  policyNamed(name: string): PolicyRow | undefined {
    return this.rows.find((r) => r.name === name);
  }

  /** Re-reads the policies and pushes the sets that changed (one read at a time; a request meanwhile runs one more). */
  reload(): Promise<void> {
    if (this.loading !== undefined) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        try {
          this.rows = await this.store.all();
          this.byId.clear();
          for (const r of this.rows) this.byId.set(r.id, r);
          for (const s of this.sessions()) if (s.live) this.push(s);
        } catch (err) {
          this.log.warn({ err }, 'reading the detection policies failed; keeping the last ones');
        }
      } while (this.again);
    })().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  /** The policies that select a node with `labels`. */
  setFor(labels: Labels): AgentPolicy[] {
    return this.rows.filter((r) => selectorMatches(r.spec.nodeSelector, labels)).map(agentPolicyOf);
  }

  /** Sends `s` its set if it changed since the last one it got (always after InSync: a new session has none). */
  push(s: PolicySession): void {
    const set = this.setFor(s.labels);
    const key = set.map((p) => `${p.id}@${p.revision}`).join(',');
    if (this.sent.get(s) === key) return;
    this.sent.set(s, key);
    s.sendPolicies(set);
  }
}
