// TokenService (and /v1/tokens): operators' API tokens. The token is made
// here, shown once in the response, and only its SHA-256 is stored.
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import {
  type ApiToken,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type ListTokensRequest,
  type ListTokensResponse,
  type RevokeTokenRequest,
  type RevokeTokenResponse,
  Role as ProtoRole,
} from '../../../proto/gen/fleetwall/v1/token_service.js';
import { generateToken, hashToken, validTokenName } from '../auth/api-token.js';
import type { Role } from '../auth/roles.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { TokenRow, TokenStore } from '../store/token-store.js';
import type { CallContext } from './call-context.js';

const TO_PROTO: Record<string, ProtoRole> = {
  viewer: ProtoRole.ROLE_VIEWER,
  operator: ProtoRole.ROLE_OPERATOR,
  admin: ProtoRole.ROLE_ADMIN,
};
const FROM_PROTO: Partial<Record<ProtoRole, Role>> = {
  [ProtoRole.ROLE_VIEWER]: 'viewer',
  [ProtoRole.ROLE_OPERATOR]: 'operator',
  [ProtoRole.ROLE_ADMIN]: 'admin',
};

export function apiTokenOf(r: TokenRow): ApiToken {
  return {
    id: r.id,
    name: r.name,
    role: TO_PROTO[r.role] ?? ProtoRole.ROLE_UNSPECIFIED,
    createdBy: r.created_by,
    createTime: r.create_time,
    expireTime: r.expire_time ?? undefined,
    revokeTime: r.revoke_time ?? undefined,
    revokedBy: r.revoked_by,
  };
}

function ttlMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  if (ms < 0)
    throw new FleetwallError('INVALID_TTL', 'ttl must not be negative: leave it unset for a token that never expires', { field: 'ttl' });
  return ms === 0 ? undefined : ms;
}

export class TokenService {
  constructor(
    private readonly store: TokenStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async createToken(req: CreateTokenRequest, ctx: CallContext): Promise<CreateTokenResponse> {
    const role = FROM_PROTO[req.role];
    if (!role)
      throw new FleetwallError('INVALID_ROLE', 'role is required: ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN (viewer, operator, admin)', {
        field: 'role',
      });
    const name = req.name.trim();
    if (!validTokenName(name))
      throw new FleetwallError(
        'INVALID_TOKEN_NAME',
        `name ${JSON.stringify(req.name)} is not a token name: 1-64 letters, digits and . _ @ : - , starting with a letter or digit`,
        { field: 'name' },
      );
    const ms = ttlMs(req.ttl);
    const token = generateToken();
    const row = await this.store.create({
      name,
      role,
      secretSha256: hashToken(token),
      createdBy: ctx.actor,
      expireTime: ms === undefined ? undefined : new Date(this.now().getTime() + ms),
    });
    return { token, apiToken: apiTokenOf(row) };
  }

  async listTokens(req: ListTokensRequest): Promise<ListTokensResponse> {
    return { tokens: (await this.store.list(req.includeRevoked)).map(apiTokenOf) };
  }

  async revokeToken(req: RevokeTokenRequest, ctx: CallContext): Promise<RevokeTokenResponse> {
    const row = req.id === 0n ? undefined : await this.store.revoke(req.id, ctx.actor);
    if (!row)
      throw new FleetwallError('TOKEN_NOT_FOUND', `no API token ${req.id}: list them with \`fleetwall token ls\``, {
        id: req.id.toString(),
      });
    return { apiToken: apiTokenOf(row) };
  }
}
