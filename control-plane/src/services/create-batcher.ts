// Group commit for CreateRule: while one commit is in flight, the creates
// that arrive wait and go together in the next one - one transaction and
// one revision for the group, each caller still getting its own rule or
// error. An idle control plane commits a lone create at once; a busy one
// turns N concurrent creates into one revision, so the fan-out to the
// agents (one delta per revision to every agent) no longer caps the create
// rate at the revision rate.
import type { Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { RuleSpec } from '../rules/validate.js';
import type { RuleStore } from '../store/rule-store.js';

interface Pending {
  readonly spec: RuleSpec;
  readonly actor: string;
  readonly resolve: (r: { rule: Rule; revision: bigint }) => void;
  readonly reject: (e: unknown) => void;
}

export class CreateBatcher {
  private readonly queue: Pending[] = [];
  private running = false;

  constructor(
    private readonly store: RuleStore,
    private readonly maxGroup: number,
  ) {}

  submit(spec: RuleSpec, actor: string): Promise<{ rule: Rule; revision: bigint }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ spec, actor, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxGroup);
        try {
          const out = await this.store.createGroup(group);
          out.forEach((o, i) => (o.ok ? group[i]!.resolve({ rule: o.rule, revision: o.revision }) : group[i]!.reject(o.error)));
        } catch (e) {
          for (const p of group) p.reject(e);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
