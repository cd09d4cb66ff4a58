// The HTTP/JSON routes of TokenService and AuditService (issue 15):
//
//   POST   /v1/tokens        {"name": "ci", "role": "viewer"|"ROLE_VIEWER", "ttl": "3600s"} -> {"token": "fwt_...", "apiToken": {...}}
//   GET    /v1/tokens        ?include_revoked=true
//   DELETE /v1/tokens/{id}   revoke (idempotent)
//   GET    /v1/audit         ?page_size&page_token&actor&rule_id&action   newest first
//
// Who may call them: auth/access-table.ts (tokens: admin; audit: viewer).
import type { IncomingMessage } from 'node:http';
import { ListAuditEventsRequest, ListAuditEventsResponse } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import {
  CreateTokenRequest,
  CreateTokenResponse,
  ListTokensRequest,
  ListTokensResponse,
  RevokeTokenRequest,
  RevokeTokenResponse,
} from '../../../proto/gen/fleetwall/v1/token_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { AuditService } from '../services/audit-service.js';
import type { CallContext } from '../services/call-context.js';
import type { TokenService } from '../services/token-service.js';
import { type HttpRouter, readJsonObject, sendJson } from './router.js';

export interface TrustRouteDeps {
  readonly tokens: TokenService;
  readonly audit: AuditService;
  readonly maxMessageBytes: number;
  readonly callContext: (req: IncomingMessage) => CallContext;
  readonly parseId: (text: string) => bigint;
  readonly param: (url: URL, snake: string) => string | undefined;
}

/** "viewer" or "ROLE_VIEWER" -> "ROLE_VIEWER" (what fromJSON reads); anything else as given (refused by the service). */
function roleJson(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const up = v.trim().toUpperCase();
  return up.startsWith('ROLE_') ? up : `ROLE_${up}`;
}

/** A proto3 JSON duration ("3600s") as ts-proto's fromJSON reads it. */
export function ttlJson(v: unknown): unknown {
  if (v === undefined || v === null || typeof v === 'object') return v;
  const m = typeof v === 'string' ? /^(\d{1,12})s$/.exec(v.trim()) : null;
  if (!m)
    throw new FleetwallError(
      'INVALID_TTL',
      `ttl ${JSON.stringify(v)} is not a proto3 JSON duration: use seconds with an "s" suffix, like "3600s"`,
      {
        field: 'ttl',
      },
    );
  return { seconds: m[1], nanos: 0 };
}

export function registerTrustRoutes(router: HttpRouter, d: TrustRouteDeps): void {
  router.add('POST', '/v1/tokens', async (req, res) => {
    const body = await readJsonObject(req, d.maxMessageBytes);
    const request = CreateTokenRequest.fromJSON({ ...body, role: roleJson(body.role), ttl: ttlJson(body.ttl) });
    const out = await d.tokens.createToken(request, d.callContext(req));
    sendJson(res, 200, CreateTokenResponse.toJSON(out));
  });

  router.add('GET', '/v1/tokens', async (_req, res, _p, url) => {
    const out = await d.tokens.listTokens(ListTokensRequest.fromPartial({ includeRevoked: d.param(url, 'include_revoked') === 'true' }));
    sendJson(res, 200, ListTokensResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/tokens/:id', async (req, res, p) => {
    const out = await d.tokens.revokeToken(RevokeTokenRequest.fromPartial({ id: d.parseId(p.id!) }), d.callContext(req));
    sendJson(res, 200, RevokeTokenResponse.toJSON(out));
  });

  router.add('GET', '/v1/audit', async (_req, res, _p, url) => {
    const size = d.param(url, 'page_size');
    if (size !== undefined && !/^\d{1,6}$/.test(size))
      throw new FleetwallError('INVALID_PAGE_SIZE', `page_size must be a number 1..1000, got "${size}"`);
    const ruleId = d.param(url, 'rule_id');
    const out = await d.audit.listAuditEvents(
      ListAuditEventsRequest.fromPartial({
        pageSize: size === undefined ? 0 : Number(size),
        pageToken: d.param(url, 'page_token') ?? '',
        actor: d.param(url, 'actor') ?? '',
        ruleId: ruleId ? d.parseId(ruleId) : 0n,
        action: d.param(url, 'action') ?? '',
      }),
    );
    sendJson(res, 200, ListAuditEventsResponse.toJSON(out));
  });
}
