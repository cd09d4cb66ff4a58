// fleetwall rules ls|get|rm
import { Action, Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  BatchDeleteRulesRequest,
  DeleteRuleRequest,
  GetRuleRequest,
  ListRulesRequest,
  type ListRulesResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { flagList, flagString, parseArgs, parseLabels, parsePositiveInt, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { RULE_HEADERS, ruleJson, ruleRow, table } from '../output.js';

const USAGE = `usage:
  fleetwall rules ls [--action deny|allow] [--direction ingress|egress] [--selector k=v] [--text t] [--covers ip] [--limit n]
  fleetwall rules get <id>
  fleetwall rules rm <id> [<id>...]`;

function parseId(text: string): bigint {
  if (!/^[1-9][0-9]{0,19}$/.test(text)) throw new UsageError(`"${text}" is not a rule id (a positive integer, see \`fleetwall rules ls\`)`);
  return BigInt(text);
}

export async function rulesCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'ls':
    case 'list':
      return listRules(ctx, rest);
    case 'get':
      return getRule(ctx, rest);
    case 'rm':
    case 'delete':
      return removeRules(ctx, rest);
    default:
      throw new UsageError(sub ? `unknown subcommand "rules ${sub}"\n${USAGE}` : USAGE);
  }
}

async function listRules(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, { values: ['action', 'direction', 'text', 'covers', 'limit'], repeated: ['selector'] });
  if (p.positionals.length > 0) throw new UsageError(USAGE);
  const action = flagString(p, 'action');
  const direction = flagString(p, 'direction');
  const actionEnum =
    action === undefined
      ? Action.ACTION_UNSPECIFIED
      : action === 'deny' || action === 'block'
        ? Action.ACTION_DENY
        : action === 'allow'
          ? Action.ACTION_ALLOW
          : (() => {
              throw new UsageError(`--action must be deny or allow, got "${action}"`);
            })();
  const directionEnum =
    direction === undefined
      ? Direction.DIRECTION_UNSPECIFIED
      : direction === 'ingress'
        ? Direction.DIRECTION_INGRESS
        : direction === 'egress'
          ? Direction.DIRECTION_EGRESS
          : (() => {
              throw new UsageError(`--direction must be ingress or egress, got "${direction}"`);
            })();
  const limit = parsePositiveInt(flagString(p, 'limit'), 'limit', Number.MAX_SAFE_INTEGER);
  const c = ctx.clients();
  const rows: string[][] = [];
  let token = '';
  let last: ListRulesResponse | undefined;
  let shown = 0;
  do {
    last = await unary(
      c,
      c.rules,
      c.rules.listRules,
      ListRulesRequest.fromPartial({
        pageSize: Math.min(1000, limit - shown),
        pageToken: token,
        action: actionEnum,
        direction: directionEnum,
        selector: parseLabels(flagList(p, 'selector'), 'selector'),
        text: flagString(p, 'text') ?? '',
        coversAddress: flagString(p, 'covers') ?? '',
      }),
    );
    for (const r of last.rules) {
      if (ctx.out.json) ctx.out.writeJson(ruleJson(r));
      else rows.push(ruleRow(r));
    }
    shown += last.rules.length;
    token = last.nextPageToken;
  } while (token !== '' && shown < limit);
  if (!ctx.out.json) {
    ctx.out.write(rows.length === 0 ? 'no rules match' : table(RULE_HEADERS, rows));
    ctx.out.write(`${shown} of ${last.totalSize} rules, revision ${last.revision}`);
  }
}

async function getRule(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {});
  if (p.positionals.length !== 1) throw new UsageError('usage: fleetwall rules get <id>');
  const c = ctx.clients();
  const res = await unary(c, c.rules, c.rules.getRule, GetRuleRequest.fromPartial({ id: parseId(p.positionals[0]!) }));
  if (ctx.out.json) ctx.out.writeJson(ruleJson(res.rule!));
  else {
    const r = res.rule!;
    ctx.out.write(table(RULE_HEADERS, [ruleRow(r)]));
    ctx.out.write(`created ${r.createTime?.toISOString() ?? '-'} by ${r.createdBy || '-'}, revision ${r.revision}`);
  }
}

async function removeRules(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {});
  if (p.positionals.length === 0) throw new UsageError('usage: fleetwall rules rm <id> [<id>...]');
  const ids = p.positionals.map(parseId);
  const c = ctx.clients();
  if (ids.length === 1) {
    const res = await unary(c, c.rules, c.rules.deleteRule, DeleteRuleRequest.fromPartial({ id: ids[0]! }));
    if (ctx.out.json) ctx.out.writeJson({ deleted: '1', revision: res.revision.toString() });
    else ctx.out.write(`deleted rule ${ids[0]} (revision ${res.revision})`);
    return;
  }
  const res = await unary(c, c.rules, c.rules.batchDeleteRules, BatchDeleteRulesRequest.fromPartial({ ids }));
  if (ctx.out.json) ctx.out.writeJson({ deleted: res.deleted.toString(), revision: res.revision.toString() });
  else ctx.out.write(`deleted ${res.deleted} rules (revision ${res.revision})`);
}
