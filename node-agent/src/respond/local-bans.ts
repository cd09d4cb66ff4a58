// The responder's local bans as agent-local deny rules (issue 18), pure:
// the current ban rules plus new bans give the wanted set. A ban of a group
// already banned keeps its rule id (so its counter slot and journal entry)
// and the later expiry; ids are taken from BAN_RULE_ID_BASE up; expired
// ones are left out (the engine's expiry removes them on time anyway, also
// while disconnected: every ban has its expiry). At most `max` are kept (the
// ones expiring first give way): a flood cannot grow the agent's rules.

import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import { BAN_RULE_ID_BASE } from '../reconcile/local-rules.js';
import type { RuleSpec } from '../reconcile/rule-flags.js';
import type { LocalBan } from './evaluator.js';

export const MAX_LOCAL_BANS = 4096;

function prefixOf(b: LocalBan): Prefix {
  const bytes = new Uint8Array(b.family === 4 ? 4 : 16);
  bytes.set(b.addr.subarray(0, bytes.length));
  return { family: b.family, bytes, len: b.len };
}

const keyOf = (direction: string, p: Prefix) => `${direction} ${formatPrefix(p)}`;

export function planBanRules(current: readonly RuleSpec[], add: readonly LocalBan[], nowMs: number, max = MAX_LOCAL_BANS): RuleSpec[] {
  const byKey = new Map<string, RuleSpec>();
  let next = BAN_RULE_ID_BASE;
  for (const r of current) {
    if (r.id >= next) next = r.id + 1n;
    if (r.expireUnixMs !== 0 && r.expireUnixMs <= nowMs) continue;
    byKey.set(keyOf(r.direction, r.prefix), r);
  }
  for (const b of add) {
    const prefix = prefixOf(b);
    const k = keyOf(b.direction, prefix);
    const have = byKey.get(k);
    if (have) {
      if (b.expireUnixMs > have.expireUnixMs) byKey.set(k, { ...have, expireUnixMs: b.expireUnixMs });
      continue;
    }
    byKey.set(k, { id: next++, direction: b.direction, prefix, action: 'deny', mode: 'enforce', expireUnixMs: b.expireUnixMs });
  }
  const out = [...byKey.values()];
  if (out.length > max) out.sort((a, b) => b.expireUnixMs - a.expireUnixMs).splice(max);
  return out;
}
