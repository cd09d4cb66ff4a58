// Rows of the rules table and their conversion to the API's Rule message.
import { canonicalCidr } from '../../../common/src/cidr.js';
import type { Rule } from '../../../proto/gen/fleetwall/v1/rule.js';

export interface RuleRow {
  readonly id: bigint;
  readonly cidr: string;
  readonly action: number;
  readonly direction: number;
  readonly selector: Record<string, string>;
  readonly selector_key: string;
  readonly mode: number;
  readonly expire_time: Date | null;
  readonly comment: string;
  readonly create_time: Date;
  readonly update_time: Date;
  readonly write_id: bigint;
  readonly created_by: string;
  /** From the revisions join; absent on rows returned by a write in progress. */
  readonly revision?: bigint | null;
  /** "list:NAME" for a list's rule (RULE_SELECT); absent or null for an operator's. */
  readonly source?: string | null;
}

/** Postgres prints cidr its own way (IPv6 zero runs); the API speaks common/src/cidr.ts. */
export function canonicalFromPg(text: string): string {
  try {
    return canonicalCidr(text);
  } catch {
    return text;
  }
}

export function ruleFromRow(r: RuleRow, revision?: bigint): Rule {
  return {
    id: r.id,
    cidr: canonicalFromPg(r.cidr),
    action: r.action,
    direction: r.direction,
    selector: { ...r.selector },
    mode: r.mode,
    expireTime: r.expire_time ?? undefined,
    comment: r.comment,
    createTime: r.create_time,
    updateTime: r.update_time,
    revision: revision ?? r.revision ?? 0n,
    createdBy: r.created_by,
    source: r.source ?? '',
  };
}
