// fleetwall explain <ip> [--node name] [--egress]
import { ExplainRequest, MatchRole, Verdict } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { ExplainResponse } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { flagBool, flagString, parseArgs, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { actionName, modeName, table } from '../output.js';

const roleName = (r: MatchRole): string =>
  r === MatchRole.MATCH_ROLE_DECIDING
    ? 'decides'
    : r === MatchRole.MATCH_ROLE_SHADOWED_BY_ALLOW
      ? 'shadowed by allow'
      : r === MatchRole.MATCH_ROLE_SHORTER_PREFIX
        ? 'shorter prefix'
        : '-';
export const verdictName = (v: Verdict): string =>
  v === Verdict.VERDICT_DROP
    ? 'DROP'
    : v === Verdict.VERDICT_WOULD_DROP
      ? 'WOULD-DROP (monitor)'
      : v === Verdict.VERDICT_PASS
        ? 'PASS'
        : '?';

export async function explainCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, { booleans: ['egress'], values: ['node'] });
  if (p.positionals.length !== 1) throw new UsageError('usage: fleetwall explain <ip> [--node name] [--egress]');
  const c = ctx.clients();
  const res = await unary(
    c,
    c.explain,
    c.explain.explain,
    ExplainRequest.fromPartial({
      address: p.positionals[0]!,
      nodeName: flagString(p, 'node') ?? '',
      direction: flagBool(p, 'egress') ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
    }),
  );
  if (ctx.out.json) {
    ctx.out.writeJson(ExplainResponse.toJSON(res));
    return;
  }
  ctx.out.write(`${verdictName(res.verdict)}: ${res.explanation}`);
  // A failsafe entry of the node (an allow its agent keeps for its control plane) decides.
  const fs = res.failsafe ? [['failsafe', 'allow', res.failsafe.cidr, 'enforce', `decides (${res.failsafe.source})`, '-']] : [];
  if (res.matches.length > 0 || fs.length > 0) {
    ctx.out.write(
      table(
        ['RULE', 'ACTION', 'CIDR', 'MODE', 'ROLE', 'SOURCE'],
        [
          ...fs,
          ...res.matches.map((m) => [
            m.rule!.id.toString(),
            actionName(m.rule!.action),
            m.rule!.cidr,
            modeName(m.rule!.mode),
            roleName(m.role),
            m.rule!.source || (m.rule!.createdBy.startsWith('policy:') ? m.rule!.createdBy : '-'),
          ]),
        ],
      ),
    );
  }
}
