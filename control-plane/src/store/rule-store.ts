// Rules in Postgres: every write is one transaction and one revision
// (write-transaction.ts) with its change-log and audit rows
// (change-audit.ts); reads join the revision that last wrote each rule.
import type { Sql, TransactionSql } from 'postgres';
import type { Address } from '../../../common/src/cidr.js';
import { formatAddress } from '../../../common/src/cidr.js';
import type { Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { describeEnums } from '../rules/enums.js';
import type { RuleSpec } from '../rules/validate.js';
import { changeAuditCtes, OP_DELETE, OP_UPSERT, rowImage } from './change-audit.js';
import { type RuleRow, canonicalFromPg, ruleFromRow } from './rule-row.js';
import { type RevisionKind, retryWrite, revisionCtes, writeTransaction } from './write-transaction.js';
import { applyAuditNote, currentAuditNote } from './audit-note.js';
import { applyAuditForced, currentAuditForced } from './audit-forced.js';

export interface RuleFilter {
  readonly action?: number;
  readonly direction?: number;
  readonly selector?: Readonly<Record<string, string>>;
  readonly text?: string;
  readonly coversAddress?: Address;
}

export type CreateOutcome =
  | { readonly ok: true; readonly rule: Rule; readonly revision: bigint }
  | { readonly ok: false; readonly error: FleetwallError };

export interface Committed<T> {
  readonly value: T;
  readonly revision: bigint;
}

function specJson(s: RuleSpec) {
  return {
    cidr: s.cidr,
    action: s.action,
    direction: s.direction,
    selector: s.selector,
    selector_key: s.selectorKey,
    mode: s.mode,
    expire_time: s.expireTime ? s.expireTime.toISOString() : null,
    comment: s.comment,
  };
}

function identity(cidr: string, direction: number, selKey: string): string {
  return `${cidr}|${direction}|${selKey}`;
}

function describeExisting(r: { id: bigint; cidr: string; action: number; direction: number; mode: number; selector_key: string }): string {
  const [action, ...rest] = describeEnums(r.action, r.direction, r.mode).split(', ');
  return `rule ${r.id} (${action} ${canonicalFromPg(r.cidr)}, ${rest.join(', ')}${r.selector_key === '{}' ? '' : `, selector ${r.selector_key}`})`;
}

export function duplicateError(
  existing: { id: bigint; cidr: string; action: number; direction: number; mode: number; selector_key: string },
  field: string,
): FleetwallError {
  return new FleetwallError(
    'DUPLICATE_RULE',
    `${field}: ${describeExisting(existing)} already has this CIDR, direction and selector; update or delete rule ${existing.id} instead`,
    { field, existing_rule_id: existing.id.toString(), existing_action: existing.action === 2 ? 'ACTION_ALLOW' : 'ACTION_DENY' },
  );
}

/** Escapes a value for COPY ... FROM STDIN (text format). */
export function copyText(v: string): string {
  return v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

/**
 * "Rules whose CIDR contains the address $N": the partial GiST index for
 * prefixes shorter than a host, the identity btree for host entries.
 */
export function coversSql(param: string): string {
  return `((r.cidr >>= ${param}::inet and masklen(r.cidr) < (case family(r.cidr) when 4 then 32 else 128 end)) or r.cidr = ${param}::inet::cidr)`;
}

const EXPIRY_ACTOR = 'system:expiry';

/**
 * Group commit (createGroup) in one statement, the write protocol's steps in
 * order: a write_id, the inserts with their change-log and audit rows, then -
 * ordered after the insert because it reads its result - the revision
 * (revisionCtes: bump, revisions row, NOTIFY), only if anything was inserted.
 * $1 the rules (JSON, each with its own actor), $2 the revision's actor, $3 its kind.
 */
const GROUP_COMMIT = `with w as (select nextval('write_id_seq') as id),
   ins as (
     insert into rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by)
     select x.cidr::cidr, x.action, x.direction, x.selector, x.selector_key, x.mode, x.expire_time, x.comment, now(), now(), w.id, x.actor
     from jsonb_to_recordset($1::text::jsonb) as x(cidr text, action smallint, direction smallint, selector jsonb, selector_key text, mode smallint, expire_time timestamptz, comment text, actor text), w
     on conflict (cidr, direction, selector_key) do nothing
     returning *),
   ${changeAuditCtes({ rows: 'ins', writeId: 'ins.write_id', actor: 'ins.created_by', op: OP_UPSERT, action: 'rule.create', after: rowImage('ins') })},
   ${revisionCtes({ writeId: '(select id from w)', actor: '$2', kind: '$3', changeCount: '(select count(*) from ins)', onlyIf: 'exists (select 1 from ins)' })}
   select ins.id, ins.cidr::text as cidr, ins.action, ins.direction, ins.selector, ins.selector_key, ins.mode, ins.expire_time,
          ins.comment, ins.create_time, ins.update_time, ins.write_id, ins.created_by, rv.revision
   from ins, rv`;

const RULE_SELECT =
  'r.id, r.cidr::text as cidr, r.action, r.direction, r.selector, r.selector_key, r.mode, r.expire_time, r.comment, r.create_time, r.update_time, r.write_id, r.created_by, v.revision, ' +
  // A list's rule shows its list (lists/): "list:NAME".
  "(select 'list:' || l.name from lists l where l.id = r.list_id) as source";

export class RuleStore {
  constructor(
    private readonly sql: Sql,
    /** Reads (get, list, covering): another pool, so they never wait for a write's connection. */
    private readonly readSql: Sql = sql,
  ) {}

  async currentRevision(): Promise<bigint> {
    const [r] = await this.readSql<{ value: bigint }[]>`select value from revision_counter where id = 1`;
    return r!.value;
  }

  async get(id: bigint): Promise<Rule | undefined> {
    const rows = await this.readSql.unsafe<RuleRow[]>(
      `select ${RULE_SELECT} from rules r join revisions v on v.write_id = r.write_id where r.id = $1`,
      [id.toString()],
    );
    return rows[0] ? ruleFromRow(rows[0]) : undefined;
  }

  /**
   * Inserts rules in one revision. All or nothing: a rule whose (cidr,
   * direction, selector) exists, or repeats an earlier entry, rejects all
   * with DUPLICATE_RULE naming the existing rule. `fields` names each entry
   * in messages ("rule", "requests[3].rule").
   */
  async create(specs: readonly RuleSpec[], fields: readonly string[], actor: string, kind: RevisionKind): Promise<Committed<Rule[]>> {
    // Duplicates inside the request.
    const seen = new Map<string, number>();
    specs.forEach((s, i) => {
      const k = identity(s.cidr, s.direction, s.selectorKey);
      const prev = seen.get(k);
      if (prev !== undefined) {
        throw new FleetwallError(
          'DUPLICATE_RULE',
          `${fields[i]}: same CIDR ${s.cidr}, direction and selector as ${fields[prev]} in this batch; send each rule once`,
          { field: fields[i]!, duplicate_of: fields[prev]! },
        );
      }
      seen.set(k, i);
    });
    if (specs.length === 1) return this.createOne(specs[0]!, fields[0]!, actor, kind);
    const res = await writeTransaction(this.sql, actor, kind, async (tx, w) => {
      const wid = w.toString();
      const inserted = await tx.unsafe<RuleRow[]>(
        `with ins as (
           insert into rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by)
           select x.cidr::cidr, x.action, x.direction, x.selector, x.selector_key, x.mode, x.expire_time, x.comment, now(), now(), $2::bigint, $3
           from jsonb_to_recordset($1::text::jsonb) as x(cidr text, action smallint, direction smallint, selector jsonb, selector_key text, mode smallint, expire_time timestamptz, comment text)
           on conflict (cidr, direction, selector_key) do nothing
           returning *),
         ${changeAuditCtes({ rows: 'ins', writeId: '$2::bigint', actor: '$3', op: OP_UPSERT, action: 'rule.create', after: rowImage('ins') })}
         select id, cidr::text as cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by from ins`,
        [JSON.stringify(specs.map(specJson)), wid, actor] as never[],
      );
      if (inserted.length !== specs.length) {
        const got = new Set(inserted.map((r) => identity(canonicalFromPg(r.cidr), r.direction, r.selector_key)));
        const idx = specs.findIndex((s) => !got.has(identity(s.cidr, s.direction, s.selectorKey)));
        const s = specs[idx]!;
        const [existing] = await tx<{ id: bigint; cidr: string; action: number; direction: number; mode: number; selector_key: string }[]>`
          select id, cidr::text as cidr, action, direction, mode, selector_key from rules
          where cidr = ${s.cidr}::cidr and direction = ${s.direction} and selector_key = ${s.selectorKey}`;
        if (existing) throw duplicateError(existing, fields[idx]!);
        // The conflicting row vanished (deleted concurrently): retry.
        throw Object.assign(new Error('duplicate vanished'), { code: '40001' });
      }
      // Return in request order.
      const byKey = new Map(inserted.map((r) => [identity(canonicalFromPg(r.cidr), r.direction, r.selector_key), r]));
      return { value: specs.map((s) => byKey.get(identity(s.cidr, s.direction, s.selectorKey))!), changes: inserted.length };
    });
    return { value: res.value.map((r) => ruleFromRow(r, res.revision)), revision: res.revision };
  }

  /** One rule, all or nothing (BatchCreate of one entry). */
  private async createOne(s: RuleSpec, field: string, actor: string, kind: RevisionKind): Promise<Committed<Rule[]>> {
    const [o] = await this.createGroup([{ spec: s, actor, field }], kind);
    if (!o!.ok) throw o!.error;
    return { value: [o!.rule], revision: o!.revision };
  }

  /**
   * Independent creates committed together as ONE revision, in one statement
   * (GROUP_COMMIT: one round trip, its own implicit transaction). Each entry gets its own outcome: a duplicate of a
   * stored rule or of an earlier entry fails that entry only.
   */
  async createGroup(
    items: readonly { spec: RuleSpec; actor: string; field?: string }[],
    kind: RevisionKind = 'create',
    note: string = currentAuditNote(),
  ): Promise<CreateOutcome[]> {
    const out: (CreateOutcome | undefined)[] = new Array(items.length);
    const first = new Map<string, number>();
    const dupOf = new Map<number, number>();
    const toInsert: number[] = [];
    items.forEach((it, i) => {
      const k = identity(it.spec.cidr, it.spec.direction, it.spec.selectorKey);
      const f = first.get(k);
      if (f === undefined) {
        first.set(k, i);
        toInsert.push(i);
      } else dupOf.set(i, f);
    });
    const actors = [...new Set(items.map((i) => i.actor))];
    const revisionActor = actors.length === 1 ? actors[0]! : actors.join(',').slice(0, 200);
    const payload = JSON.stringify(toInsert.map((i) => ({ ...specJson(items[i]!.spec), actor: items[i]!.actor })));
    const rows = await retryWrite(() =>
      note === '' && currentAuditForced() === ''
        ? this.sql.unsafe<(RuleRow & { revision: bigint })[]>(GROUP_COMMIT, [payload, revisionActor, kind] as never[])
        : // A note (audit-note.ts) or a forced override (audit-forced.ts) is transaction-local: the same statement, in a transaction that sets it first.
          (this.sql.begin(async (tx) => {
            await applyAuditNote(tx, note);
            await applyAuditForced(tx);
            return tx.unsafe<(RuleRow & { revision: bigint })[]>(GROUP_COMMIT, [payload, revisionActor, kind] as never[]);
          }) as Promise<(RuleRow & { revision: bigint })[]>),
    );
    const byKey = new Map(rows.map((r) => [identity(canonicalFromPg(r.cidr), r.direction, r.selector_key), r]));
    const missing: number[] = [];
    for (const i of toInsert) {
      const s = items[i]!.spec;
      const r = byKey.get(identity(s.cidr, s.direction, s.selectorKey));
      if (r) out[i] = { ok: true, rule: ruleFromRow(r), revision: r.revision };
      else missing.push(i);
    }
    if (missing.length) {
      const existing = await this.sql<
        { id: bigint; cidr: string; action: number; direction: number; mode: number; selector_key: string }[]
      >`
        select r.id, r.cidr::text as cidr, r.action, r.direction, r.mode, r.selector_key
        from rules r join jsonb_to_recordset(${JSON.stringify(missing.map((i) => specJson(items[i]!.spec)))}::text::jsonb)
          as x(cidr text, direction smallint, selector_key text)
          on r.cidr = x.cidr::cidr and r.direction = x.direction and r.selector_key = x.selector_key`;
      const ex = new Map(existing.map((e) => [identity(canonicalFromPg(e.cidr), e.direction, e.selector_key), e]));
      for (const i of missing) {
        const s = items[i]!.spec;
        const e = ex.get(identity(s.cidr, s.direction, s.selectorKey));
        out[i] = e
          ? { ok: false, error: duplicateError(e, items[i]!.field ?? 'rule') }
          : {
              ok: false,
              error: new FleetwallError(
                'CONFLICT_RETRY',
                'a rule with this CIDR, direction and selector was deleted while this one was created; retry',
              ),
            };
      }
    }
    for (const [i, f] of dupOf) {
      const o = out[f]!;
      out[i] = o.ok
        ? {
            ok: false,
            error: duplicateError(
              {
                id: o.rule.id,
                cidr: o.rule.cidr,
                action: o.rule.action,
                direction: o.rule.direction,
                mode: o.rule.mode,
                selector_key: items[f]!.spec.selectorKey,
              },
              items[i]!.field ?? 'rule',
            ),
          }
        : o;
    }
    return out as CreateOutcome[];
  }

  /**
   * Reads a rule for update, lets `change` compute the new spec (throwing
   * catalogued errors), and writes it as one revision.
   */
  async update(id: bigint, change: (current: Rule) => RuleSpec, actor: string): Promise<Committed<Rule>> {
    const res = await writeTransaction(this.sql, actor, 'update', async (tx, w) => {
      const rows = await tx.unsafe<RuleRow[]>(
        `select ${RULE_SELECT} from rules r join revisions v on v.write_id = r.write_id where r.id = $1 for update of r`,
        [id.toString()],
      );
      if (!rows[0]) throw notFound([id]);
      const next = change(ruleFromRow(rows[0]));
      // The lockout guard decides a forced override in change(), against the row read here.
      await applyAuditForced(tx);
      const clash = await tx<{ id: bigint; cidr: string; action: number; direction: number; mode: number; selector_key: string }[]>`
        select id, cidr::text as cidr, action, direction, mode, selector_key from rules
        where cidr = ${next.cidr}::cidr and direction = ${next.direction} and selector_key = ${next.selectorKey} and id <> ${id.toString()}::bigint`;
      if (clash[0]) throw duplicateError(clash[0], 'rule');
      const updated = await tx.unsafe<RuleRow[]>(
        `with old as (select ${rowImage('r')} as j from rules r where r.id = $1),
         u as (
           update rules set action = $2, direction = $3, selector = $4::text::jsonb, selector_key = $5, mode = $6,
             expire_time = $7::timestamptz, comment = $8, update_time = now(), write_id = $9::bigint,
             -- An operator's change takes a list's rule over: the list no longer owns it.
             list_id = null
           where id = $1 returning *),
         ${changeAuditCtes({ rows: 'u', writeId: '$9::bigint', actor: '$10', op: OP_UPSERT, action: 'rule.update', before: '(select j from old)', after: rowImage('u') })}
         select id, cidr::text as cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by from u`,
        [
          id.toString(),
          next.action,
          next.direction,
          JSON.stringify(next.selector),
          next.selectorKey,
          next.mode,
          next.expireTime ? next.expireTime.toISOString() : null,
          next.comment,
          w.toString(),
          actor,
        ] as never[],
      );
      return { value: updated[0]!, changes: 1 };
    });
    return { value: ruleFromRow(res.value, res.revision), revision: res.revision };
  }

  /** Deletes all of `ids` in one revision, or none (RULE_NOT_FOUND naming the unknown ids). */
  async delete(ids: readonly bigint[], actor: string, kind: RevisionKind): Promise<Committed<number>> {
    const unique = [...new Set(ids.map((i) => i.toString()))].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
    const res = await writeTransaction(this.sql, actor, kind, async (tx, w) => {
      const deleted = await tx.unsafe<{ id: bigint }[]>(
        `with d as (delete from rules where id = any($1::bigint[]) returning *),
         ${changeAuditCtes({ rows: 'd', writeId: '$2::bigint', actor: '$3', op: OP_DELETE, action: 'rule.delete', before: rowImage('d') })}
         select id from d`,
        [unique, w.toString(), actor] as never[],
      );
      if (deleted.length !== unique.length) {
        const got = new Set(deleted.map((r) => r.id.toString()));
        throw notFound(unique.filter((i) => !got.has(i)).map((i) => BigInt(i)));
      }
      return { value: deleted.length, changes: deleted.length };
    });
    return { value: res.value, revision: res.revision };
  }

  /** Deletes rules whose expiry has passed (several processes may run this concurrently). */
  async expireDue(limit: number): Promise<Committed<number>> {
    const res = await writeTransaction(this.sql, EXPIRY_ACTOR, 'expire', async (tx, w) => {
      const [r] = await tx.unsafe<{ n: number }[]>(
        `with due as (select id from rules where expire_time <= clock_timestamp() order by expire_time limit $1 for update skip locked),
         d as (delete from rules r using due where r.id = due.id returning r.*),
         ${changeAuditCtes({ rows: 'd', writeId: '$2::bigint', actor: '$3', op: OP_DELETE, action: 'rule.expire', before: rowImage('d') })}
         select count(*)::int as n from d`,
        [limit, w.toString(), EXPIRY_ACTOR] as never[],
      );
      return { value: r!.n, changes: r!.n };
    });
    return { value: res.value, revision: res.revision };
  }

  async anyDue(): Promise<boolean> {
    const rows = await this.sql`select 1 from rules where expire_time <= clock_timestamp() limit 1`;
    return rows.length > 0;
  }

  /** Rules matching a filter, by id, after `afterId`. */
  async list(filter: RuleFilter, afterId: bigint, limit: number): Promise<{ rules: Rule[]; total: bigint; revision: bigint }> {
    const conds: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (filter.action !== undefined) conds.push(`r.action = ${p(filter.action)}`);
    if (filter.direction !== undefined) conds.push(`r.direction = ${p(filter.direction)}`);
    if (filter.selector && Object.keys(filter.selector).length > 0)
      conds.push(`r.selector @> ${p(JSON.stringify(filter.selector))}::text::jsonb`);
    if (filter.text) {
      const pat = `%${filter.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const ph = p(pat);
      conds.push(`(r.cidr::text ilike ${ph} or r.comment ilike ${ph})`);
    }
    if (filter.coversAddress) conds.push(coversSql(p(formatAddress(filter.coversAddress))));
    const where = conds.length ? conds.join(' and ') : 'true';
    return this.readSql.begin('isolation level repeatable read read only', async (tx) => {
      const countParams = [...params];
      const pageWhere = `${where} and r.id > ${p(afterId.toString())}::bigint`;
      const rows = await tx.unsafe<RuleRow[]>(
        `select ${RULE_SELECT} from rules r join revisions v on v.write_id = r.write_id where ${pageWhere} order by r.id limit ${p(limit)}`,
        params as never[],
      );
      const [c] = await tx.unsafe<{ n: bigint }[]>(`select count(*)::bigint as n from rules r where ${where}`, countParams as never[]);
      const [rev] = await tx<{ value: bigint }[]>`select value from revision_counter where id = 1`;
      return { rules: rows.map((r) => ruleFromRow(r)), total: c!.n, revision: rev!.value };
    });
  }

  /**
   * Rules of one direction whose CIDR contains `address` and whose selector
   * the labels satisfy (undefined labels: empty selectors only), unexpired.
   */
  async covering(
    address: Address,
    direction: number,
    labels: Readonly<Record<string, string>> | undefined,
  ): Promise<{ rules: Rule[]; revision: bigint }> {
    return this.readSql.begin('isolation level repeatable read read only', async (tx) => {
      const rows = await tx.unsafe<RuleRow[]>(
        `select ${RULE_SELECT} from rules r join revisions v on v.write_id = r.write_id
         where ${coversSql('$1')} and r.direction = $2 and (r.expire_time is null or r.expire_time > now())
           and ${labels ? `$3::text::jsonb @> r.selector` : `r.selector_key = '{}'`}
         order by masklen(r.cidr) desc, r.id`,
        (labels ? [formatAddress(address), direction, JSON.stringify(labels)] : [formatAddress(address), direction]) as never[],
      );
      const [rev] = await tx<{ value: bigint }[]>`select value from revision_counter where id = 1`;
      return { rules: rows.map((r) => ruleFromRow(r)), revision: rev!.value };
    });
  }

  /** Canonical CIDRs already stored for one (direction, selector): an import's duplicates. */
  async existingCidrs(tx: TransactionSql, direction: number, selKey: string): Promise<Set<string>> {
    const out = new Set<string>();
    await tx`select cidr::text as cidr from rules where direction = ${direction} and selector_key = ${selKey}`.cursor(20000, (rows) => {
      for (const r of rows) out.add(canonicalFromPg(r.cidr as string));
    });
    return out;
  }
}

export function notFound(ids: readonly bigint[]): FleetwallError {
  const shown = ids.slice(0, 10).map(String).join(', ');
  return new FleetwallError(
    'RULE_NOT_FOUND',
    ids.length === 1
      ? `rule ${shown} does not exist (deleted, expired, or never created); list rules to find its id`
      : `rules ${shown}${ids.length > 10 ? ` and ${ids.length - 10} more` : ''} do not exist; nothing was deleted`,
    { rule_ids: shown },
  );
}
