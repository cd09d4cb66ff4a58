// The /24 merge (issue 18: "many bans inside one /24 may be merged into the
// /24 when the policy allows"), inside a ban group's transaction. A policy
// with merge_threshold N (grouping ADDRESS only): when a new ban of a host
// source leaves N or more bans of that policy in force (same direction and
// selector) inside its network - the NETWORK grouping's, /24 for IPv4 and
// /64 for IPv6 (an IPv6 host's /64 is what one subscriber or one machine
// gets: a /48 would take in whole sites) - they are replaced by one ban of
// the network: a deny rule expiring no sooner than any of them (nor than a
// new offence of the network would), the members' rules deleted (audited
// rule.delete as policy:NAME), their ban rows kept without a rule (their
// offences count on). A network that holds an allowed, protected or failsafe
// address is never merged (ban-exemptions.ts, overlap), nor one another rule
// already holds. Later detections inside the network extend its ban
// (ban-group.ts).
import type { TransactionSql } from 'postgres';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import { changeAuditCtes, OP_DELETE, rowImage } from '../store/change-audit.js';
import { exemptions } from './ban-exemptions.js';
import { type BanEvent, insertBanRules, type Prepared, upsertBanRows } from './ban-group.js';
import { banDurationMs } from './escalation.js';

export interface MergeCandidate {
  /** A ban just created, of a host source whose policy merges. */
  readonly pr: Prepared;
  /** The network's ban row (none in force: else the source's ban had extended it). */
  readonly netState: { readonly offences: number } | undefined;
}

export async function mergeNetworks(
  tx: TransactionSql,
  writeId: bigint,
  now: Date,
  guard: LockoutGuard | undefined,
  created: readonly MergeCandidate[],
): Promise<{ events: BanEvent[]; changes: number }> {
  const events: BanEvent[] = [];
  let changes = 0;
  // One candidate per (policy, network, selector): the group's last detection in it.
  const nets = new Map<string, MergeCandidate>();
  for (const c of created) nets.set(`${c.pr.item.p.id}|${c.pr.netCidr}|${c.pr.selKey}`, c);
  const todo = [...nets.values()].sort((a, b) => (a.pr.netCidr! < b.pr.netCidr! ? -1 : a.pr.netCidr! > b.pr.netCidr! ? 1 : 0));
  for (const { pr, netState } of todo) {
    const p = pr.item.p;
    const s = p.spec;
    const hostBits = pr.item.prefix.bytes.length * 8;
    const members = await tx<{ rule_id: bigint; expire_time: Date | null }[]>`
      select b.rule_id, r.expire_time from bans b join rules r on r.id = b.rule_id
      where b.policy_id = ${p.id.toString()}::bigint and b.direction = ${s.direction} and b.source <<= ${pr.netCidr!}::cidr
        and masklen(b.source) = ${hostBits} and r.selector_key = ${pr.selKey}
      order by b.source
      for update of b, r`;
    if (members.length < (s.mergeThreshold ?? 0)) continue;
    const [why] = await exemptions(tx, guard, [{ prefix: pr.net!, cidr: pr.netCidr!, direction: s.direction }], true);
    if (why) continue;
    const offences = (netState?.offences ?? 0) + 1;
    let until = now.getTime() + banDurationMs(s, offences);
    for (const m of members) if (m.expire_time && m.expire_time.getTime() > until) until = m.expire_time.getTime();
    const untilDate = new Date(until);
    const [id] = await insertBanRules(tx, writeId, [
      {
        cidr: pr.netCidr!,
        direction: s.direction,
        selector: pr.selector,
        selKey: pr.selKey,
        until: untilDate,
        comment: `policy ${p.name}: ${members.length} banned sources in ${pr.netCidr} merged (merge_threshold ${s.mergeThreshold}); offence ${offences}`,
        actor: pr.actor,
      },
    ]);
    // Another rule holds the network (an operator's deny, say): the members stay as they are.
    if (id === undefined) continue;
    const ids = members.map((m) => m.rule_id.toString());
    const [del] = await tx.unsafe<{ n: number }[]>(
      `with d as (delete from rules where id = any($1::bigint[]) returning *),
       ${changeAuditCtes({ rows: 'd', writeId: '$2::bigint', actor: '$3', op: OP_DELETE, action: 'rule.delete', before: rowImage('d') })}
       select count(*)::int as n from d`,
      [`{${ids.join(',')}}`, writeId.toString(), pr.actor] as never[],
    );
    await tx`update bans set rule_id = null where rule_id = any(${ids}::bigint[])`;
    await upsertBanRows(tx, [
      {
        pid: p.id,
        policy: p.name,
        source: pr.netCidr!,
        direction: s.direction,
        ruleId: id,
        node: pr.item.node,
        offences,
        until: untilDate,
        pps: pr.item.d.packetsPerSecond,
        bps: pr.item.d.bytesPerSecond,
      },
    ]);
    changes += 1 + del!.n;
    events.push({
      policy: p.name,
      source: pr.netCidr!,
      node: pr.item.node,
      outcome: 'merged',
      why: `${members.length} bans of this policy inside ${pr.netCidr} merged into one`,
      ruleId: id,
      expireTime: untilDate,
      offences,
    });
  }
  return { events, changes };
}
