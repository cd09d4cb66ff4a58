// The one decision "may this prefix be written from a list?", shared by
// imports (services/import-rules.ts) and subscribed lists (lists/): in a deny
// list, a prefix that overlaps a local range (private, shared, loopback,
// link-local, "this network": common/src/blocklist/special-ranges.ts) is
// refused as a line (reported with the ranges it overlaps, skipped) unless
// the list allows private ranges. Its callers then ask the lockout guard
// (lockout/lockout-guard.ts: protected and management addresses, agents'
// connect addresses), whose refusals are reported per line the same way.
import { hasLocalOverlap, localOverlaps } from '../../../common/src/blocklist/special-ranges.js';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';

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
