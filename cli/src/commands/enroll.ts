// fleetwall enroll create [--node-name N] [--labels k=v,...] [--ttl 1h] | ls [--all] | revoke <id>
// Join tokens for node enrollment (EnrollmentService; admin only). `create`
// prints the token once (only a hash is stored) and the CA pin an agent
// needs with it, as `kubeadm token create --print-join-command` does; the
// node's labels are the token's, bound when it enrolls. --json: one object
// with `token`, `caCertHash` and `joinToken`.
import {
  CreateJoinTokenRequest,
  type JoinToken,
  JoinToken as JoinTokenMsg,
  ListJoinTokensRequest,
  RevokeJoinTokenRequest,
} from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { labelsText, relativeTime, table } from '../output.js';

const USAGE = [
  'usage: fleetwall enroll create [--node-name N] [--labels k=v,...] [--ttl 1h]',
  '       fleetwall enroll ls [--all]',
  '       fleetwall enroll revoke <id>',
].join('\n');

function state(t: JoinToken): string {
  if (t.revokeTime) return `revoked ${relativeTime(t.revokeTime)} by ${t.revokedBy}`;
  if (t.useTime) return `used ${relativeTime(t.useTime)} by node ${t.usedByNode}`;
  if (t.expireTime && t.expireTime.getTime() <= Date.now()) return 'expired';
  return 'usable';
}

function tokenRow(t: JoinToken): string[] {
  return [
    t.id,
    t.nodeName || '(any)',
    labelsText(t.labels),
    t.createdBy,
    relativeTime(t.createTime),
    t.expireTime ? relativeTime(t.expireTime) : '-',
    state(t),
  ];
}
const HEADERS = ['ID', 'NODE', 'LABELS', 'CREATED BY', 'CREATED', 'EXPIRES', 'STATE'];

export async function enrollCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const c = ctx.clients();
  if (sub === 'create') {
    const p = parseArgs(rest, { values: ['node-name', 'ttl'], repeated: ['labels'] });
    if (p.positionals.length > 0) throw new UsageError(USAGE);
    const ttl = flagString(p, 'ttl');
    const seconds = ttl === undefined ? undefined : parseDurationSeconds(ttl, 'ttl');
    const res = await unary(
      c,
      c.enrollment,
      c.enrollment.createJoinToken,
      CreateJoinTokenRequest.fromPartial({
        nodeName: flagString(p, 'node-name') ?? '',
        labels: parseLabels(flagList(p, 'labels'), 'labels'),
        ...(seconds !== undefined ? { ttl: { seconds: BigInt(Math.ceil(seconds)), nanos: 0 } } : {}),
      }),
    );
    const t = res.joinToken!;
    if (ctx.out.json) {
      ctx.out.writeJson({ token: res.token, caCertHash: res.caCertHash, joinToken: JoinTokenMsg.toJSON(t) });
      return;
    }
    ctx.out.write(res.token);
    process.stderr.write(
      [
        `join token ${t.id}: single use, expires ${t.expireTime?.toISOString()}${t.nodeName ? `, for node ${t.nodeName}` : ''}${Object.keys(t.labels).length ? `, labels ${labelsText(t.labels)}` : ''}; shown once`,
        `CA pin: ${res.caCertHash}`,
        `on the node: fleetwall agent --control-plane ${ctx.config.server} --join-token ${res.token} --ca-cert-hash ${res.caCertHash}${t.nodeName ? ` --node-name ${t.nodeName}` : ''} --interfaces ...`,
        '',
      ].join('\n'),
    );
    return;
  }
  if (sub === 'ls' || sub === 'list') {
    const p = parseArgs(rest, { booleans: ['all'] });
    const res = await unary(
      c,
      c.enrollment,
      c.enrollment.listJoinTokens,
      ListJoinTokensRequest.fromPartial({ includeInactive: flagBool(p, 'all') }),
    );
    if (ctx.out.json) {
      for (const t of res.joinTokens) ctx.out.writeJson(JoinTokenMsg.toJSON(t));
      return;
    }
    ctx.out.write(
      res.joinTokens.length === 0
        ? 'no usable join tokens (--all shows used, expired and revoked ones)'
        : table(HEADERS, res.joinTokens.map(tokenRow)),
    );
    return;
  }
  if (sub === 'revoke' || sub === 'rm') {
    const p = parseArgs(rest, {});
    if (p.positionals.length !== 1) throw new UsageError(USAGE);
    const res = await unary(c, c.enrollment, c.enrollment.revokeJoinToken, RevokeJoinTokenRequest.fromPartial({ id: p.positionals[0]! }));
    if (ctx.out.json) ctx.out.writeJson(JoinTokenMsg.toJSON(res.joinToken!));
    else ctx.out.write(`revoked join token ${res.joinToken!.id}: it enrolls no node from now on`);
    return;
  }
  throw new UsageError(USAGE);
}
