// fleetwall audit [--actor P] [--rule id] [--action rule.delete|token.] [--limit n]
// The audit log, newest first (AuditService): who (the authenticated
// principal), the note they added, what, when.
import { AuditEvent, type AuditEvent as Event, ListAuditEventsRequest } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import { flagString, parseArgs, parsePositiveInt, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { table } from '../output.js';

const USAGE = 'usage: fleetwall audit [--actor principal] [--rule id] [--action rule.delete|token.] [--limit n]';

function what(e: Event): string {
  const img = (j: string): Record<string, unknown> => (j ? (JSON.parse(j) as Record<string, unknown>) : {});
  const row = { ...img(e.beforeJson), ...img(e.afterJson) };
  if (e.action.startsWith('rule.import')) return `${row.added ?? '?'} rules`;
  if (e.action.startsWith('rule.')) return [row.action === 2 ? 'allow' : 'deny', row.cidr, row.comment].filter(Boolean).join(' ');
  if (e.action.startsWith('token.')) return `token ${row.id} ${row.name} (${row.role})`;
  return '';
}

export async function auditCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, { values: ['actor', 'rule', 'action', 'limit'] });
  if (p.positionals.length > 0) throw new UsageError(USAGE);
  const limit = parsePositiveInt(flagString(p, 'limit'), 'limit', 50);
  const rule = flagString(p, 'rule');
  if (rule !== undefined && !/^[1-9][0-9]{0,19}$/.test(rule)) throw new UsageError(`--rule must be a rule id, got "${rule}"`);
  const c = ctx.clients();
  const events: Event[] = [];
  let pageToken = '';
  do {
    const res = await unary(
      c,
      c.audit,
      c.audit.listAuditEvents,
      ListAuditEventsRequest.fromPartial({
        pageSize: Math.min(1000, limit - events.length),
        pageToken,
        actor: flagString(p, 'actor') ?? '',
        ruleId: rule === undefined ? 0n : BigInt(rule),
        action: flagString(p, 'action') ?? '',
      }),
    );
    events.push(...res.events);
    pageToken = res.nextPageToken;
  } while (pageToken !== '' && events.length < limit);
  if (ctx.out.json) {
    for (const e of events) ctx.out.writeJson(AuditEvent.toJSON(e));
    return;
  }
  ctx.out.write(
    table(
      ['ID', 'TIME', 'ACTOR', 'NOTE', 'ACTION', 'RULE', 'REVISION', 'WHAT'],
      events.map((e) => [
        e.id.toString(),
        e.time?.toISOString() ?? '-',
        e.actor,
        e.note || '-',
        e.action,
        e.ruleId === 0n ? '-' : e.ruleId.toString(),
        e.revision === 0n ? '-' : e.revision.toString(),
        e.forced ? `${what(e)} [FORCED: ${e.forced}]` : what(e),
      ]),
    ),
  );
}
