// The agent's failsafe entries (issue 15, the lockout guard), as values:
// which addresses the agent always allows - its control planes' addresses
// and the operator's --failsafe-cidrs - and the agent-local rules that
// install them (an ingress allow, by source, and an egress allow, by
// destination, per entry). Pure; failsafe.ts resolves names and hands the
// rules to the engine.
//
// Calico's failsafe ports are the model (management traffic is always
// allowed, whatever the policy), but fleetwall's failsafes are addresses:
// its data plane matches addresses only (one longest-prefix lookup on the
// source or destination), so "keep the control plane reachable" is an allow
// for the control plane's address, which beats every deny (allow beats deny)
// and the drop default of allowlist mode.
import { CidrError, formatPrefix, type Prefix, parseAddress, parseCidr } from '../../../common/src/cidr.js';
import type { RuleDirection } from '../../../common/src/policy.js';
import { LOCAL_RULE_ID_BASE } from '../reconcile/local-rules.js';
import type { RuleSpec } from '../reconcile/rule-flags.js';

export interface FailsafeEntry {
  readonly prefix: Prefix;
  /** Canonical CIDR. */
  readonly cidr: string;
  /** Why: "control plane cp.example:50051", "--failsafe-cidrs". */
  readonly source: string;
}

export interface FailsafeInputs {
  /** Per --control-plane target, the addresses of its host (an IP literal: itself; a name: what it resolved to). */
  readonly controlPlanes: readonly { readonly target: string; readonly addresses: readonly string[] }[];
  readonly failsafeCidrs: readonly string[];
  /**
   * Loopback addresses get entries only when `lo` is one of the attached
   * interfaces: loopback traffic crosses no other interface.
   */
  readonly loopbackAttached: boolean;
}

/** The host of a --control-plane target ("cp:50051", "[2001:db8::1]:50051"); undefined for a Unix socket. */
export function controlPlaneHost(target: string): string | undefined {
  if (target.startsWith('unix:')) return undefined;
  const i = target.lastIndexOf(':');
  const host = i >= 0 ? target.slice(0, i) : target;
  return host.replace(/^\[|\]$/g, '');
}

/** An address as a host prefix (an IPv4-mapped IPv6 address as IPv4); undefined if it is not one. */
export function hostPrefixOf(text: string): Prefix | undefined {
  let a: ReturnType<typeof parseAddress>;
  try {
    a = parseAddress(text.trim().replace(/%.*$/, ''));
  } catch (e) {
    if (e instanceof CidrError) return undefined;
    throw e;
  }
  const b = a.bytes;
  if (a.family === 6 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return { family: 4, bytes: b.slice(12), len: 32 };
  }
  return { family: a.family, bytes: b, len: a.family === 4 ? 32 : 128 };
}

function isLoopback(p: Prefix): boolean {
  if (p.family === 4) return p.bytes[0] === 127;
  return p.len === 128 && p.bytes.subarray(0, 15).every((x) => x === 0) && p.bytes[15] === 1;
}

/** The failsafe entries, one per CIDR (the first source named). */
export function failsafeEntries(i: FailsafeInputs): FailsafeEntry[] {
  const out = new Map<string, FailsafeEntry>();
  const add = (prefix: Prefix, source: string) => {
    if (isLoopback(prefix) && !i.loopbackAttached) return;
    const cidr = formatPrefix(prefix);
    if (!out.has(cidr)) out.set(cidr, { prefix, cidr, source });
  };
  for (const cp of i.controlPlanes) {
    for (const a of cp.addresses) {
      const p = hostPrefixOf(a);
      if (p) add(p, `control plane ${cp.target}`);
    }
  }
  for (const c of i.failsafeCidrs) add(parseCidr(c), '--failsafe-cidrs');
  return [...out.values()];
}

const DIRECTIONS: readonly RuleDirection[] = ['ingress', 'egress'];

/**
 * The agent-local rules for `entries`: an allow per entry and direction.
 * A rule the agent already has for the same prefix and direction keeps its
 * id (and so its counter slot and journal entry); new ones take ids above
 * the highest in use. `keepOthers`: current rules no entry wants stay (a
 * control-plane name did not resolve: keep what an earlier resolution put
 * there rather than cut the agent off).
 */
export function planLocalRules(current: readonly RuleSpec[], entries: readonly FailsafeEntry[], keepOthers: boolean): RuleSpec[] {
  const key = (cidr: string, d: RuleDirection) => `${d} ${cidr}`;
  const have = new Map(current.map((r) => [key(formatPrefix(r.prefix), r.direction), r]));
  let next = current.reduce((m, r) => (r.id >= m ? r.id + 1n : m), LOCAL_RULE_ID_BASE);
  const out: RuleSpec[] = [];
  const used = new Set<string>();
  for (const e of entries) {
    for (const direction of DIRECTIONS) {
      const k = key(e.cidr, direction);
      if (used.has(k)) continue;
      used.add(k);
      const id = have.get(k)?.id ?? next++;
      out.push({ id, direction, prefix: e.prefix, action: 'allow', mode: 'enforce', expireUnixMs: 0 });
    }
  }
  if (keepOthers) for (const [k, r] of have) if (!used.has(k)) out.push(r);
  return out;
}
