// Committing a large import as one revision: existing duplicates are read
// once, the new rows go in with COPY (no per-row statements), and the change
// log gets one bulk row (op 3: "every rule with this write_id") instead of a
// row per rule. Readers of the change log expand it through rules.write_id.
import type { Sql } from 'postgres';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { Labels } from '../rules/selector.js';
import { copyText, OP_BULK_UPSERT, RuleStore } from './rule-store.js';
import { writeTransaction } from './write-transaction.js';

export interface ImportTemplate {
  readonly action: Action;
  readonly direction: Direction;
  readonly mode: Mode;
  readonly selector: Labels;
  readonly selectorKey: string;
  readonly expireTime: Date | null;
  readonly comment: string;
}

export interface ImportCommit {
  readonly added: number;
  /** Lines whose CIDR already had a rule with this direction and selector. */
  readonly existing: number;
  readonly revision: bigint;
}

const LINES_PER_WRITE = 4096;

/** `cidrs` are canonical and unique within the import. */
export async function commitImport(sql: Sql, store: RuleStore, t: ImportTemplate, cidrs: readonly string[], actor: string, summary: Record<string, unknown>): Promise<ImportCommit> {
  const res = await writeTransaction(sql, actor, 'import', async (tx, w) => {
    const existing = await store.existingCidrs(tx, t.direction, t.selectorKey);
    const now = new Date().toISOString();
    const suffix =
      `\t${t.action}\t${t.direction}\t${copyText(JSON.stringify(t.selector))}\t${copyText(t.selectorKey)}\t${t.mode}` +
      `\t${t.expireTime ? t.expireTime.toISOString() : '\\N'}\t${copyText(t.comment)}\t${now}\t${now}\t${w}\t${copyText(actor)}\n`;
    let added = 0;
    function* lines(): Generator<string> {
      let buf: string[] = [];
      for (const c of cidrs) {
        if (existing.has(c)) continue;
        added++;
        buf.push(c + suffix);
        if (buf.length >= LINES_PER_WRITE) {
          yield buf.join('');
          buf = [];
        }
      }
      if (buf.length) yield buf.join('');
    }
    const writable = await tx`copy rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by) from stdin`.writable();
    await pipeline(Readable.from(lines()), writable);
    if (added === 0) return { value: { added: 0, existing: cidrs.length }, changes: 0 };
    await tx`insert into changes (write_id, rule_id, op) values (${w.toString()}::bigint, null, ${OP_BULK_UPSERT})`;
    await tx`insert into audit_log (actor, action, rule_id, write_id, after)
             values (${actor}, 'rule.import', null, ${w.toString()}::bigint, ${sql.json({ ...summary, added } as never)})`;
    return { value: { added, existing: cidrs.length - added }, changes: added };
  });
  return { added: res.value.added, existing: res.value.existing, revision: res.revision };
}
