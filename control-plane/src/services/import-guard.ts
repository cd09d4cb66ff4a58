// The one decision "may this prefix be written from a list?", shared by
// imports (services/import-rules.ts) and subscribed lists (lists/): in a deny
// list, a prefix that overlaps a local range (private, shared, loopback,
// link-local, "this network": common/src/blocklist/special-ranges.ts) is
// refused as a line (reported with the ranges it overlaps, skipped) unless
// the list allows private ranges. Then the lockout guard
// (lockout/lockout-guard.ts: protected and management addresses, agents'
// connect addresses). prefixCheck() chains the two and says which refused a
// prefix: imports report a lockout refusal as an invalid line and a local
// range as a skipped one; lists hold both.
import { hasLocalOverlap, localOverlaps } from '../../../common/src/blocklist/special-ranges.js';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import type { RuleDirection } from '../../../common/src/policy.js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { type LockoutChecker, lockoutError } from '../lockout/lockout-guard.js';

export interface GuardContext {
  readonly action: Action;
  /** --allow-private / allow_private. */
  readonly allowPrivate: boolean;
}

export interface GuardRefusal {
  /** The line-level reason: LOCAL_RANGE. */
  readonly reason: 'LOCAL_RANGE';
  readonly message: string;
  /** The ranges it overlaps (canonical CIDRs). */
  readonly ranges: readonly string[];
}

/** True when no prefix can be refused (skip the per-prefix check). */
export function guardIsOpen(ctx: GuardContext): boolean {
  return ctx.action !== Action.ACTION_DENY || ctx.allowPrivate;
}

/** Null if `p` may be written; the refusal otherwise. */
export function guardPrefix(p: Prefix, ctx: GuardContext): GuardRefusal | null {
  if (guardIsOpen(ctx) || !hasLocalOverlap(p)) return null;
  const overlaps = localOverlaps(p);
  const cidr = formatPrefix(p);
  const named = overlaps.map((o) => `${o.range.cidr} (${o.range.name}, ${o.range.rfc})`);
  const first = overlaps[0]!;
  const which =
    first.relation === 'covers'
      ? `covers ${named.join(', ')}`
      : first.range.prefix.len === p.len
        ? `is ${named.join(', ')}`
        : `is inside ${named.join(', ')}`;
  return {
    reason: 'LOCAL_RANGE',
    message: `${cidr} ${which}: denying it could cut the fleet off from its own networks; skipped (allow it with --allow-private / allow_private)`,
    ranges: overlaps.map((o) => o.range.cidr),
  };
}

/** Which check refused a prefix, and the line-level reason and message. */
export interface PrefixRefusal {
  readonly check: 'local-range' | 'lockout';
  readonly reason: string;
  readonly message: string;
}

/** The lockout guard's side of the check: an enforce-mode deny list's checker and direction (absent otherwise). */
export interface LockoutContext {
  readonly checker: LockoutChecker;
  readonly direction: RuleDirection;
}

/**
 * The one per-prefix decision of imports and lists: the local-range check
 * (guardPrefix), then the lockout guard. `field` names the prefix in a
 * lockout message ("line 12", "entry"). Null: the prefix may be written.
 */
export function prefixCheck(ctx: GuardContext, lockout?: LockoutContext): (p: Prefix, field: string) => PrefixRefusal | null {
  const open = guardIsOpen(ctx);
  return (p, field) => {
    const local = open ? null : guardPrefix(p, ctx);
    if (local) return { check: 'local-range', reason: local.reason, message: local.message };
    const hit = lockout?.checker.lockoutCheck(p, lockout.direction);
    if (!hit) return null;
    const e = lockoutError(field, hit);
    return { check: 'lockout', reason: e.reason, message: e.message };
  };
}
