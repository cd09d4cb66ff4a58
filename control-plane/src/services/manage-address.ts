// RuleService/ManageAddress: block, allow or unblock one address or CIDR
// fleet-wide (ingress rules with an empty selector), on top of the rule
// handlers. Transport-free: gRPC, the HTTP /manage-ip call and
// `fleetwall unblock` all reach it.
//
//   block    a deny rule for the address, unless it has one (ALREADY_BLOCKED);
//            an allow rule of its own makes it DUPLICATE_RULE (allow beats deny)
//   allow    an allow rule, or its deny rule turned into one (same id)
//   unblock  its own deny rule deleted; STILL_BLOCKED with the covering rules
//            when broader deny rules go on blocking it, NOT_BLOCKED when it
//            has no deny rule of its own
import { formatAddress, formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import { Action, Direction, Mode, type Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  AddressOperation,
  CreateRuleRequest,
  DeleteRuleRequest,
  ListRulesRequest,
  type ManageAddressRequest,
  type ManageAddressResponse,
  ManageAddressResult,
  manageAddressResultToJSON,
  UpdateRuleRequest,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { parseRuleCidr } from '../rules/validate.js';
import type { CallContext } from './call-context.js';
import type { RuleService } from './rule-service.js';

/** The rule handlers ManageAddress is built on. */
type RuleHandlers = Pick<RuleService, 'listRules' | 'createRule' | 'updateRule' | 'deleteRule'>;

/** What the transport calls the request's fields in messages (HTTP: "ip" and "action"). */
export interface ManageAddressFields {
  readonly address: string;
  readonly operation: string;
}

const GRPC_FIELDS: ManageAddressFields = { address: 'address', operation: 'operation' };

const OPERATION_NAMES: Partial<Record<AddressOperation, string>> = {
  [AddressOperation.ADDRESS_OPERATION_BLOCK]: 'block',
  [AddressOperation.ADDRESS_OPERATION_ALLOW]: 'allow',
  [AddressOperation.ADDRESS_OPERATION_UNBLOCK]: 'unblock',
};

const COVERING_PAGE = 1000;

function prefixLength(cidr: string): number {
  return Number(cidr.slice(cidr.lastIndexOf('/') + 1));
}

/** Every label of `inner` is in `outer`: a node `outer` selects is selected by `inner` too. */
function selects(inner: Readonly<Record<string, string>>, outer: Readonly<Record<string, string>>): boolean {
  return Object.entries(inner).every(([k, v]) => outer[k] === v);
}

function describe(r: Rule): string {
  return `rule ${r.id} (${r.cidr}${Object.keys(r.selector).length ? ' with a selector' : ''})`;
}

/**
 * The rules (ingress, any selector) that contain all of `prefix`, other than
 * `except`, unexpired: what keeps deciding for the address.
 */
function covering(rules: readonly Rule[], prefix: Prefix, except: bigint | undefined, now: Date): Rule[] {
  return rules.filter(
    (r) => r.id !== except && prefixLength(r.cidr) <= prefix.len && (!r.expireTime || r.expireTime.getTime() > now.getTime()),
  );
}

/**
 * Of `rules` (all covering the address), the deny rules that drop its
 * packets on some node: enforce mode, and no covering allow rule selects every
 * node they select (allow beats deny). Longest prefix first.
 */
function stillBlocking(rules: readonly Rule[]): Rule[] {
  const allows = rules.filter((r) => r.action === Action.ACTION_ALLOW);
  return rules
    .filter((d) => d.action === Action.ACTION_DENY && d.mode === Mode.MODE_ENFORCE)
    .filter((d) => !allows.some((a) => selects(a.selector, d.selector)))
    .sort((a, b) => prefixLength(b.cidr) - prefixLength(a.cidr) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function operationOf(req: ManageAddressRequest, fields: ManageAddressFields): string {
  if (req.operation === AddressOperation.ADDRESS_OPERATION_UNSPECIFIED) {
    throw new FleetwallError('MISSING_FIELD', `missing field "${fields.operation}": one of block, allow, unblock`, {
      field: fields.operation,
    });
  }
  const name = OPERATION_NAMES[req.operation];
  if (!name) {
    throw new FleetwallError('UNKNOWN_ACTION', `${fields.operation} ${req.operation} is not one of block, allow, unblock`, {
      field: fields.operation,
      value: String(req.operation),
    });
  }
  return name;
}

export async function manageAddress(
  rules: RuleHandlers,
  req: ManageAddressRequest,
  ctx: CallContext,
  fields: ManageAddressFields = GRPC_FIELDS,
  now: () => Date = () => new Date(),
): Promise<ManageAddressResponse> {
  const operation = operationOf(req, fields);
  if (req.address.trim() === '') {
    throw new FleetwallError(
      'MISSING_FIELD',
      `missing field "${fields.address}": an IPv4/IPv6 address or a CIDR, like 192.0.2.1 or 2001:db8::/48`,
      { field: fields.address },
    );
  }
  // Same parser and catalogued errors (INVALID_CIDR / HOST_BITS_SET with the canonical form) as the rule service.
  const prefix = parseRuleCidr(req.address, fields.address);
  const cidr = formatPrefix(prefix);
  const existing = await rules.listRules(
    ListRulesRequest.fromPartial({ pageSize: COVERING_PAGE, coversAddress: formatAddress(prefix), direction: Direction.DIRECTION_INGRESS }),
  );
  const exact = existing.rules.filter((r) => r.cidr === cidr && Object.keys(r.selector).length === 0);
  const deny = exact.find((r) => r.action === Action.ACTION_DENY);
  const allow = exact.find((r) => r.action === Action.ACTION_ALLOW);
  const comment = req.comment ?? `manage-ip ${operation}`;
  const answer = (result: ManageAddressResult, rule: Rule, revision: bigint, coveringRules: Rule[] = []): ManageAddressResponse => ({
    result,
    cidr,
    rule,
    revision,
    coveringRules,
  });
  const create = (action: Action) =>
    rules.createRule(
      CreateRuleRequest.fromPartial({
        rule: { cidr, action, direction: Direction.DIRECTION_INGRESS, mode: Mode.MODE_ENFORCE, comment },
        ...(req.ttl ? { ttl: req.ttl } : {}),
        // The lockout guard's override (a block of a protected address), an admin's.
        force: req.force,
      }),
      ctx,
    );

  if (operation === 'block') {
    if (deny) return answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_ALREADY_BLOCKED, deny, existing.revision);
    if (allow) {
      throw new FleetwallError(
        'DUPLICATE_RULE',
        `${cidr} is allowlisted by rule ${allow.id}; allow beats deny, so blocking it would have no effect. Delete rule ${allow.id} (DELETE /v1/rules/${allow.id}, fleetwall rules rm ${allow.id}) first`,
        { existing_rule_id: allow.id.toString(), existing_action: 'ACTION_ALLOW' },
      );
    }
    const out = await create(Action.ACTION_DENY);
    return answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_BLOCKED, out.rule!, out.revision);
  }

  if (operation === 'allow') {
    if (allow) return answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_ALREADY_ALLOWED, allow, existing.revision);
    if (deny) {
      // Allowing a blocked address turns its rule into an allow (one revision).
      const out = await rules.updateRule(
        UpdateRuleRequest.fromPartial({
          rule: { id: deny.id, action: Action.ACTION_ALLOW, mode: Mode.MODE_ENFORCE, comment },
          updateMask: ['action', 'mode', 'comment'],
          force: req.force,
        }),
        ctx,
      );
      return answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_CHANGED_TO_ALLOW, out.rule!, out.revision);
    }
    const out = await create(Action.ACTION_ALLOW);
    return answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_ALLOWED, out.rule!, out.revision);
  }

  // unblock
  const others = covering(existing.rules, prefix, deny?.id, now());
  if (!deny) {
    const denies = others.filter((r) => r.action === Action.ACTION_DENY);
    const hint = denies.length > 0 ? `; it is covered by ${denies.map(describe).join(', ')}` : '';
    throw new FleetwallError('NOT_BLOCKED', `${cidr} is not blocked by a fleet-wide rule of its own${hint}`, {
      ip: cidr,
      ...(denies.length > 0 ? { covering_rule_ids: denies.map((r) => r.id.toString()).join(',') } : {}),
    });
  }
  const out = await rules.deleteRule(DeleteRuleRequest.fromPartial({ id: deny.id }), ctx);
  const blocking = stillBlocking(others);
  return blocking.length > 0
    ? answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_STILL_BLOCKED, deny, out.revision, blocking)
    : answer(ManageAddressResult.MANAGE_ADDRESS_RESULT_UNBLOCKED, deny, out.revision);
}

/** "still_blocked" for MANAGE_ADDRESS_RESULT_STILL_BLOCKED: the /manage-ip (and CLI) spelling. */
export function resultName(r: ManageAddressResult): string {
  return manageAddressResultToJSON(r).replace('MANAGE_ADDRESS_RESULT_', '').toLowerCase();
}
