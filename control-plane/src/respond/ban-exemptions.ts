// "Must this prefix never be banned?" for a whole group of would-be bans at
// once (issue 18): the lockout guard (in memory), then one query for allow
// rules and one for nodes' failsafe entries over every prefix of the group,
// whatever its size. A plain ban is exempted when an allow rule or a
// failsafe entry covers it (the kernel's allow-beats-deny lets the rest of a
// network through); a merge into a network (`overlap`) is refused when the
// network holds any allowed, protected or failsafe address at all.
import type { Sql, TransactionSql } from 'postgres';
import type { Prefix } from '../../../common/src/cidr.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';

export interface ExemptionQuery {
  readonly prefix: Prefix;
  readonly cidr: string;
  readonly direction: Direction;
}

/** Rules whose cidr covers `x.c` (a prefix): the partial GiST for the shorter ones, the identity btree for an equal one. */
const COVERS = `((r.cidr >>= x.c::cidr and masklen(r.cidr) < (case family(r.cidr) when 4 then 32 else 128 end)) or r.cidr = x.c::cidr)`;
/** ... or lie inside it (the identity btree answers <<= as a range). */
const OVERLAPS = `(${COVERS} or r.cidr <<= x.c::cidr)`;

/**
 * Why each of `qs` must not be banned (undefined: it may be), in order. `sql`
 * may be a transaction (a merge checks inside its own) or the read pool.
 */
export async function exemptions(
  sql: Sql | TransactionSql,
  guard: LockoutGuard | undefined,
  qs: readonly ExemptionQuery[],
  overlap = false,
): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = qs.map(() => undefined);
  if (qs.length === 0) return out;
  if (guard) {
    const checker = await guard.checker();
    qs.forEach((q, i) => {
      const hit = checker.lockoutCheck(q.prefix, q.direction === Direction.DIRECTION_EGRESS ? 'egress' : 'ingress');
      if (hit) out[i] = `protected by the lockout guard (${hit.entry.cidr})`;
    });
  }
  const open = qs.map((q, i) => ({ q, i })).filter(({ i }) => out[i] === undefined);
  if (open.length === 0) return out;
  const input = JSON.stringify(open.map(({ q }, n) => ({ c: q.cidr, d: q.direction, n: n + 1 })));
  const allows = await sql.unsafe<{ n: string; id: bigint; cidr: string }[]>(
    `select distinct on (x.n) x.n::text as n, r.id, r.cidr::text as cidr
     from jsonb_to_recordset($1::text::jsonb) as x(c text, d smallint, n int)
     join rules r on r.action = 2 and r.direction = x.d and ${overlap ? OVERLAPS : COVERS}
     order by x.n, r.id`,
    [input] as never[],
  );
  for (const a of allows) out[open[Number(a.n) - 1]!.i] = `${overlap ? 'holds' : 'covered by'} allow rule ${a.id} (${a.cidr})`;
  const failsafe = await sql.unsafe<{ n: string; name: string; cidr: string }[]>(
    `select distinct on (x.n) x.n::text as n, nd.name, e->>'cidr' as cidr
     from jsonb_to_recordset($1::text::jsonb) as x(c text, d smallint, n int), nodes nd, jsonb_array_elements(nd.failsafe) e
     where (e->>'cidr')::cidr ${overlap ? '&&' : '>>='} x.c::cidr
     order by x.n, nd.name`,
    [input] as never[],
  );
  for (const f of failsafe) {
    const i = open[Number(f.n) - 1]!.i;
    out[i] ??= `${overlap ? 'holds' : 'inside'} node ${f.name}'s failsafe entry ${f.cidr}`;
  }
  return out;
}
