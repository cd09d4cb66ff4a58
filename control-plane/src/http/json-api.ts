// The HTTP/JSON API: the same service-layer handlers the gRPC server uses,
// with requests and responses in the proto3 JSON mapping (ts-proto's
// fromJSON / toJSON). Errors are JSON {code, message, reason, metadata} with
// the HTTP status of their gRPC code (router.ts).
//
//   POST   /v1/rules            body: CreateRuleRequest {"rule": {...}, "ttl": "3600s", "force"?: true} (or a bare Rule)
//   GET    /v1/rules            ?page_size&page_token&action&direction&text&covers_address&selector=k=v
//   GET    /v1/rules/{id}
//   PATCH  /v1/rules/{id}       body: Rule fields (and "force"?: true); ?update_mask=comment,expire_time (default: the fields sent)
//   DELETE /v1/rules/{id}
//   GET    /v1/nodes            ?selector=k=v&connected_only=true
//   GET    /v1/nodes/{name}
//   GET    /v1/counters         ?node_name&top_rules&rule_ids=1,2
//   GET    /v1/explain          ?address&node_name&direction
//   POST   /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id}, GET /v1/audit: trust-routes.ts
//   POST   /manage-ip           {"action": "block"|"allow"|"whitelist"|"unblock", "ip": "192.0.2.1", "ttl"?, "comment"?, "force"?}
//                                -> RuleService.manageAddress (services/manage-address.ts), answered as
//                                   {ok, action, ip, result, rule, revision[, coveringRules]}
//
// Every body is read by readJsonObject (router.ts): one bad body, one reason, on every route.
import type { IncomingMessage } from 'node:http';
import { DURATION_EXAMPLES, parseDurationMs } from '../../../common/src/duration.js';
import { LabelTextError, parseLabelText } from '../../../common/src/labels.js';
import { CounterQuery, GetCountersRequest, GetCountersResponse } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainRequest, ExplainResponse } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { GetNodeRequest, GetNodeResponse, ListNodesRequest, ListNodesResponse } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { Rule, directionFromJSON, actionFromJSON } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  AddressOperation,
  CreateRuleRequest,
  CreateRuleResponse,
  DeleteRuleRequest,
  DeleteRuleResponse,
  GetRuleRequest,
  GetRuleResponse,
  ListRulesRequest,
  ListRulesResponse,
  ManageAddressRequest,
  type ManageAddressResponse,
  UpdateRuleRequest,
  UpdateRuleResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { parseRuleCidr } from '../rules/validate.js';
import type { CallContext } from '../services/call-context.js';
import { ACTOR_METADATA_KEY, callContextOf } from '../services/call-context.js';
import { principalOfRequest } from '../auth/http-auth.js';
import type { CounterService } from '../services/counter-service.js';
import { type ManageAddressFields, resultName } from '../services/manage-address.js';
import type { ExplainService } from '../services/explain-service.js';
import type { NodeService } from '../services/node-service.js';
import type { RuleService } from '../services/rule-service.js';
import type { AuditService } from '../services/audit-service.js';
import type { TokenService } from '../services/token-service.js';
import { type HttpRouter, readJsonObject, sendJson } from './router.js';
import { registerTrustRoutes } from './trust-routes.js';
import { registerEnrollmentRoutes } from './enrollment-routes.js';
import type { EnrollmentService } from '../enrollment/enrollment-service.js';
import type { NodeIdentityService } from '../enrollment/node-identity-service.js';

export interface JsonApiServices {
  readonly rules: RuleService;
  readonly nodes: NodeService;
  readonly counters: CounterService;
  readonly explain: ExplainService;
  readonly tokens: TokenService;
  readonly audit: AuditService;
  readonly enrollment: EnrollmentService;
  readonly nodeIdentity: NodeIdentityService;
  readonly maxMessageBytes: number;
}

/** The caller: the principal the HTTP guard established (auth/http-auth.ts), the x-fleetwall-actor note. */
function callContext(req: IncomingMessage): CallContext {
  const header = req.headers[ACTOR_METADATA_KEY];
  return callContextOf(principalOfRequest(req), Array.isArray(header) ? header[0] : header);
}

function parseId(text: string): bigint {
  if (!/^[1-9][0-9]{0,19}$/.test(text)) {
    throw new FleetwallError('INVALID_QUERY', `"${text}" is not a rule id: ids are positive integers (see GET /v1/rules)`, { id: text });
  }
  return BigInt(text);
}

/** ?selector=k=v&selector=k2=v2 (or k=v,k2=v2) -> labels. */
function selectorParam(url: URL): Record<string, string> {
  try {
    return parseLabelText(url.searchParams.getAll('selector'));
  } catch (e) {
    if (e instanceof LabelTextError) throw new FleetwallError('INVALID_SELECTOR', `selector: ${e.message}`, { field: 'selector' });
    throw e;
  }
}

/** A query parameter by its proto field name, snake_case or lowerCamelCase. */
function param(url: URL, snake: string): string | undefined {
  const camel = snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  return url.searchParams.get(snake) ?? url.searchParams.get(camel) ?? undefined;
}

function enumParam<T extends number>(url: URL, name: string, fromJSON: (v: unknown) => T, allowed: string): T | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  const e = fromJSON(v.toUpperCase().startsWith(`${name.toUpperCase()}_`) ? v.toUpperCase() : `${name.toUpperCase()}_${v.toUpperCase()}`);
  if (e === (-1 as T)) throw new FleetwallError('INVALID_ENUM', `${name} "${v}" is not one of ${allowed}`, { field: name, value: v });
  return e;
}

function intParam(url: URL, name: string): number | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9]{1,9}$/.test(v))
    throw new FleetwallError('INVALID_QUERY', `${name} must be a non-negative integer, got "${v}"`, { field: name });
  return Number(v);
}

/**
 * proto3 JSON writes google.protobuf.Duration as a string ("600s", "1.5s");
 * ts-proto's Duration.fromJSON only reads the {seconds, nanos} object form,
 * so canonical strings are converted here, at the JSON boundary.
 */
function durationJson(v: unknown, field: string): unknown {
  if (v === null || typeof v === 'object') return v; // unset, or the {seconds, nanos} form
  const m = typeof v === 'string' ? /^(-?)(\d{1,12})(?:\.(\d{1,9}))?s$/.exec(v.trim()) : null;
  if (!m) {
    throw new FleetwallError(
      'INVALID_TTL',
      `${field} ${JSON.stringify(v)} is not a proto3 JSON duration: use seconds with an "s" suffix, like "3600s" or "1.5s"`,
      { field },
    );
  }
  const sign = m[1] === '-' ? -1 : 1;
  return { seconds: String(sign * Number(m[2])), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

/** The lockout guard's override: a JSON boolean (a string "false" must not turn it on). */
function forceField(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === 'boolean') return v;
  throw new FleetwallError('INVALID_JSON', `"force" must be true or false (JSON boolean), got ${JSON.stringify(v)}`, { field: 'force' });
}

/** /manage-ip's optional ttl: seconds (3600) or a duration ("90s", "1h30m", "7d") -> Duration. */
function ttlOf(v: unknown): Duration | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const ms = typeof v === 'number' ? v * 1000 : typeof v === 'string' ? parseDurationMs(v) : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms < 1000) {
    throw new FleetwallError(
      'INVALID_TTL',
      `ttl ${JSON.stringify(v)} is not a duration of at least 1s: use a number of seconds (3600) or a string like ${DURATION_EXAMPLES}`,
    );
  }
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

const MANAGE_ACTIONS = ['block', 'allow', 'whitelist', 'unblock'] as const;
type ManageAction = (typeof MANAGE_ACTIONS)[number];

const OPERATIONS: Record<ManageAction, AddressOperation> = {
  block: AddressOperation.ADDRESS_OPERATION_BLOCK,
  allow: AddressOperation.ADDRESS_OPERATION_ALLOW,
  whitelist: AddressOperation.ADDRESS_OPERATION_ALLOW,
  unblock: AddressOperation.ADDRESS_OPERATION_UNBLOCK,
};

/** /manage-ip's field names, for the service's messages. */
const MANAGE_IP_FIELDS: ManageAddressFields = { address: 'ip', operation: 'action' };

/** The /manage-ip answer (top README): {ok, action, ip, result, rule, revision}, plus coveringRules when still blocked. */
function manageIpJson(action: ManageAction, out: ManageAddressResponse): Record<string, unknown> {
  return {
    ok: true,
    action,
    ip: out.cidr,
    result: resultName(out.result),
    rule: Rule.toJSON(out.rule!),
    revision: out.revision.toString(),
    ...(out.coveringRules.length > 0 ? { coveringRules: out.coveringRules.map((r) => Rule.toJSON(r)) } : {}),
  };
}

export function registerJsonApi(router: HttpRouter, s: JsonApiServices): void {
  router.add('POST', '/v1/rules', async (req, res) => {
    const body = await readJsonObject(req, s.maxMessageBytes);
    // The CreateRuleRequest shape, or a bare Rule for convenience.
    const { ttl, force, ...rest } = body;
    const request = CreateRuleRequest.fromJSON({
      rule: 'rule' in rest ? rest.rule : rest,
      ...(ttl !== undefined ? { ttl: durationJson(ttl, 'ttl') } : {}),
      force: forceField(force),
    });
    const out = await s.rules.createRule(request, callContext(req));
    sendJson(res, 200, CreateRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules', async (_req, res, _p, url) => {
    const action = enumParam(url, 'action', actionFromJSON, 'deny, allow');
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.rules.listRules(
      ListRulesRequest.fromPartial({
        pageSize: intParam(url, 'page_size') ?? 0,
        pageToken: param(url, 'page_token') ?? '',
        ...(action !== undefined ? { action } : {}),
        ...(direction !== undefined ? { direction } : {}),
        selector: selectorParam(url),
        text: param(url, 'text') ?? '',
        coversAddress: param(url, 'covers_address') ?? '',
      }),
    );
    sendJson(res, 200, ListRulesResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules/:id', async (_req, res, p) => {
    const out = await s.rules.getRule(GetRuleRequest.fromPartial({ id: parseId(p.id!) }));
    sendJson(res, 200, GetRuleResponse.toJSON(out));
  });

  router.add('PATCH', '/v1/rules/:id', async (req, res, p, url) => {
    const { force, ...body } = await readJsonObject(req, s.maxMessageBytes);
    const fields = body.rule && typeof body.rule === 'object' ? (body.rule as Record<string, unknown>) : body;
    const mask =
      param(url, 'update_mask') ??
      (typeof body.updateMask === 'string' ? body.updateMask : undefined) ??
      Object.keys(fields)
        .filter((k) => k !== 'id')
        .map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))
        .join(',');
    const out = await s.rules.updateRule(
      UpdateRuleRequest.fromJSON({
        rule: { ...fields, id: p.id },
        updateMask: mask
          .split(',')
          .map((x) => x.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()))
          .join(','),
        force: forceField(force),
      }),
      callContext(req),
    );
    sendJson(res, 200, UpdateRuleResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/rules/:id', async (req, res, p) => {
    const out = await s.rules.deleteRule(DeleteRuleRequest.fromPartial({ id: parseId(p.id!) }), callContext(req));
    sendJson(res, 200, DeleteRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes', async (_req, res, _p, url) => {
    const out = await s.nodes.listNodes(
      ListNodesRequest.fromPartial({
        selector: selectorParam(url),
        connectedOnly: param(url, 'connected_only') === 'true',
      }),
    );
    sendJson(res, 200, ListNodesResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes/:name', async (_req, res, p) => {
    const out = await s.nodes.getNode(GetNodeRequest.fromPartial({ name: p.name! }));
    sendJson(res, 200, GetNodeResponse.toJSON(out));
  });

  router.add('GET', '/v1/counters', async (_req, res, _p, url) => {
    const ids = (param(url, 'rule_ids') ?? '')
      .split(',')
      .filter((x) => x !== '')
      .map(parseId);
    const out = await s.counters.getCounters(
      GetCountersRequest.fromPartial({
        query: CounterQuery.fromPartial({
          nodeName: param(url, 'node_name') ?? '',
          ruleIds: ids,
          topRules: intParam(url, 'top_rules') ?? 0,
        }),
      }),
    );
    sendJson(res, 200, GetCountersResponse.toJSON(out));
  });

  router.add('GET', '/v1/explain', async (_req, res, _p, url) => {
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.explain.explain(
      ExplainRequest.fromPartial({
        address: param(url, 'address') ?? '',
        nodeName: param(url, 'node_name') ?? '',
        ...(direction !== undefined ? { direction } : {}),
      }),
    );
    sendJson(res, 200, ExplainResponse.toJSON(out));
  });

  router.add('POST', '/manage-ip', async (req, res) => {
    const body = await readJsonObject(req, s.maxMessageBytes);
    const action = body.action;
    if (action === undefined || action === null || action === '') {
      throw new FleetwallError(
        'MISSING_FIELD',
        `missing field "action": send {"action": "block", "ip": "192.0.2.1"} with action one of ${MANAGE_ACTIONS.join(', ')}`,
        { field: 'action' },
      );
    }
    if (typeof action !== 'string' || !(MANAGE_ACTIONS as readonly string[]).includes(action.toLowerCase())) {
      throw new FleetwallError('UNKNOWN_ACTION', `action ${JSON.stringify(action)} is not one of ${MANAGE_ACTIONS.join(', ')}`, {
        field: 'action',
        value: String(action),
      });
    }
    const ip = body.ip;
    if (ip === undefined || ip === null || ip === '') {
      throw new FleetwallError(
        'MISSING_FIELD',
        'missing field "ip": send {"action": "block", "ip": "192.0.2.1"} (an IPv4/IPv6 address or a CIDR)',
        { field: 'ip' },
      );
    }
    if (typeof ip !== 'string')
      throw new FleetwallError('INVALID_CIDR', `field "ip" must be a string like "192.0.2.1", got ${JSON.stringify(ip)}`, { field: 'ip' });
    const verb = action.toLowerCase() as ManageAction;
    parseRuleCidr(ip, 'ip'); // a bad ip is reported before a bad ttl
    const ttl = ttlOf(body.ttl);
    const out = await s.rules.manageAddress(
      ManageAddressRequest.fromPartial({
        operation: OPERATIONS[verb],
        address: ip,
        ...(ttl ? { ttl } : {}),
        comment: typeof body.comment === 'string' ? body.comment : `manage-ip ${verb}`,
        force: forceField(body.force),
      }),
      callContext(req),
      MANAGE_IP_FIELDS,
    );
    sendJson(res, 200, manageIpJson(verb, out));
  });

  registerTrustRoutes(router, { tokens: s.tokens, audit: s.audit, maxMessageBytes: s.maxMessageBytes, callContext, parseId, param });
  registerEnrollmentRoutes(router, { ...s, callContext, param });
}

// Shared with the routes registered beside this API (import-route.ts, list-routes.ts).
export { callContext, durationJson, enumParam, param, selectorParam };
