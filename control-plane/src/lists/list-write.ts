// A list's rule writes, inside the write protocol's transaction
// (store/write-transaction.ts), each a set-based statement per chunk, never a
// round trip per rule:
//
//   removed: delete the list's rules for those CIDRs, one change-log row
//            (op delete) per rule, so agents get exactly those deletes;
//   added:   insert with the list's settings and list_id; a CIDR another
//            rule already holds (same direction and selector: the unique key)
//            is skipped and counted, never taken over; one bulk change-log
//            row (op 3: every rule of this write) covers the inserts;
//   audit:   one row per list write (list.create / list.refresh /
//            list.delete), by the list's principal or the operator, with the
//            counts; the change log has every rule.
import type { TransactionSql } from 'postgres';
import { OP_BULK_UPSERT, OP_DELETE } from '../store/change-audit.js';
import type { ListSpec } from './list-spec.js';

const CHUNK = 50_000;

/** Postgres array text of canonical CIDRs (they contain no quotes, commas, braces or blanks). */
function cidrArray(cidrs: readonly string[]): string {
  return `{${cidrs.join(',')}}`;
}

function* chunks<T>(xs: readonly T[]): Generator<readonly T[]> {
  for (let i = 0; i < xs.length; i += CHUNK) yield xs.slice(i, i + CHUNK);
}

export interface ListWrite {
  readonly listId: bigint;
  readonly spec: ListSpec;
  /** created_by of the new rules: "list:NAME". */
  readonly ruleActor: string;
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

export interface ListWriteCounts {
  readonly added: number;
  readonly removed: number;
  /** CIDRs of `added` another rule holds (not written). */
  readonly held: number;
  /** Those CIDRs (as given in `added`). */
  readonly heldCidrs: readonly string[];
}

export async function writeListRules(tx: TransactionSql, writeId: bigint, p: ListWrite): Promise<ListWriteCounts> {
  const w = writeId.toString();
  const id = p.listId.toString();
  let removed = 0;
  for (const part of chunks(p.removed)) {
    const [r] = await tx.unsafe<{ n: number }[]>(
      `with d as (delete from rules r using unnest($1::cidr[]) as x(c)
                  where r.cidr = x.c and r.list_id = $2::bigint returning r.id),
       ch as (insert into changes (write_id, rule_id, op) select $3::bigint, d.id, ${OP_DELETE} from d)
       select count(*)::int as n from d`,
      [cidrArray(part), id, w] as never[],
    );
    removed += r!.n;
  }
  let added = 0;
  const heldCidrs: string[] = [];
  const s = p.spec;
  for (const part of chunks(p.added)) {
    const [r] = await tx.unsafe<{ n: number }[]>(
      `with ins as (
         insert into rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment,
                            create_time, update_time, write_id, created_by, list_id)
         select x.c, $2, $3, $4::text::jsonb, $5, $6, null, $7, now(), now(), $8::bigint, $9, $10::bigint
         from unnest($1::cidr[]) as x(c)
         on conflict (cidr, direction, selector_key) do nothing
         returning 1)
       select count(*)::int as n from ins`,
      [cidrArray(part), s.action, s.direction, JSON.stringify(s.selector), s.selectorKey, s.mode, s.comment, w, p.ruleActor, id] as never[],
    );
    added += r!.n;
    if (r!.n < part.length) {
      // Which ones another rule holds (rare: only then is this asked).
      const held = await tx.unsafe<{ i: number }[]>(
        `select x.i::int as i from unnest($1::cidr[]) with ordinality as x(c, i)
         where not exists (select 1 from rules r where r.cidr = x.c and r.list_id = $2::bigint)`,
        [cidrArray(part), id] as never[],
      );
      for (const { i } of held) heldCidrs.push(part[i - 1]!);
    }
  }
  if (added > 0) await tx`insert into changes (write_id, rule_id, op) values (${w}::bigint, null, ${OP_BULK_UPSERT})`;
  return { added, removed, held: p.added.length - added, heldCidrs };
}

/** Deletes every rule the list owns (its removal), a change-log row each. */
export async function deleteListRules(tx: TransactionSql, writeId: bigint, listId: bigint): Promise<number> {
  const [r] = await tx.unsafe<{ n: number }[]>(
    `with d as (delete from rules where list_id = $1::bigint returning id),
     ch as (insert into changes (write_id, rule_id, op) select $2::bigint, d.id, ${OP_DELETE} from d)
     select count(*)::int as n from d`,
    [listId.toString(), writeId.toString()] as never[],
  );
  return r!.n;
}

export type ListAuditAction = 'list.create' | 'list.refresh' | 'list.delete';

/** The one audit row of a list write. */
export async function auditList(
  tx: TransactionSql,
  writeId: bigint,
  actor: string,
  action: ListAuditAction,
  before: unknown,
  after: unknown,
): Promise<void> {
  await tx`insert into audit_log (actor, action, rule_id, write_id, before, after)
           values (${actor}, ${action}, null, ${writeId.toString()}::bigint,
                   ${before === null ? null : JSON.stringify(before)}::text::jsonb, ${after === null ? null : JSON.stringify(after)}::text::jsonb)`;
}
