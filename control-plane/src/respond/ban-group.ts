// One group of bans (issue 18, "bounded under attack"): every ban the
// writer's tick allows, written in ONE transaction = one revision = one
// delta to the agents, however many there are. Per ban, exactly what a ban
// written alone gets:
//   - exempted: an allow rule, the lockout guard or a failsafe entry covers
//     it (ban-exemptions.ts; one query for the whole group): not written;
//   - extended: a ban of this source by this policy is in force: its rule's
//     expire_time moves later, never earlier (one rule, no duplicate);
//   - created: the offence count goes up by one and a deny rule is created
//     for duration x factor^(n-1) (escalation.ts), the policy, node and
//     evidence in its comment;
//   - covered: another rule has this CIDR, direction and selector already;
//   - refused: no room in some node's kernel table (capacity-guard.ts; the
//     group is checked whole, and ban by ban only when it does not fit, so
//     one refused ban never refuses the others).
// Every rule write is audited as `policy:NAME` (per row). Then the merge
// (ban-merge.ts). A failed transaction writes nothing: the caller keeps the
// group queued.
import type { Sql, TransactionSql } from 'postgres';
import type { Logger } from 'pino';
import { formatPrefix, maskBytes, type Prefix } from '../../../common/src/cidr.js';
import { NODE_LABEL } from '../../../common/src/labels.js';
import type { Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { BanScope, SourceGrouping } from '../../../proto/gen/fleetwall/v1/policy.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import { type Labels, selectorKey } from '../rules/selector.js';
import type { CapacityGuard, Placement } from '../services/capacity-guard.js';
import { changeAuditCtes, OP_UPSERT, rowImage } from '../store/change-audit.js';
import { writeTransaction } from '../store/write-transaction.js';
import { tableIndex } from '../sync/rule-cache.js';
import { exemptions } from './ban-exemptions.js';
import { mergeNetworks, type MergeCandidate } from './ban-merge.js';
import { banDurationMs } from './escalation.js';
import type { PolicyRow } from './policy-store.js';

export type BanOutcome = 'created' | 'extended' | 'exempted' | 'covered' | 'refused' | 'gone' | 'merged';

export interface BanEvent {
  readonly policy: string;
  readonly source: string;
  readonly node: string;
  readonly outcome: BanOutcome;
  readonly why?: string;
  readonly ruleId?: bigint;
  readonly expireTime?: Date;
  readonly offences?: number;
}

/** A ban the writer's tick took from a policy's queue. */
export interface BanItem {
  readonly p: PolicyRow;
  readonly node: string;
  readonly d: Detection;
  readonly prefix: Prefix;
}

export interface BanGroupDeps {
  readonly sql: Sql;
  readonly readSql: Sql;
  readonly guard: LockoutGuard | undefined;
  readonly capacity: CapacityGuard | undefined;
  readonly log: Logger;
}

/** A ban being written: its item and what is derived from it. */
export interface Prepared {
  readonly item: BanItem;
  readonly cidr: string;
  readonly selector: Labels;
  readonly selKey: string;
  readonly actor: string;
  /** The network it merges into (the policy merges; a host source): /24 or /64. */
  readonly net: Prefix | undefined;
  readonly netCidr: string | undefined;
}

/** Bits of the network a host source merges into: the NETWORK grouping's. */
export const MERGE_BITS = { 4: 24, 6: 64 } as const;

function prepare(item: BanItem): Prepared {
  const s = item.p.spec;
  const selector: Labels =
    s.scope === BanScope.BAN_SCOPE_NODE ? { [NODE_LABEL]: item.node } : s.scope === BanScope.BAN_SCOPE_SELECTOR ? s.scopeSelector : {};
  const host = item.prefix.len === item.prefix.bytes.length * 8;
  const merges = (s.mergeThreshold ?? 0) >= 2 && s.grouping === SourceGrouping.SOURCE_GROUPING_ADDRESS && host;
  const bits = MERGE_BITS[item.prefix.family];
  const net = merges ? { family: item.prefix.family, bytes: maskBytes(item.prefix.bytes, bits), len: bits } : undefined;
  return {
    item,
    cidr: formatPrefix(item.prefix),
    selector,
    selKey: selectorKey(selector),
    actor: `policy:${item.p.name}`,
    net,
    netCidr: net ? formatPrefix(net) : undefined,
  };
}

interface BanState {
  readonly offences: number;
  readonly rule: { readonly id: bigint; readonly expire: Date | null } | undefined;
}

interface Extension {
  readonly pid: bigint;
  readonly source: string;
  readonly direction: number;
  readonly rule: { readonly id: bigint; readonly expire: Date | null };
  readonly offences: number;
  /** The detection that extends it (node, rates): the group's last for this ban. */
  last: Prepared;
  readonly items: Prepared[];
}

const keyOf = (pid: bigint, source: string) => `${pid}|${source}`;

/** The ban rows (locked, in key order) and their rules in force (locked). */
async function banStates(tx: TransactionSql, keys: { pid: bigint; source: string; dir: number }[]): Promise<Map<string, BanState>> {
  const rows = await tx.unsafe<{ k: number; offences: number; rule_id: bigint | null }[]>(
    `select x.k, b.offences, b.rule_id
     from jsonb_to_recordset($1::text::jsonb) as x(k int, pid bigint, src text, dir smallint)
     join bans b on b.policy_id = x.pid and b.source = x.src::cidr and b.direction = x.dir
     order by b.policy_id, b.source, b.direction
     for update of b`,
    [JSON.stringify(keys.map((k, i) => ({ k: i, pid: k.pid.toString(), src: k.source, dir: k.dir })))] as never[],
  );
  const ids = rows.flatMap((r) => (r.rule_id === null ? [] : [r.rule_id.toString()]));
  const rules = ids.length
    ? await tx<{ id: bigint; expire_time: Date | null }[]>`
        select id, expire_time from rules where id = any(${ids}::bigint[]) order by id for update`
    : [];
  const byId = new Map(rules.map((r) => [r.id, r]));
  const out = new Map<string, BanState>();
  for (const r of rows) {
    const k = keys[r.k]!;
    const rule = r.rule_id === null ? undefined : byId.get(r.rule_id);
    out.set(keyOf(k.pid, k.source), { offences: Number(r.offences), rule: rule ? { id: rule.id, expire: rule.expire_time } : undefined });
  }
  return out;
}

export interface NewBanRule {
  readonly cidr: string;
  readonly direction: number;
  readonly selector: Labels;
  readonly selKey: string;
  readonly until: Date;
  readonly comment: string;
  readonly actor: string;
}

/** Inserts deny rules (with change-log and audit rows); the id of each inserted, undefined where another rule holds the key. */
export async function insertBanRules(tx: TransactionSql, writeId: bigint, rules: readonly NewBanRule[]): Promise<(bigint | undefined)[]> {
  const out: (bigint | undefined)[] = rules.map(() => undefined);
  if (rules.length === 0) return out;
  const rows = await tx.unsafe<{ k: number; id: bigint }[]>(
    `with x as (select * from jsonb_to_recordset($1::text::jsonb)
                  as x(k int, cidr text, direction smallint, selector jsonb, selector_key text, expire_time timestamptz, comment text, actor text)),
     ins as (
       insert into rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by)
       select x.cidr::cidr, 1, x.direction, x.selector, x.selector_key, 1, x.expire_time, x.comment, now(), now(), $2::bigint, x.actor
       from x order by x.k
       on conflict (cidr, direction, selector_key) do nothing returning *),
     ${changeAuditCtes({ rows: 'ins', writeId: '$2::bigint', actor: 'ins.created_by', op: OP_UPSERT, action: 'rule.create', after: rowImage('ins') })}
     select x.k, ins.id from ins join x on ins.cidr = x.cidr::cidr and ins.direction = x.direction and ins.selector_key = x.selector_key`,
    [
      JSON.stringify(
        rules.map((r, k) => ({
          k,
          cidr: r.cidr,
          direction: r.direction,
          selector: r.selector,
          selector_key: r.selKey,
          expire_time: r.until.toISOString(),
          comment: r.comment,
          actor: r.actor,
        })),
      ),
      writeId.toString(),
    ] as never[],
  );
  for (const r of rows) out[r.k] = r.id;
  return out;
}

export interface BanRowWrite {
  readonly pid: bigint;
  readonly policy: string;
  readonly source: string;
  readonly direction: number;
  readonly ruleId: bigint;
  readonly node: string;
  readonly offences: number;
  readonly until: Date;
  readonly pps: number;
  readonly bps: number;
}

/** Creates or replaces ban rows (a new ban of a source: its rule, offences, expiry, evidence). */
export async function upsertBanRows(tx: TransactionSql, rows: readonly BanRowWrite[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.unsafe(
    `insert into bans (policy_id, policy, source, direction, rule_id, node, offences, expire_time, pps, bps)
     select x.pid, x.policy, x.src::cidr, x.dir, x.rule_id, x.node, x.offences, x.until, x.pps, x.bps
     from jsonb_to_recordset($1::text::jsonb)
       as x(pid bigint, policy text, src text, dir smallint, rule_id bigint, node text, offences int, until timestamptz, pps float8, bps float8)
     on conflict (policy_id, source, direction) do update set rule_id = excluded.rule_id, node = excluded.node, offences = excluded.offences,
       expire_time = excluded.expire_time, pps = excluded.pps, bps = excluded.bps, last_time = now()`,
    [
      JSON.stringify(
        rows.map((r) => ({
          pid: r.pid.toString(),
          policy: r.policy,
          src: r.source,
          dir: r.direction,
          rule_id: r.ruleId.toString(),
          node: r.node,
          offences: r.offences,
          until: r.until.toISOString(),
          pps: r.pps,
          bps: r.bps,
        })),
      ),
    ] as never[],
  );
}

/** Moves the rules' expiry later (audited rule.update with before and after) and the ban rows with them. */
async function extendBans(tx: TransactionSql, writeId: bigint, ext: readonly { e: Extension; until: Date }[]): Promise<number> {
  if (ext.length === 0) return 0;
  const [r] = await tx.unsafe<{ n: number }[]>(
    `with x as (select * from jsonb_to_recordset($1::text::jsonb) as x(id bigint, until timestamptz, actor text)),
     old as (select r.id, ${rowImage('r')} as j from rules r join x on x.id = r.id),
     u as (update rules r set expire_time = x.until, update_time = now(), write_id = $2::bigint from x where r.id = x.id returning r.*),
     ${changeAuditCtes({
       rows: 'u',
       writeId: '$2::bigint',
       actor: '(select x.actor from x where x.id = u.id)',
       op: OP_UPSERT,
       action: 'rule.update',
       before: '(select old.j from old where old.id = u.id)',
       after: rowImage('u'),
     })}
     select count(*)::int as n from u`,
    [
      JSON.stringify(ext.map(({ e, until }) => ({ id: e.rule.id.toString(), until: until.toISOString(), actor: e.last.actor }))),
      writeId.toString(),
    ] as never[],
  );
  await tx.unsafe(
    `update bans b set node = x.node, expire_time = x.until, pps = x.pps, bps = x.bps, last_time = now()
     from jsonb_to_recordset($1::text::jsonb) as x(pid bigint, src text, dir smallint, node text, until timestamptz, pps float8, bps float8)
     where b.policy_id = x.pid and b.source = x.src::cidr and b.direction = x.dir`,
    [
      JSON.stringify(
        ext.map(({ e, until }) => ({
          pid: e.pid.toString(),
          src: e.source,
          dir: e.direction,
          node: e.last.item.node,
          until: until.toISOString(),
          pps: e.last.item.d.packetsPerSecond,
          bps: e.last.item.d.bytesPerSecond,
        })),
      ),
    ] as never[],
  );
  return r!.n;
}

/** Which of `creates` fit the nodes' tables: the whole group at once, else one by one (a refused one never refuses the next). */
async function capacityCheck(capacity: CapacityGuard | undefined, creates: readonly Prepared[]): Promise<Map<Prepared, string>> {
  const refused = new Map<Prepared, string>();
  if (!capacity || creates.length === 0) return refused;
  const placement = (c: Prepared): Placement => ({ selector: c.selector, table: tableIndex(c.item.p.spec.direction, c.cidr), count: 1 });
  const add = (agg: Map<string, Placement>, c: Prepared) => {
    const pl = placement(c);
    const k = `${c.selKey}|${pl.table}`;
    const had = agg.get(k);
    agg.set(k, { ...pl, count: (had?.count ?? 0) + 1 });
  };
  const isFull = (err: unknown) => err instanceof FleetwallError && err.reason === 'CAPACITY_EXCEEDED';
  const all = new Map<string, Placement>();
  for (const c of creates) add(all, c);
  try {
    await capacity.check([...all.values()], 'ban');
    return refused;
  } catch (err) {
    if (!isFull(err)) throw err;
  }
  const accepted = new Map<string, Placement>();
  for (const c of creates) {
    const next = new Map(accepted);
    add(next, c);
    try {
      await capacity.check([...next.values()], 'ban');
      accepted.clear();
      for (const [k, v] of next) accepted.set(k, v);
    } catch (err) {
      if (!isFull(err)) throw err;
      refused.set(c, (err as Error).message);
    }
  }
  return refused;
}

function event(pr: Prepared, outcome: BanOutcome, more: Partial<BanEvent> = {}): BanEvent {
  return { policy: pr.item.p.name, source: pr.cidr, node: pr.item.node, outcome, ...more };
}

export interface GroupResult {
  /** One per item, in order, then one per merge. */
  readonly events: BanEvent[];
  readonly revision: bigint;
}

/** Writes `items` (exemptions first, then one transaction); throws when the transaction fails (nothing written). */
export async function writeBanGroup(deps: BanGroupDeps, items: readonly BanItem[]): Promise<GroupResult> {
  const t0 = performance.now();
  const prepared = items.map(prepare);
  const why = await exemptions(
    deps.readSql,
    deps.guard,
    prepared.map((pr) => ({ prefix: pr.item.prefix, cidr: pr.cidr, direction: pr.item.p.spec.direction })),
  );
  const events: (BanEvent | undefined)[] = prepared.map((pr, i) => (why[i] ? event(pr, 'exempted', { why: why[i] }) : undefined));
  const todo = prepared.filter((_, i) => !why[i]);
  if (todo.length === 0) return { events: events as BanEvent[], revision: 0n };
  const index = new Map(prepared.map((pr, i) => [pr, i]));
  const t1 = performance.now();
  const policies = [...new Set(todo.map((t) => t.actor))];
  const res = await writeTransaction(deps.sql, policies.join(','), 'ban', async (tx, writeId) => {
    const out = new Map<Prepared, BanEvent>();
    const now = (await tx<{ now: Date }[]>`select now() as now`)[0]!.now;
    const keys = new Map<string, { pid: bigint; source: string; dir: number }>();
    for (const t of todo) {
      const pid = t.item.p.id;
      const dir = t.item.p.spec.direction;
      keys.set(keyOf(pid, t.cidr), { pid, source: t.cidr, dir });
      if (t.netCidr) keys.set(keyOf(pid, t.netCidr), { pid, source: t.netCidr, dir });
    }
    const states = await banStates(tx, [...keys.values()]);
    const extensions = new Map<string, Extension>();
    const creates: Prepared[] = [];
    for (const t of todo) {
      const pid = t.item.p.id;
      const netKey = t.netCidr ? keyOf(pid, t.netCidr) : undefined;
      const net = netKey ? states.get(netKey) : undefined;
      const ownKey = keyOf(pid, t.cidr);
      const own = states.get(ownKey);
      const [k, st, source] = net?.rule ? [netKey!, net, t.netCidr!] : [ownKey, own, t.cidr];
      if (st?.rule) {
        const e = extensions.get(k);
        if (e) {
          e.items.push(t);
          e.last = t;
        } else
          extensions.set(k, {
            pid,
            source,
            direction: t.item.p.spec.direction,
            rule: st.rule,
            offences: st.offences,
            last: t,
            items: [t],
          });
      } else creates.push(t);
    }
    // A ban in force: extend it (the same offence), never shorten it.
    const moved: { e: Extension; until: Date }[] = [];
    for (const e of extensions.values()) {
      const until = new Date(now.getTime() + banDurationMs(e.last.item.p.spec, e.offences));
      const later = !(e.rule.expire && e.rule.expire >= until);
      if (later) moved.push({ e, until });
      for (const t of e.items)
        out.set(
          t,
          event(t, 'extended', {
            ruleId: e.rule.id,
            expireTime: later ? until : (e.rule.expire ?? until),
            offences: e.offences,
            ...(e.source !== t.cidr ? { why: `inside the network ban ${e.source}` } : {}),
          }),
        );
    }
    let changes = await extendBans(tx, writeId, moved);
    // New bans: one per rule key (two policies banning one source alike: the second is covered), then capacity.
    const seen = new Set<string>();
    const fresh: Prepared[] = [];
    for (const c of creates) {
      const rk = `${c.cidr}|${c.item.p.spec.direction}|${c.selKey}`;
      const offences = (states.get(keyOf(c.item.p.id, c.cidr))?.offences ?? 0) + 1;
      if (seen.has(rk)) out.set(c, event(c, 'covered', { offences: offences - 1 }));
      else {
        seen.add(rk);
        fresh.push(c);
      }
    }
    const refused = await capacityCheck(deps.capacity, fresh);
    const writing = fresh.filter((c) => {
      const msg = refused.get(c);
      if (msg !== undefined) out.set(c, event(c, 'refused', { why: msg, offences: states.get(keyOf(c.item.p.id, c.cidr))?.offences ?? 0 }));
      return msg === undefined;
    });
    const rules = writing.map((c) => {
      const s = c.item.p.spec;
      const d = c.item.d;
      const offences = (states.get(keyOf(c.item.p.id, c.cidr))?.offences ?? 0) + 1;
      const evidence = `${Math.round(d.packetsPerSecond)} pkt/s, ${Math.round(d.bytesPerSecond)} B/s over ${s.windowMs}ms`;
      return {
        c,
        offences,
        rule: {
          cidr: c.cidr,
          direction: s.direction,
          selector: c.selector,
          selKey: c.selKey,
          until: new Date(now.getTime() + banDurationMs(s, offences)),
          comment: `policy ${c.item.p.name}: detected on node ${c.item.node}, ${evidence}; offence ${offences}`,
          actor: c.actor,
        },
      };
    });
    const ids = await insertBanRules(
      tx,
      writeId,
      rules.map((r) => r.rule),
    );
    const rows: BanRowWrite[] = [];
    const created: MergeCandidate[] = [];
    rules.forEach(({ c, offences, rule }, i) => {
      const id = ids[i];
      if (id === undefined) {
        out.set(c, event(c, 'covered', { offences: offences - 1 }));
        return;
      }
      const d = c.item.d;
      rows.push({
        pid: c.item.p.id,
        policy: c.item.p.name,
        source: c.cidr,
        direction: rule.direction,
        ruleId: id,
        node: c.item.node,
        offences,
        until: rule.until,
        pps: d.packetsPerSecond,
        bps: d.bytesPerSecond,
      });
      out.set(c, event(c, 'created', { ruleId: id, expireTime: rule.until, offences }));
      if (c.net) created.push({ pr: c, netState: states.get(keyOf(c.item.p.id, c.netCidr!)) });
    });
    await upsertBanRows(tx, rows);
    changes += ids.filter((id) => id !== undefined).length;
    const merged = await mergeNetworks(tx, writeId, now, deps.guard, created);
    changes += merged.changes;
    return { value: { out, merges: merged.events }, changes };
  });
  for (const [pr, e] of res.value.out) events[index.get(pr)!] = e;
  const all = [...(events as BanEvent[]), ...res.value.merges];
  const tally: Record<string, number> = {};
  for (const e of all) tally[e.outcome] = (tally[e.outcome] ?? 0) + 1;
  deps.log.info(
    {
      bans: items.length,
      ...tally,
      revision: res.revision.toString(),
      exemptionsMs: Math.round(t1 - t0),
      transactionMs: Math.round(performance.now() - t1),
    },
    'ban group',
  );
  for (const e of all)
    if (e.outcome === 'refused') deps.log.warn({ ...e, ruleId: undefined }, "ban refused: no room in a node's kernel table");
    else if (e.outcome === 'exempted')
      deps.log.info({ policy: e.policy, source: e.source, node: e.node, why: e.why }, 'detection exempted: not banned');
  return { events: all, revision: res.revision };
}
