// The rule semantics, written once as plain code. This is the reference every
// layer is checked against: the control plane's Explain, the agent's
// compiled kernel entries (after allow-covers-deny pruning) and the BPF
// programs' verdicts must all agree with decide().
//
//  1. Only rules of the packet's direction and address family are considered
//     (ingress: source address; egress: destination address).
//  2. If any ALLOW matches, the packet passes: allow beats deny whatever the
//     prefix lengths. The longest matching allow is the one counted.
//  3. Else, if any DENY matches, the longest matching deny decides: DROP in
//     enforce mode, WOULD_DROP (counted, passed) in monitor mode. Between
//     denies of the same prefix, enforce wins over monitor, then the lowest id.
//  4. Else the node default applies (pass; drop in allowlist mode).

import { type Address, type Prefix, prefixContainsAddress } from './cidr.js';

export type RuleAction = 'deny' | 'allow';
export type RuleMode = 'enforce' | 'monitor';
export type RuleDirection = 'ingress' | 'egress';
export type Verdict = 'pass' | 'drop' | 'would_drop';
export type DefaultAction = 'pass' | 'drop';
export type MatchRole = 'deciding' | 'shadowed_by_allow' | 'shorter_prefix';

export interface PolicyRule {
  readonly id: bigint;
  readonly prefix: Prefix;
  readonly action: RuleAction;
  readonly mode: RuleMode;
  readonly direction: RuleDirection;
}

export interface Decision<R extends PolicyRule = PolicyRule> {
  readonly verdict: Verdict;
  /** The rule whose counter is incremented; undefined when the default applied. */
  readonly deciding?: R;
  /** Every matching rule, longest prefix first, with its role. */
  readonly matches: ReadonlyArray<{ rule: R; role: MatchRole }>;
}

/** Orders candidates of one action: longest prefix, then enforce, then lowest id. */
export function compareCandidates(a: PolicyRule, b: PolicyRule): number {
  if (a.prefix.len !== b.prefix.len) return b.prefix.len - a.prefix.len;
  if (a.mode !== b.mode) return a.mode === 'enforce' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function decide<R extends PolicyRule>(
  rules: Iterable<R>,
  direction: RuleDirection,
  addr: Address,
  defaultAction: DefaultAction = 'pass',
): Decision<R> {
  const matching: R[] = [];
  for (const r of rules) {
    if (r.direction === direction && prefixContainsAddress(r.prefix, addr)) matching.push(r);
  }
  matching.sort(compareCandidates);
  const allows = matching.filter((r) => r.action === 'allow');
  const deciding = allows[0] ?? matching[0];
  const matches = matching.map((rule) => ({
    rule,
    role: (rule === deciding
      ? 'deciding'
      : deciding?.action === 'allow' && rule.action === 'deny'
        ? 'shadowed_by_allow'
        : 'shorter_prefix') as MatchRole,
  }));
  if (!deciding) return { verdict: defaultAction, matches };
  const verdict: Verdict = deciding.action === 'allow' ? 'pass' : deciding.mode === 'enforce' ? 'drop' : 'would_drop';
  return { verdict, deciding, matches };
}
