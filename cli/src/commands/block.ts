// fleetwall block|allow <ip|cidr> [--ttl 1h] [--comment c] [--selector k=v] [--monitor] [--egress] [--force]
// --force: an admin's override of the lockout guard (a deny covering the
// control plane's, an agent's or a management address, or a /0); audited.
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import { Action, Direction, Mode, Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { RULE_HEADERS, ruleJson, ruleRow, table } from '../output.js';

export const RULE_FLAGS = {
  booleans: ['monitor', 'egress', 'force'],
  values: ['ttl', 'comment'],
  repeated: ['selector'],
} as const;

export function durationFromSeconds(seconds: number): Duration {
  const whole = Math.floor(seconds);
  return { seconds: BigInt(whole), nanos: Math.round((seconds - whole) * 1e9) };
}

export async function blockCommand(ctx: Context, action: 'block' | 'allow', argv: string[]): Promise<void> {
  const p = parseArgs(argv, RULE_FLAGS);
  if (p.positionals.length !== 1) {
    throw new UsageError(
      `usage: fleetwall ${action} <ip|cidr> [--ttl 1h] [--comment text] [--selector key=value] [--egress]${action === 'block' ? ' [--monitor] [--force]' : ''}`,
    );
  }
  if (action === 'allow' && flagBool(p, 'monitor')) {
    throw new UsageError('--monitor applies to block rules only (an allow rule always passes)');
  }
  const ttl = flagString(p, 'ttl');
  const req = CreateRuleRequest.fromPartial({
    rule: Rule.fromPartial({
      cidr: p.positionals[0]!,
      action: action === 'block' ? Action.ACTION_DENY : Action.ACTION_ALLOW,
      direction: flagBool(p, 'egress') ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
      mode: flagBool(p, 'monitor') ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
      selector: parseLabels(flagList(p, 'selector'), 'selector'),
      comment: flagString(p, 'comment') ?? '',
    }),
    ...(ttl !== undefined ? { ttl: durationFromSeconds(parseDurationSeconds(ttl, 'ttl')) } : {}),
    force: flagBool(p, 'force'),
  });
  const c = ctx.clients();
  const res = await unary(c, c.rules, c.rules.createRule, req);
  if (ctx.out.json) {
    ctx.out.writeJson({ rule: ruleJson(res.rule!), revision: res.revision.toString() });
    return;
  }
  const r = res.rule!;
  ctx.out.write(`${action === 'block' ? 'blocked' : 'allowed'} ${r.cidr} (rule ${r.id}, revision ${res.revision})`);
  ctx.out.write(table(RULE_HEADERS, [ruleRow(r)]));
}
