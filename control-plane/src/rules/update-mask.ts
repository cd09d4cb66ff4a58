// UpdateRule's update_mask: which fields of the request's rule replace the
// stored ones. Paths are the proto field names (snake_case; the JSON
// camelCase spelling is accepted too); "*" means every mutable field.
import { echo } from '../../../common/src/echo.js';
import type { Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { directionOrDefault, modeOrDefault, requireAction } from './enums.js';
import { selectorKey, validateSelector } from './selector.js';
import { checkComment, checkExpiry, checkMonitorOnAllow, parseRuleCidr, type RuleSpec, type ValidationLimits } from './validate.js';

export const MUTABLE_PATHS = ['action', 'direction', 'selector', 'mode', 'expire_time', 'comment'] as const;
export type MutablePath = (typeof MUTABLE_PATHS)[number];

const ALIASES: Record<string, MutablePath> = { expireTime: 'expire_time' };
const IMMUTABLE = new Set(['cidr', 'id', 'create_time', 'createTime', 'update_time', 'updateTime', 'revision', 'created_by', 'createdBy']);

export function parseUpdateMask(paths: readonly string[]): Set<MutablePath> {
  if (paths.length === 0) {
    throw new FleetwallError(
      'INVALID_UPDATE_MASK',
      `update_mask is empty: name the fields to change, e.g. ["comment"], or "*" for all of ${MUTABLE_PATHS.join(', ')}`,
    );
  }
  const out = new Set<MutablePath>();
  for (const raw of paths) {
    const p = raw.trim();
    if (p === '*') {
      for (const m of MUTABLE_PATHS) out.add(m);
      continue;
    }
    if (IMMUTABLE.has(p)) {
      throw new FleetwallError(
        'IMMUTABLE_FIELD',
        p === 'cidr'
          ? 'cidr cannot change: delete the rule and create one with the new CIDR'
          : `${p} is set by the server and cannot be updated; mutable fields are ${MUTABLE_PATHS.join(', ')}`,
        { field: p },
      );
    }
    const m = (MUTABLE_PATHS as readonly string[]).includes(p) ? (p as MutablePath) : ALIASES[p];
    if (!m) {
      throw new FleetwallError(
        'INVALID_UPDATE_MASK',
        `update_mask path ${echo(p)} is not a rule field that can change; use ${MUTABLE_PATHS.join(', ')}`,
        { field: p.slice(0, 64) },
      );
    }
    out.add(m);
  }
  return out;
}

/** The stored rule with the masked fields taken from `input`, validated. */
export function applyUpdate(current: Rule, input: Rule, mask: ReadonlySet<MutablePath>, now: Date, limits: ValidationLimits): RuleSpec {
  const prefix = parseRuleCidr(current.cidr, 'rule.cidr');
  const action = mask.has('action') ? requireAction(input.action, 'rule.action') : current.action;
  const direction = mask.has('direction') ? directionOrDefault(input.direction, 'rule.direction') : current.direction;
  const mode = mask.has('mode') ? modeOrDefault(input.mode, 'rule.mode') : current.mode;
  checkMonitorOnAllow(action, mode, 'rule');
  const selector = mask.has('selector') ? validateSelector(input.selector, 'rule.selector') : current.selector;
  let expireTime: Date | null = current.expireTime ?? null;
  if (mask.has('expire_time')) {
    if (input.expireTime) checkExpiry(input.expireTime, now, 'rule.expire_time');
    expireTime = input.expireTime ?? null;
  }
  const comment = mask.has('comment') ? input.comment : current.comment;
  if (mask.has('comment')) checkComment(comment, limits, 'rule.comment');
  return {
    cidr: current.cidr,
    prefix,
    action,
    direction,
    mode,
    selector,
    selectorKey: selectorKey(selector),
    expireTime,
    comment,
  };
}
