// Detection policies and their bans in Postgres (issue 18). A policy create
// or delete is one write transaction and one revision (no rule changes: the
// agents' Delta is empty; the policies themselves travel as PolicySet), with
// its audit row, and NOTIFY fleetwall_policy so every process re-reads the
// policies and pushes them to its agents.
import type { Sql } from 'postgres';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { writeTransaction } from '../store/write-transaction.js';
import { type PolicySpec, specFromJson, specToJson } from './policy-spec.js';

export const POLICY_CHANNEL = 'fleetwall_policy';

export interface PolicyRow {
  readonly id: bigint;
  readonly name: string;
  readonly spec: PolicySpec;
  readonly createTime: Date;
  readonly revision: bigint;
  readonly createdBy: string;
  readonly detections: bigint;
  readonly bans: bigint;
  readonly exempted: bigint;
}

export interface BanRow {
  readonly source: string;
  readonly policy: string;
  readonly node: string;
  readonly expireTime: Date;
  readonly offences: number;
  readonly ruleId: bigint;
  readonly pps: number;
  readonly bps: number;
  readonly firstTime: Date;
  readonly lastTime: Date;
}

interface RawPolicy {
  id: bigint;
  name: string;
  spec: Record<string, unknown>;
  create_time: Date;
  revision: bigint | null;
  created_by: string;
  detections: bigint;
  bans: bigint;
  exempted: bigint;
}

const SELECT = `select p.id, p.name, p.spec, p.create_time, v.revision, p.created_by, p.detections, p.bans, p.exempted
  from policies p left join revisions v on v.write_id = p.write_id`;

function rowOf(r: RawPolicy): PolicyRow {
  return {
    id: BigInt(r.id),
    name: r.name,
    spec: specFromJson(r.spec),
    createTime: r.create_time,
    revision: BigInt(r.revision ?? 0),
    createdBy: r.created_by,
    detections: BigInt(r.detections),
    bans: BigInt(r.bans),
    exempted: BigInt(r.exempted),
  };
}

export function policyNotFound(name: string): FleetwallError {
  return new FleetwallError('POLICY_NOT_FOUND', `no detection policy named ${JSON.stringify(name)} (fleetwall policy ls lists them)`, {
    name,
  });
}

export class PolicyStore {
  /** sql: writes; readSql: reads (store/database.ts: a read never waits for a connection a write holds). */
  constructor(
    private readonly sql: Sql,
    private readonly readSql: Sql = sql,
  ) {}

  async create(spec: PolicySpec, actor: string): Promise<PolicyRow> {
    await writeTransaction(this.sql, actor, 'policy_create', async (tx, w) => {
      const rows = await tx.unsafe<{ id: bigint }[]>(
        `insert into policies (name, spec, write_id, created_by) values ($1, $2::text::jsonb, $3::bigint, $4)
         on conflict (name) do nothing returning id`,
        [spec.name, specToJson(spec), w.toString(), actor] as never[],
      );
      if (!rows[0]) {
        throw new FleetwallError(
          'POLICY_EXISTS',
          `a detection policy named ${JSON.stringify(spec.name)} exists; delete it first or pick another name`,
          {
            name: spec.name,
          },
        );
      }
      await tx.unsafe(
        `insert into audit_log (actor, action, rule_id, write_id, before, after) values ($1, 'policy.create', null, $2::bigint, null, $3::text::jsonb)`,
        [actor, w.toString(), specToJson(spec)] as never[],
      );
      await tx`select pg_notify(${POLICY_CHANNEL}, ${spec.name})`;
      return { value: rows[0].id, changes: 1 };
    });
    return (await this.get(spec.name))!;
  }

  async delete(name: string, actor: string): Promise<void> {
    await writeTransaction(this.sql, actor, 'policy_delete', async (tx, w) => {
      const rows = await tx<{ spec: unknown }[]>`delete from policies where name = ${name} returning spec`;
      if (!rows[0]) throw policyNotFound(name);
      await tx.unsafe(
        `insert into audit_log (actor, action, rule_id, write_id, before, after) values ($1, 'policy.delete', null, $2::bigint, $3::text::jsonb, null)`,
        [actor, w.toString(), JSON.stringify(rows[0].spec)] as never[],
      );
      await tx`select pg_notify(${POLICY_CHANNEL}, ${name})`;
      return { value: undefined, changes: 1 };
    });
  }

  async get(name: string): Promise<PolicyRow | undefined> {
    const rows = await this.readSql.unsafe<RawPolicy[]>(`${SELECT} where p.name = $1`, [name]);
    return rows[0] ? rowOf(rows[0]) : undefined;
  }

  async all(): Promise<PolicyRow[]> {
    return (await this.readSql.unsafe<RawPolicy[]>(`${SELECT} order by p.name`)).map(rowOf);
  }

  /** Adds to the policies' counts (one statement for every policy with news). */
  async addCounts(counts: ReadonlyMap<bigint, { detections: number; bans: number; exempted: number }>): Promise<void> {
    if (counts.size === 0) return;
    const rows = [...counts].map(([id, c]) => ({ id: id.toString(), d: c.detections, b: c.bans, e: c.exempted }));
    await this.sql`
      update policies p set detections = p.detections + x.d, bans = p.bans + x.b, exempted = p.exempted + x.e
      from jsonb_to_recordset(${JSON.stringify(rows)}::text::jsonb) as x(id bigint, d bigint, b bigint, e bigint)
      where p.id = x.id`;
  }

  /** Bans whose rule is in force, newest first. */
  async bans(policy = ''): Promise<BanRow[]> {
    const rows = await this.readSql<
      {
        source: string;
        policy: string;
        node: string;
        expire_time: Date;
        offences: number;
        rule_id: bigint;
        pps: number;
        bps: number;
        first_time: Date;
        last_time: Date;
      }[]
    >`
      select b.source::text as source, b.policy, b.node, r.expire_time, b.offences, b.rule_id, b.pps, b.bps, b.first_time, b.last_time
      from bans b join rules r on r.id = b.rule_id
      where (${policy} = '' or b.policy = ${policy})
      order by b.last_time desc limit 10000`;
    return rows.map((r) => ({
      source: r.source,
      policy: r.policy,
      node: r.node,
      expireTime: r.expire_time,
      offences: Number(r.offences),
      ruleId: BigInt(r.rule_id),
      pps: Number(r.pps),
      bps: Number(r.bps),
      firstTime: r.first_time,
      lastTime: r.last_time,
    }));
  }

  /** Bans in force (the fleetwall_bans_active gauge). */
  async activeBans(): Promise<number> {
    const [r] = await this.readSql<{ n: bigint }[]>`select count(*)::bigint as n from bans b join rules r on r.id = b.rule_id`;
    return Number(r?.n ?? 0);
  }
}
