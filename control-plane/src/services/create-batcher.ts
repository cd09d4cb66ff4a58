// Group commit for CreateRule: while one commit is in flight, the creates
// that arrive wait and go together in the next one - one transaction and
// one revision for the group, each caller still getting its own rule or
// error. An idle control plane commits a lone create at once; a busy one
// turns N concurrent creates into one revision, so the fan-out to the
// agents (one delta per revision to every agent) no longer caps the create
// rate at the revision rate.
import type { Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { RuleSpec } from '../rules/validate.js';
import { currentAuditNote } from '../store/audit-note.js';
import type { RuleStore } from '../store/rule-store.js';

interface Pending {
  readonly spec: RuleSpec;
  readonly actor: string;
  /** The caller's audit note (audit-note.ts), taken at submit: the group commits in another caller's context. */
  readonly note: string;
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
      this.queue.push({ spec, actor, note: currentAuditNote(), resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  /** Up to maxGroup waiting creates with the first one's note (a statement carries one note), in arrival order. */
  private takeGroup(): Pending[] {
    const note = this.queue[0]!.note;
    if (this.queue.every((p) => p.note === note)) return this.queue.splice(0, this.maxGroup);
    const group: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of this.queue) (p.note === note && group.length < this.maxGroup ? group : rest).push(p);
    this.queue.splice(0, this.queue.length, ...rest);
    return group;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup();
        try {
          const out = await this.store.createGroup(group, 'create', group[0]!.note);
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
