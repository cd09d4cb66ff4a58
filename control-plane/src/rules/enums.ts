// Enum fields from requests: validated (an unknown number is an error naming
// the accepted values), defaults applied, and converted to the policy
// vocabulary of common/src/policy.ts.
import type { RuleAction, RuleDirection, RuleMode } from '../../../common/src/policy.js';
import { Action, actionToJSON, Direction, directionToJSON, Mode, modeToJSON } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';

function invalid(field: string, value: number, accepted: string[]): FleetwallError {
  return new FleetwallError('INVALID_ENUM', `${field} ${value} is not a known value; use one of ${accepted.join(', ')}`, {
    field,
    value: String(value),
  });
}

/** ACTION_DENY or ACTION_ALLOW; unspecified is an error. */
export function requireAction(v: number, field: string): Action {
  if (v === Action.ACTION_DENY || v === Action.ACTION_ALLOW) return v;
  if (v === Action.ACTION_UNSPECIFIED) {
    throw new FleetwallError('ACTION_REQUIRED', `${field} is required: ACTION_DENY (block) or ACTION_ALLOW (never block)`, { field });
  }
  throw invalid(field, v, ['ACTION_DENY', 'ACTION_ALLOW']);
}

/** Unspecified defaults to ingress. */
export function directionOrDefault(v: number, field: string): Direction {
  if (v === Direction.DIRECTION_UNSPECIFIED) return Direction.DIRECTION_INGRESS;
  if (v === Direction.DIRECTION_INGRESS || v === Direction.DIRECTION_EGRESS) return v;
  throw invalid(field, v, ['DIRECTION_INGRESS', 'DIRECTION_EGRESS']);
}

/** Unspecified defaults to enforce. */
export function modeOrDefault(v: number, field: string): Mode {
  if (v === Mode.MODE_UNSPECIFIED) return Mode.MODE_ENFORCE;
  if (v === Mode.MODE_ENFORCE || v === Mode.MODE_MONITOR) return v;
  throw invalid(field, v, ['MODE_ENFORCE', 'MODE_MONITOR']);
}

/** For filters: unspecified means "any". */
export function optionalAction(v: number, field: string): Action | undefined {
  return v === Action.ACTION_UNSPECIFIED ? undefined : requireAction(v, field);
}

export function optionalDirection(v: number, field: string): Direction | undefined {
  return v === Direction.DIRECTION_UNSPECIFIED ? undefined : directionOrDefault(v, field);
}

export function policyAction(a: Action): RuleAction {
  return a === Action.ACTION_ALLOW ? 'allow' : 'deny';
}

export function policyDirection(d: Direction): RuleDirection {
  return d === Direction.DIRECTION_EGRESS ? 'egress' : 'ingress';
}

export function policyMode(m: Mode): RuleMode {
  return m === Mode.MODE_MONITOR ? 'monitor' : 'enforce';
}

export function describeEnums(a: Action, d: Direction, m: Mode): string {
  return `${actionToJSON(a).replace('ACTION_', '').toLowerCase()}, ${directionToJSON(d).replace('DIRECTION_', '').toLowerCase()}${m === Mode.MODE_MONITOR ? `, ${modeToJSON(m).replace('MODE_', '').toLowerCase()}` : ''}`;
}
