// Validation of rule input (create, batch create, update, import header):
// everything a request can get wrong becomes a catalogued FleetwallError
// whose message says what is wrong and how to fix it.
import { CidrError, formatPrefix, parseAddress, parseCidr, type Address, type Prefix } from '../../../common/src/cidr.js';
import { echo } from '../../../common/src/echo.js';
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import { Action, type Direction, Mode, type Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { directionOrDefault, modeOrDefault, requireAction } from './enums.js';
import { type Labels, selectorKey, validateSelector } from './selector.js';

/** A rule as stored, before the store assigns id and revision. */
export interface RuleSpec {
  /** Canonical CIDR text (common/src/cidr.ts formatPrefix). */
  readonly cidr: string;
  readonly prefix: Prefix;
  readonly action: Action;
  readonly direction: Direction;
  readonly mode: Mode;
  readonly selector: Labels;
  readonly selectorKey: string;
  readonly expireTime: Date | null;
  readonly comment: string;
}

export interface ValidationLimits {
  readonly maxCommentLength: number;
}

const MAX_TTL_MS = 100 * 365 * 86_400_000;

export function cidrErrorToFleetwall(e: CidrError, field: string): FleetwallError {
  const md: Record<string, string> = { field, input: e.input.slice(0, 100) };
  if (e.canonical) md.canonical = e.canonical;
  return new FleetwallError(e.reason, `${field}: ${e.message}`, md);
}

export function parseRuleCidr(input: string, field: string): Prefix {
  if (input.trim() === '') {
    throw new FleetwallError('INVALID_CIDR', `${field} is empty: give an IPv4 or IPv6 CIDR like 203.0.113.0/24 or 2001:db8::/32`, {
      field,
      input: '',
    });
  }
  try {
    return parseCidr(input);
  } catch (e) {
    if (e instanceof CidrError) throw cidrErrorToFleetwall(e, field);
    throw e;
  }
}

export function parseIpAddress(input: string, field: string): Address {
  try {
    if (input.includes('/')) {
      throw new CidrError('INVALID_ADDRESS', `${echo(input)} is a CIDR; give a single address like 192.0.2.1 or 2001:db8::1`, input);
    }
    return parseAddress(input);
  } catch (e) {
    if (e instanceof CidrError) throw cidrErrorToFleetwall(e, field);
    throw e;
  }
}

export function durationMs(d: Duration): number {
  return Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6);
}

export function checkMonitorOnAllow(action: Action, mode: Mode, field: string): void {
  if (action === Action.ACTION_ALLOW && mode === Mode.MODE_MONITOR) {
    throw new FleetwallError(
      'MONITOR_ON_ALLOW',
      `${field}: monitor mode applies to deny rules only (it counts what a deny would drop); use MODE_ENFORCE for an allow rule`,
      { field },
    );
  }
}

export function checkExpiry(expire: Date, now: Date, field: string): void {
  if (Number.isNaN(expire.getTime())) {
    throw new FleetwallError('EXPIRY_IN_PAST', `${field} is not a valid time`, { field });
  }
  if (expire.getTime() <= now.getTime()) {
    throw new FleetwallError(
      'EXPIRY_IN_PAST',
      `${field} ${expire.toISOString()} is not in the future (now ${now.toISOString()}): give a later time, a ttl, or leave it unset for a rule that never expires`,
      { field, expire_time: expire.toISOString(), now: now.toISOString() },
    );
  }
}

export function expiryFromTtl(ttl: Duration, now: Date, field: string): Date {
  const ms = durationMs(ttl);
  if (!(ms > 0)) throw new FleetwallError('INVALID_TTL', `${field} must be positive (got ${ttl.seconds}s ${ttl.nanos}ns)`, { field });
  if (ms > MAX_TTL_MS)
    throw new FleetwallError('INVALID_TTL', `${field} is longer than 100 years; leave it unset for a rule that never expires`, { field });
  return new Date(now.getTime() + ms);
}

export function checkComment(comment: string, limits: ValidationLimits, field: string): void {
  if (comment.length > limits.maxCommentLength) {
    throw new FleetwallError(
      'COMMENT_TOO_LONG',
      `${field} has ${comment.length} characters; at most ${limits.maxCommentLength} are kept (put long notes in a ticket and link it)`,
      { field, length: String(comment.length), max: String(limits.maxCommentLength) },
    );
  }
}

/** CreateRuleRequest{rule, ttl} -> RuleSpec. `prefix` names fields ("requests[2].rule"). */
export function validateNewRule(
  rule: Rule | undefined,
  ttl: Duration | undefined,
  now: Date,
  limits: ValidationLimits,
  prefix = 'rule',
): RuleSpec {
  if (!rule) throw new FleetwallError('RULE_REQUIRED', `${prefix} is required`, { field: prefix });
  const p = parseRuleCidr(rule.cidr, `${prefix}.cidr`);
  const action = requireAction(rule.action, `${prefix}.action`);
  const direction = directionOrDefault(rule.direction, `${prefix}.direction`);
  const mode = modeOrDefault(rule.mode, `${prefix}.mode`);
  checkMonitorOnAllow(action, mode, prefix);
  const selector = validateSelector(rule.selector, `${prefix}.selector`);
  let expireTime: Date | null = null;
  if (rule.expireTime && ttl) {
    throw new FleetwallError('CONFLICTING_EXPIRY', `${prefix}.expire_time and ttl are both set: give one of them`, { field: prefix });
  }
  if (rule.expireTime) {
    checkExpiry(rule.expireTime, now, `${prefix}.expire_time`);
    expireTime = rule.expireTime;
  } else if (ttl) {
    expireTime = expiryFromTtl(ttl, now, prefix === 'rule' ? 'ttl' : `${prefix.replace(/\.rule$/, '')}.ttl`);
  }
  checkComment(rule.comment, limits, `${prefix}.comment`);
  return {
    cidr: formatPrefix(p),
    prefix: p,
    action,
    direction,
    mode,
    selector,
    selectorKey: selectorKey(selector),
    expireTime,
    comment: rule.comment,
  };
}
