// The lockout guard (issue 15 part 5): no deny may cut the fleet off from
// its control plane. A deny rule (create, batch, update, ManageAddress
// block, import line) that would drop traffic of a protected address - from
// it (ingress, by source) or to it (egress, by destination) - and any deny
// of a /0 is refused with FAILED_PRECONDITION LOCKOUT_PROTECTED, naming the
// address, why it is protected and how to override: an admin's explicit
// `force`, recorded in the audit log (audit_log.forced).
//
// Protected: loopback, the control plane's listen addresses, the
// operator's management networks (protected-sources.ts), and the address
// every node's Sync stream comes from (kept with the node, so every
// control-plane process knows them: read at most every `refreshMs`, this
// process's own streams at once). The read is made ahead: a check past half
// of refreshMs starts it in the background and goes on with the set it has,
// so an operator's create never waits for it (issue 18: creates while bans
// pour in paid a store round trip every refreshMs); only a set older than
// refreshMs (no check for that long) is waited for.
//
// Selectors do not narrow it: every protected address is protected on
// every node. An agent's own connect address is often another node's path
// to the control plane too (a shared NAT or proxy), and a deny selecting
// only other nodes still drops the control plane's packets there if they
// come from a protected address; the simple rule is the sound one.
// Monitor-mode denies drop nothing and pass unchecked; turning one to
// enforce is an update the guard checks.
import type { Logger } from 'pino';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import type { RuleDirection } from '../../../common/src/policy.js';
import { Action, Mode, type Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { roleAtLeast } from '../auth/roles.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { policyDirection } from '../rules/enums.js';
import type { RuleSpec } from '../rules/validate.js';
import type { CallContext } from '../services/call-context.js';
import type { NodePeer } from '../store/node-peers.js';
import { addressPrefix } from './protected-sources.js';
import { familyName, type ProtectedEntry, ProtectedSet, protectedEntry } from './protected-set.js';

/** A deny the guard stops: its prefix and direction, and the protected entry it would cut off. */
export interface LockoutHit {
  readonly cidr: string;
  readonly direction: RuleDirection;
  /** The protected entry it overlaps; for a /0, the first of its family (loopback). */
  readonly entry: ProtectedEntry;
  /** A deny of a /0: every address of its family. */
  readonly everything: boolean;
}

/** The one decision, for the rule service and the import alike. */
export interface LockoutChecker {
  /** Would an enforce-mode deny of `prefix` in `direction` drop traffic of a protected address? */
  lockoutCheck(prefix: Prefix, direction: RuleDirection): LockoutHit | undefined;
  /** Whether lockoutCheck of the IPv4 prefix `addr`/`len` (addr a u32) finds a hit, without a Prefix (a list's million lines). */
  hitsV4(addr: number, len: number): boolean;
  /** The protected entries' CIDRs, sorted and joined: equal fingerprints, equal decisions. */
  readonly fingerprint: string;
}

export interface PeerSource {
  peers(): Promise<NodePeer[]>;
}

/** How a client asks for the override, for messages. */
const HOW_TO_FORCE = 'an admin can override it with force (fleetwall --force; "force": true in JSON), which is audited';

function checkerOf(set: ProtectedSet): LockoutChecker {
  // A /0 names the first entry of its family (loopback comes first).
  const everything = new Map<number, ProtectedEntry>();
  for (const e of set.entries) if (!everything.has(e.prefix.family)) everything.set(e.prefix.family, e);
  const fingerprint = set.entries
    .map((e) => e.cidr)
    .sort()
    .join(',');
  return {
    fingerprint,
    lockoutCheck(prefix, direction) {
      if (prefix.len === 0) {
        const entry = everything.get(prefix.family) ?? set.entries[0];
        return entry ? { cidr: formatPrefix(prefix), direction, entry, everything: true } : undefined;
      }
      const entry = set.find(prefix);
      return entry ? { cidr: formatPrefix(prefix), direction, entry, everything: false } : undefined;
    },
    hitsV4(addr, len) {
      if (len === 0) return (everything.get(4) ?? set.entries[0]) !== undefined;
      return set.findV4(addr, len) !== undefined;
    },
  };
}

function dropsProtected(action: Action, mode: Mode): boolean {
  return action === Action.ACTION_DENY && mode !== Mode.MODE_MONITOR;
}

/** "covers 192.0.2.1/32, which is protected: the control plane's gRPC listen address (--grpc-host 192.0.2.1)". */
function relation(hit: LockoutHit): string {
  const which = `which is protected: ${hit.entry.why}`;
  if (hit.everything) return `covers every ${familyName(hit.entry.prefix)} address, ${hit.entry.cidr} among them, ${which}`;
  const inside = hit.entry.prefix.len < Number(hit.cidr.slice(hit.cidr.lastIndexOf('/') + 1));
  return `${inside ? 'lies inside' : 'covers'} ${hit.entry.cidr}, ${which}`;
}

/** The audit log's record of one overridden hit. */
export function forcedText(field: string, hit: LockoutHit): string {
  return `${field}: deny ${hit.cidr} ${hit.direction} ${relation(hit)}`;
}

export function lockoutError(field: string, hit: LockoutHit): FleetwallError {
  const traffic = hit.direction === 'egress' ? 'traffic to' : 'traffic from';
  const what = hit.everything
    ? `would drop ${traffic} every ${familyName(hit.entry.prefix)} address, ${hit.entry.cidr} among them, which is protected: ${hit.entry.why}`
    : `would drop ${traffic} ${hit.entry.cidr}, which is protected: ${hit.entry.why}`;
  return new FleetwallError(
    'LOCKOUT_PROTECTED',
    `${field}: a deny of ${hit.cidr} (${hit.direction}) ${what}. Agents could lose their control plane and never receive the rule that undoes it, so it was not stored; narrow the CIDR, or ${HOW_TO_FORCE}`,
    {
      field,
      cidr: hit.cidr,
      direction: hit.direction,
      protected: hit.entry.cidr,
      protected_kind: hit.entry.kind,
      why: hit.entry.why,
      override: 'force',
    },
  );
}

/** force is an admin's: anyone else is refused (ROLE_TOO_LOW), whatever the rule. */
export function requireForceRole(ctx: CallContext): void {
  const p = ctx.principal;
  if (p && roleAtLeast(p.role, 'admin')) return;
  throw new FleetwallError(
    'ROLE_TOO_LOW',
    `force (overriding the lockout guard) needs the admin role; ${p ? `${p.id} has ${p.role}` : `${ctx.actor} has none`}. Send the request without force, or ask an admin`,
    { required_role: 'admin', role: p?.role ?? '', principal: p?.id ?? ctx.actor },
  );
}

export interface LockoutGuardOptions {
  /** How long the nodes' connect addresses read from the store are trusted (other processes' agents). */
  readonly refreshMs: number;
  readonly logger?: Logger;
  /** The clock, ms (tests); performance.now by default. */
  readonly now?: () => number;
}

/** How long this process's own note of a stream's address outlives store reads that miss it. */
const LOCAL_NOTE_MS = 10_000;

export class LockoutGuard {
  /** node -> connect address: from the store, and this process's own streams. */
  private peers = new Map<string, Prefix>();
  /**
   * This process's own streams, noted within the last LOCAL_NOTE_MS: kept
   * over a store read that may have started before their write committed.
   */
  private readonly local = new Map<string, { p: Prefix; at: number }>();
  private set: ProtectedSet | undefined;
  private checkerValue: LockoutChecker | undefined;
  private loadedAt = -Infinity;
  private loading: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly staticEntries: readonly ProtectedEntry[],
    private readonly source: PeerSource,
    private readonly opts: LockoutGuardOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** The protected entries now (static + agents' addresses). */
  async entries(): Promise<readonly ProtectedEntry[]> {
    await this.fresh();
    return this.built().entries;
  }

  /** The checker over the protected set as of now (the store's addresses at most refreshMs old). */
  async checker(): Promise<LockoutChecker> {
    await this.fresh();
    this.built();
    return this.checkerValue!;
  }

  /** A Sync stream of this process: `node` connects from `address` (protected at once). */
  notePeer(node: string, address: string): Prefix | undefined {
    const p = addressPrefix(address);
    if (!p) return undefined;
    this.local.set(node, { p, at: this.now() });
    const old = this.peers.get(node);
    if (!old || formatPrefix(old) !== formatPrefix(p)) {
      this.peers.set(node, p);
      this.set = undefined;
    }
    return p;
  }

  /** The set is good (read less than refreshMs ago): at once, reading ahead past half its life; else after a read. */
  private async fresh(): Promise<void> {
    const age = this.now() - this.loadedAt;
    if (age < this.opts.refreshMs) {
      if (age >= this.opts.refreshMs / 2 && !this.loading)
        this.reload().catch((err: unknown) =>
          this.opts.logger?.warn({ err }, "could not read the nodes' connect addresses ahead; a check past refreshMs will wait for a read"),
        );
      return;
    }
    await this.reload();
  }

  /** One read of the nodes' connect addresses at a time. */
  private reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const started = this.now();
        const rows = await this.source.peers();
        const next = new Map<string, Prefix>();
        for (const r of rows) {
          const p = addressPrefix(r.address);
          if (p) next.set(r.name, p);
        }
        // This process's own recent streams stay (their write may not have been visible to the read).
        for (const [n, { p, at }] of this.local) {
          if (started - at > LOCAL_NOTE_MS) this.local.delete(n);
          else next.set(n, p);
        }
        this.peers = next;
        this.set = undefined;
        this.loadedAt = started;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private built(): ProtectedSet {
    if (this.set) return this.set;
    const byAddr = new Map<string, { p: Prefix; nodes: string[] }>();
    for (const [n, p] of this.peers) {
      const k = formatPrefix(p);
      const e = byAddr.get(k);
      if (e) e.nodes.push(n);
      else byAddr.set(k, { p, nodes: [n] });
    }
    const agents = [...byAddr.values()].map(({ p, nodes }) => {
      nodes.sort();
      const names = nodes.length > 3 ? `${nodes.slice(0, 3).join(', ')} and ${nodes.length - 3} more` : nodes.join(', ');
      return protectedEntry(
        p,
        'agent',
        `the address node${nodes.length > 1 ? 's' : ''} ${names} connect${nodes.length > 1 ? '' : 's'} from`,
      );
    });
    const seen = new Set(this.staticEntries.map((e) => e.cidr));
    this.set = new ProtectedSet([...this.staticEntries, ...agents.filter((a) => !seen.has(a.cidr))]);
    this.checkerValue = checkerOf(this.set);
    return this.set;
  }

  /**
   * New rules (create, batch, ManageAddress block): refuses any that would
   * drop protected traffic unless forced by an admin. Returns the audit
   * text of what a force overrode ('' when nothing was).
   */
  async admitNew(items: readonly { spec: RuleSpec; field: string; force?: boolean }[], force: boolean, ctx: CallContext): Promise<string> {
    if (force || items.some((i) => i.force)) requireForceRole(ctx);
    const denies = items.filter((i) => dropsProtected(i.spec.action, i.spec.mode));
    if (denies.length === 0) return '';
    const checker = await this.checker();
    const forced: string[] = [];
    for (const { spec, field, force: own } of denies) {
      const hit = checker.lockoutCheck(spec.prefix, policyDirection(spec.direction));
      if (!hit) continue;
      if (!(force || own)) throw lockoutError(field, hit);
      forced.push(forcedText(field, hit));
    }
    this.logForced(forced, ctx);
    return forced.join('; ');
  }

  /**
   * An update: refused when it makes the rule drop protected traffic it did
   * not drop before (into a deny, into enforce mode, or into the other
   * direction) unless forced. Synchronous: runs inside the update's
   * transaction against the row it read.
   */
  admitUpdate(checker: LockoutChecker, current: Rule, next: RuleSpec, force: boolean, ctx: CallContext): string {
    if (!dropsProtected(next.action, next.mode)) return '';
    if (dropsProtected(current.action, current.mode) && current.direction === next.direction) return '';
    const hit = checker.lockoutCheck(next.prefix, policyDirection(next.direction));
    if (!hit) return '';
    if (!force) throw lockoutError('rule', hit);
    const text = forcedText(`rule ${current.id}`, hit);
    this.logForced([text], ctx);
    return text;
  }

  private logForced(forced: readonly string[], ctx: CallContext): void {
    if (forced.length > 0) this.opts.logger?.warn({ actor: ctx.actor, forced }, 'lockout guard overridden by force');
  }
}
