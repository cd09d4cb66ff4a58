// fleetwall token create --role R [--name N] [--ttl 30d] | ls [--all] | revoke <id|name>
// Operators' API tokens (TokenService; admin only). `create` prints the
// token once: only its SHA-256 is stored. --json: one object with a `token`
// field (and `apiToken`, what is stored).
import {
  type ApiToken,
  ApiToken as ApiTokenMsg,
  CreateTokenRequest,
  ListTokensRequest,
  RevokeTokenRequest,
  Role,
} from '../../../proto/gen/fleetwall/v1/token_service.js';
import { flagBool, flagString, parseArgs, parseDurationSeconds, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { relativeTime, table } from '../output.js';

const USAGE = [
  'usage: fleetwall token create --role viewer|operator|admin [--name N] [--ttl 30d]',
  '       fleetwall token ls [--all]',
  '       fleetwall token revoke <id|name>',
].join('\n');

const ROLES: Record<string, Role> = { viewer: Role.ROLE_VIEWER, operator: Role.ROLE_OPERATOR, admin: Role.ROLE_ADMIN };
const roleName = (r: Role): string => Object.entries(ROLES).find(([, v]) => v === r)?.[0] ?? '?';

function tokenRow(t: ApiToken): string[] {
  return [
    t.id.toString(),
    t.name,
    roleName(t.role),
    t.createdBy,
    relativeTime(t.createTime),
    t.expireTime ? relativeTime(t.expireTime) : 'never',
    t.revokeTime ? `revoked ${relativeTime(t.revokeTime)} by ${t.revokedBy}` : '',
  ];
}
const HEADERS = ['ID', 'NAME', 'ROLE', 'CREATED BY', 'CREATED', 'EXPIRES', 'REVOKED'];

export async function tokenCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const c = ctx.clients();
  if (sub === 'create') {
    const p = parseArgs(rest, { values: ['role', 'name', 'ttl'] });
    if (p.positionals.length > 0) throw new UsageError(USAGE);
    const roleText = flagString(p, 'role');
    const role = roleText === undefined ? undefined : ROLES[roleText.toLowerCase()];
    if (role === undefined) throw new UsageError(`--role is required: viewer, operator or admin\n${USAGE}`);
    const ttl = flagString(p, 'ttl');
    const seconds = ttl === undefined ? undefined : parseDurationSeconds(ttl, 'ttl');
    const res = await unary(
      c,
      c.tokens,
      c.tokens.createToken,
      CreateTokenRequest.fromPartial({
        name: flagString(p, 'name') ?? `${roleText!.toLowerCase()}-${Date.now().toString(36)}`,
        role,
        ...(seconds !== undefined ? { ttl: { seconds: BigInt(Math.ceil(seconds)), nanos: 0 } } : {}),
      }),
    );
    const t = res.apiToken!;
    if (ctx.out.json) {
      ctx.out.writeJson({ token: res.token, apiToken: ApiTokenMsg.toJSON(t) });
      return;
    }
    ctx.out.write(res.token);
    process.stderr.write(
      `token ${t.id} "${t.name}" (${roleName(t.role)}${t.expireTime ? `, expires ${t.expireTime.toISOString()}` : ''}): shown once, store it now; use it with --token or FLEETWALL_TOKEN\n`,
    );
    return;
  }
  if (sub === 'ls' || sub === 'list') {
    const p = parseArgs(rest, { booleans: ['all'] });
    const res = await unary(c, c.tokens, c.tokens.listTokens, ListTokensRequest.fromPartial({ includeRevoked: flagBool(p, 'all') }));
    if (ctx.out.json) {
      for (const t of res.tokens) ctx.out.writeJson(ApiTokenMsg.toJSON(t));
      return;
    }
    ctx.out.write(table(HEADERS, res.tokens.map(tokenRow)));
    return;
  }
  if (sub === 'revoke' || sub === 'rm') {
    const p = parseArgs(rest, {});
    if (p.positionals.length !== 1) throw new UsageError(USAGE);
    const which = p.positionals[0]!;
    let id: bigint;
    if (/^[1-9][0-9]{0,19}$/.test(which)) id = BigInt(which);
    else {
      const all = await unary(c, c.tokens, c.tokens.listTokens, ListTokensRequest.fromPartial({ includeRevoked: false }));
      const named = all.tokens.filter((t) => t.name === which);
      if (named.length !== 1)
        throw new UsageError(
          named.length === 0
            ? `no live token named "${which}" (fleetwall token ls)`
            : `${named.length} tokens are named "${which}": revoke by id`,
        );
      id = named[0]!.id;
    }
    const res = await unary(c, c.tokens, c.tokens.revokeToken, RevokeTokenRequest.fromPartial({ id }));
    if (ctx.out.json) ctx.out.writeJson(ApiTokenMsg.toJSON(res.apiToken!));
    else ctx.out.write(`revoked token ${id} "${res.apiToken!.name}": refused everywhere from now on`);
    return;
  }
  throw new UsageError(USAGE);
}
