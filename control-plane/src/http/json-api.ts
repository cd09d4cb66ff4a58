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
//   GET    /v1/nodes            ?selector=k=v&connected_only=true&page_size&page_token
//   GET    /v1/nodes/{name}
//   DELETE /v1/nodes/{name}
//   GET    /v1/counters         ?node_name&top_rules&rule_ids=1,2
//   GET    /v1/explain          ?address&node_name&direction
//   POST   /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id}, GET /v1/audit: trust-routes.ts
//   POST   /manage-ip           {"action": "block"|"allow"|"whitelist"|"unblock", "ip": "192.0.2.1", "ttl"?, "comment"?, "force"?}
//                                -> RuleService.manageAddress (services/manage-address.ts), answered as
//                                   {ok, action, ip, result, rule, revision[, coveringRules]}
//
// Every body is read by readJsonObject (router.ts): one bad body, one reason, on every route.
// The HTTP edge: each body part is checked against its message's proto3 JSON
// shape (edge/json-shape.ts) before fromJSON converts it, path ids are
// checked for range, and every request message built here goes through the
// same field checks as over gRPC (edge/api-input.ts) before its handler.
import type { IncomingMessage } from 'node:http';
import { DURATION_EXAMPLES, parseDurationMs } from '../../../common/src/duration.js';
import { echo } from '../../../common/src/echo.js';
import { LabelTextError, parseLabelText } from '../../../common/src/labels.js';
import { CounterQuery, GetCountersRequest, GetCountersResponse } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainRequest, ExplainResponse } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import {
  DeleteNodeRequest,
  DeleteNodeResponse,
  GetNodeRequest,
  GetNodeResponse,
  ListNodesRequest,
  ListNodesResponse,
} from '../../../proto/gen/fleetwall/v1/node_service.js';
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
import { checkApiRequest } from '../edge/api-input.js';
import { checkJsonShape } from '../edge/json-shape.js';
import { checkText, INT8_MAX, invalidField } from '../edge/message-check.js';
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

/** A rule id from the path or a query: decimal digits, 1..2^63-1. */
function parseId(text: string, field = 'id'): bigint {
  if (!/^[1-9][0-9]{0,18}$/.test(text) || BigInt(text) > INT8_MAX) {
    throw new FleetwallError(
      'INVALID_QUERY',
      `${field} ${echo(text, 24)} is not a rule id: ids are whole numbers 1..${INT8_MAX} (see GET /v1/rules)`,
      { field, id: text.slice(0, 24) },
    );
  }
  return BigInt(text);
}

/** ts-proto's fromJSON after the shape check; a conversion error is still the caller's, naming the field. */
function fromJson<T>(convert: () => T, field: string): T {
  try {
    return convert();
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof RangeError || e instanceof TypeError)
      throw invalidField(field, `cannot be read: ${e.message}`);
    throw e;
  }
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
  const v = url.searchParams.get(snake) ?? url.searchParams.get(camel) ?? undefined;
  if (v !== undefined) checkText(v, snake);
  return v;
}

function enumParam<T extends number>(url: URL, name: string, fromJSON: (v: unknown) => T, allowed: string): T | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  const e = fromJSON(v.toUpperCase().startsWith(`${name.toUpperCase()}_`) ? v.toUpperCase() : `${name.toUpperCase()}_${v.toUpperCase()}`);
  if (e === (-1 as T))
    throw new FleetwallError('INVALID_ENUM', `${name} ${echo(v, 32)} is not one of ${allowed}`, { field: name, value: v.slice(0, 32) });
  return e;
}

function intParam(url: URL, name: string): number | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9]{1,9}$/.test(v))
    throw new FleetwallError('INVALID_QUERY', `${name} must be a non-negative integer, got ${echo(v, 24)}`, { field: name });
  return Number(v);
}

/**
 * proto3 JSON writes google.protobuf.Duration as a string ("600s", "1.5s");
 * ts-proto's Duration.fromJSON only reads the {seconds, nanos} object form,
 * so canonical strings are converted here, at the JSON boundary.
 */
function durationJson(v: unknown, field: string): unknown {
  if (v === null) return v;
  if (typeof v === 'object') {
    checkJsonShape('google.protobuf.Duration', v, field); // the {seconds, nanos} form
    return v;
  }
  const m = typeof v === 'string' ? /^(-?)(\d{1,12})(?:\.(\d{1,9}))?s$/.exec(v.trim()) : null;
  if (!m) {
    throw new FleetwallError(
      'INVALID_TTL',
      `${field} ${echo(String(v), 32)} is not a proto3 JSON duration: use seconds with an "s" suffix, like "3600s" or "1.5s"`,
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
      `ttl ${echo(String(v), 32)} is not a duration of at least 1s: use a number of seconds (3600) or a string like ${DURATION_EXAMPLES}`,
      { field: 'ttl' },
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
    const rule = 'rule' in rest ? rest.rule : rest;
    checkJsonShape('fleetwall.v1.Rule', rule, 'rule');
    const duration = ttl !== undefined ? durationJson(ttl, 'ttl') : undefined;
    const request = fromJson(
      () => CreateRuleRequest.fromJSON({ rule, ...(duration !== undefined ? { ttl: duration } : {}), force: forceField(force) }),
      'rule',
    );
    const out = await s.rules.createRule(checkApiRequest('RuleService/CreateRule', request), callContext(req));
    sendJson(res, 200, CreateRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules', async (_req, res, _p, url) => {
    const action = enumParam(url, 'action', actionFromJSON, 'deny, allow');
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.rules.listRules(
      checkApiRequest(
        'RuleService/ListRules',
        ListRulesRequest.fromPartial({
          pageSize: intParam(url, 'page_size') ?? 0,
          pageToken: param(url, 'page_token') ?? '',
          ...(action !== undefined ? { action } : {}),
          ...(direction !== undefined ? { direction } : {}),
          selector: selectorParam(url),
          text: param(url, 'text') ?? '',
          coversAddress: param(url, 'covers_address') ?? '',
        }),
      ),
    );
    sendJson(res, 200, ListRulesResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules/:id', async (_req, res, p) => {
    const out = await s.rules.getRule(GetRuleRequest.fromPartial({ id: parseId(p.id!) }));
    sendJson(res, 200, GetRuleResponse.toJSON(out));
  });

  router.add('PATCH', '/v1/rules/:id', async (req, res, p, url) => {
    const id = parseId(p.id!);
    const { force, ...body } = await readJsonObject(req, s.maxMessageBytes);
    const fields = body.rule && typeof body.rule === 'object' ? (body.rule as Record<string, unknown>) : body;
    checkJsonShape('fleetwall.v1.Rule', fields, 'rule');
    if (body.updateMask !== undefined && typeof body.updateMask !== 'string')
      throw invalidField('update_mask', 'must be a comma-separated list of field names, like "comment,expire_time"');
    const mask =
      param(url, 'update_mask') ??
      (typeof body.updateMask === 'string' ? body.updateMask : undefined) ??
      Object.keys(fields)
        .filter((k) => k !== 'id')
        .map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))
        .join(',');
    const request = fromJson(
      () =>
        UpdateRuleRequest.fromJSON({
          rule: { ...fields, id: id.toString() },
          updateMask: mask
            .split(',')
            .map((x) => x.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()))
            .join(','),
          force: forceField(force),
        }),
      'rule',
    );
    const out = await s.rules.updateRule(checkApiRequest('RuleService/UpdateRule', request), callContext(req));
    sendJson(res, 200, UpdateRuleResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/rules/:id', async (req, res, p) => {
    const out = await s.rules.deleteRule(DeleteRuleRequest.fromPartial({ id: parseId(p.id!) }), callContext(req));
    sendJson(res, 200, DeleteRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes', async (_req, res, _p, url) => {
    const out = await s.nodes.listNodes(
      checkApiRequest(
        'NodeService/ListNodes',
        ListNodesRequest.fromPartial({
          selector: selectorParam(url),
          connectedOnly: param(url, 'connected_only') === 'true',
          pageSize: intParam(url, 'page_size') ?? 0,
          pageToken: param(url, 'page_token') ?? '',
        }),
      ),
    );
    sendJson(res, 200, ListNodesResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes/:name', async (_req, res, p) => {
    const out = await s.nodes.getNode(checkApiRequest('NodeService/GetNode', GetNodeRequest.fromPartial({ name: p.name! })));
    sendJson(res, 200, GetNodeResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/nodes/:name', async (req, res, p) => {
    const out = await s.nodes.deleteNode(
      checkApiRequest('NodeService/DeleteNode', DeleteNodeRequest.fromPartial({ name: p.name! })),
      callContext(req),
    );
    sendJson(res, 200, DeleteNodeResponse.toJSON(out));
  });

  router.add('GET', '/v1/counters', async (_req, res, _p, url) => {
    const ids = (param(url, 'rule_ids') ?? '')
      .split(',')
      .filter((x) => x !== '')
      .map((x) => parseId(x, 'rule_ids'));
    const out = await s.counters.getCounters(
      checkApiRequest(
        'CounterService/GetCounters',
        GetCountersRequest.fromPartial({
          query: CounterQuery.fromPartial({
            nodeName: param(url, 'node_name') ?? '',
            ruleIds: ids,
            topRules: intParam(url, 'top_rules') ?? 0,
          }),
        }),
      ),
    );
    sendJson(res, 200, GetCountersResponse.toJSON(out));
  });

  router.add('GET', '/v1/explain', async (_req, res, _p, url) => {
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.explain.explain(
      checkApiRequest(
        'ExplainService/Explain',
        ExplainRequest.fromPartial({
          address: param(url, 'address') ?? '',
          nodeName: param(url, 'node_name') ?? '',
          ...(direction !== undefined ? { direction } : {}),
        }),
      ),
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
      throw new FleetwallError('UNKNOWN_ACTION', `action ${echo(String(action), 32)} is not one of ${MANAGE_ACTIONS.join(', ')}`, {
        field: 'action',
        value: String(action).slice(0, 32),
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
      throw new FleetwallError('INVALID_CIDR', `field "ip" must be a string like "192.0.2.1", got ${echo(JSON.stringify(ip) ?? '', 32)}`, {
        field: 'ip',
      });
    checkText(ip, 'ip', 128);
    if (body.comment !== undefined && body.comment !== null && typeof body.comment !== 'string')
      throw invalidField('comment', 'must be a string');
    const verb = action.toLowerCase() as ManageAction;
    parseRuleCidr(ip, 'ip'); // a bad ip is reported before a bad ttl
    const ttl = ttlOf(body.ttl);
    const out = await s.rules.manageAddress(
      checkApiRequest(
        'RuleService/ManageAddress',
        ManageAddressRequest.fromPartial({
          operation: OPERATIONS[verb],
          address: ip,
          ...(ttl ? { ttl } : {}),
          comment: typeof body.comment === 'string' ? body.comment : `manage-ip ${verb}`,
          force: forceField(body.force),
        }),
      ),
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
