// Group commit for CreateRule: while one commit is in flight, the creates
// that arrive wait and go together in the next one - one transaction and
// one revision for the group, each caller still getting its own rule or
// error. An idle control plane commits a lone create at once; a busy one
// turns N concurrent creates into one revision, so the fan-out to the
// agents (one delta per revision to every agent) no longer caps the create
// rate at the revision rate.
//
// A group that is slow to commit (it waits for a lock, say another writer's
// uncommitted row with the same CIDR) does not hold the others back: once the
// groups in flight are all older than STUCK_MS, the waiting creates start
// another group, up to MAX_IN_FLIGHT groups at once.
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

const STUCK_MS = 100;
const MAX_IN_FLIGHT = 4;

export class CreateBatcher {
  private readonly queue: Pending[] = [];
  /** Start times (epoch ms) of the groups committing now. */
  private readonly inFlight = new Set<number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: RuleStore,
    private readonly maxGroup: number,
  ) {}

  submit(spec: RuleSpec, actor: string): Promise<{ rule: Rule; revision: bigint }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ spec, actor, note: currentAuditNote(), resolve, reject });
      this.pump();
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

  /** Starts a group if none is committing, or if every group committing is stuck. */
  private pump(): void {
    if (this.queue.length === 0) return;
    const now = Date.now();
    let youngest = Number.NEGATIVE_INFINITY;
    for (const t of this.inFlight) youngest = Math.max(youngest, t);
    if (this.inFlight.size === 0 || (this.inFlight.size < MAX_IN_FLIGHT && now - youngest >= STUCK_MS)) {
      void this.commit(this.takeGroup(), now);
      if (this.queue.length > 0) this.pump();
      return;
    }
    // Look again when the youngest group in flight turns stuck.
    if (this.timer === undefined && this.inFlight.size < MAX_IN_FLIGHT) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.pump();
        },
        Math.max(1, STUCK_MS - (now - youngest)),
      );
    }
  }

  private async commit(group: Pending[], started: number): Promise<void> {
    // Two groups may start in the same millisecond: keep the key unique.
    let key = started;
    while (this.inFlight.has(key)) key += 0.001;
    this.inFlight.add(key);
    try {
      const out = await this.store.createGroup(group, 'create', group[0]!.note);
      out.forEach((o, i) => (o.ok ? group[i]!.resolve({ rule: o.rule, revision: o.revision }) : group[i]!.reject(o.error)));
    } catch (e) {
      for (const p of group) p.reject(e);
    } finally {
      this.inFlight.delete(key);
      this.pump();
    }
  }
}
