// control-plane/src/rules/validate.ts, table by table: CIDR and address
// parsing with their catalogued errors, expiry and ttl, comments, and a whole
// new rule (defaults, field names in messages, every rejection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import {
  checkComment,
  checkExpiry,
  checkMonitorOnAllow,
  durationMs,
  expiryFromTtl,
  parseIpAddress,
  parseRuleCidr,
  validateNewRule,
} from '../../control-plane/src/rules/validate.js';
import { formatAddress, formatPrefix } from '../../common/src/cidr.js';
import { Action, Direction, Mode, Rule } from '../../proto/gen/fleetwall/v1/rule.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const LIMITS = { maxCommentLength: 10 };

function fails(fn: () => unknown, reason: string, message: RegExp, what: string, metadata?: Record<string, string>): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof FleetwallError, `${what}: a FleetwallError`);
      assert.equal(e.reason, reason, `${what}: reason`);
      assert.match(e.message, message, `${what}: message`);
      if (metadata) for (const [k, v] of Object.entries(metadata)) assert.equal(e.metadata[k], v, `${what}: metadata ${k}`);
      return true;
    },
    what,
  );
}

test('parseRuleCidr: canonical prefixes; a bare address is a host prefix; errors name the field and the fix', () => {
  const ok: Array<[string, string]> = [
    ['203.0.113.0/24', '203.0.113.0/24'],
    ['203.0.113.7', '203.0.113.7/32'],
    [' 10.0.0.0/8 ', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['2001:DB8::/32', '2001:db8::/32'],
    ['2001:db8::1', '2001:db8::1/128'],
    ['::/0', '::/0'],
  ];
  for (const [input, canonical] of ok) assert.equal(formatPrefix(parseRuleCidr(input, 'rule.cidr')), canonical, input);
  const bad: Array<[string, string, RegExp, Record<string, string>]> = [
    ['', 'INVALID_CIDR', /^rule\.cidr is empty/, { field: 'rule.cidr', input: '' }],
    ['   ', 'INVALID_CIDR', /^rule\.cidr is empty/, { field: 'rule.cidr' }],
    ['10.1.2.3/8', 'HOST_BITS_SET', /did you mean 10\.0\.0\.0\/8\?/, { field: 'rule.cidr', canonical: '10.0.0.0/8', input: '10.1.2.3/8' }],
    ['2001:db8::1/32', 'HOST_BITS_SET', /did you mean 2001:db8::\/32/, { canonical: '2001:db8::/32' }],
    ['999.1.1.1', 'INVALID_CIDR', /^rule\.cidr: "999\.1\.1\.1" is not a CIDR/, { field: 'rule.cidr' }],
    ['10.0.0.0/33', 'INVALID_CIDR', /invalid prefix length "33"/, {}],
    ['10.0.0.0/', 'INVALID_CIDR', /invalid prefix length/, {}],
    ['example.com', 'INVALID_CIDR', /is not a CIDR/, {}],
  ];
  for (const [input, reason, message, md] of bad)
    fails(() => parseRuleCidr(input, 'rule.cidr'), reason, message, JSON.stringify(input), md);
});

test('parseIpAddress: one address, never a CIDR', () => {
  assert.equal(formatAddress(parseIpAddress('203.0.113.9', 'covers_address')), '203.0.113.9');
  assert.equal(formatAddress(parseIpAddress('2001:DB8::0:1', 'covers_address')), '2001:db8::1');
  const bad: Array<[string, RegExp]> = [
    ['203.0.113.0/24', /^covers_address: "203\.0\.113\.0\/24" is a CIDR; give a single address/],
    ['203.0.113.9/32', /is a CIDR/],
    ['not-an-ip', /^covers_address: "not-an-ip" is not an IP address/],
    ['1.2.3', /is not an IP address/],
  ];
  for (const [input, message] of bad)
    fails(() => parseIpAddress(input, 'covers_address'), 'INVALID_ADDRESS', message, input, { field: 'covers_address' });
});

test('durations, expiry, ttl, monitor-on-allow and comments', () => {
  const durations: Array<[{ seconds: bigint; nanos: number }, number]> = [
    [{ seconds: 0n, nanos: 0 }, 0],
    [{ seconds: 3600n, nanos: 0 }, 3_600_000],
    [{ seconds: 1n, nanos: 500_000_000 }, 1500],
    [{ seconds: 0n, nanos: 999_999 }, 0],
    [{ seconds: -2n, nanos: 0 }, -2000],
  ];
  for (const [d, ms] of durations) assert.equal(durationMs(d), ms, JSON.stringify({ ...d, seconds: String(d.seconds) }));

  assert.deepEqual(expiryFromTtl({ seconds: 3600n, nanos: 0 }, NOW, 'ttl'), new Date('2030-01-01T01:00:00Z'));
  assert.deepEqual(expiryFromTtl({ seconds: 0n, nanos: 250_000_000 }, NOW, 'ttl'), new Date('2030-01-01T00:00:00.250Z'));
  for (const [d, message] of [
    [{ seconds: 0n, nanos: 0 }, /^ttl must be positive/],
    [{ seconds: -60n, nanos: 0 }, /must be positive/],
    [{ seconds: 0n, nanos: 999 }, /must be positive/],
    [{ seconds: 101n * 365n * 86400n, nanos: 0 }, /longer than 100 years/],
  ] as const)
    fails(() => expiryFromTtl(d, NOW, 'ttl'), 'INVALID_TTL', message, String(d.seconds));

  checkExpiry(new Date(NOW.getTime() + 1), NOW, 'rule.expire_time');
  fails(() => checkExpiry(NOW, NOW, 'rule.expire_time'), 'EXPIRY_IN_PAST', /is not in the future \(now 2030-01-01T00:00:00\.000Z\)/, 'now');
  fails(() => checkExpiry(new Date(0), NOW, 'rule.expire_time'), 'EXPIRY_IN_PAST', /^rule\.expire_time 1970/, 'the past');
  fails(() => checkExpiry(new Date(Number.NaN), NOW, 'rule.expire_time'), 'EXPIRY_IN_PAST', /not a valid time/, 'NaN');

  for (const [action, mode, ok] of [
    [Action.ACTION_DENY, Mode.MODE_MONITOR, true],
    [Action.ACTION_DENY, Mode.MODE_ENFORCE, true],
    [Action.ACTION_ALLOW, Mode.MODE_ENFORCE, true],
    [Action.ACTION_ALLOW, Mode.MODE_MONITOR, false],
  ] as const) {
    if (ok) checkMonitorOnAllow(action, mode, 'rule');
    else
      fails(
        () => checkMonitorOnAllow(action, mode, 'rule'),
        'MONITOR_ON_ALLOW',
        /^rule: monitor mode applies to deny rules only/,
        'allow+monitor',
      );
  }

  checkComment('x'.repeat(10), LIMITS, 'rule.comment');
  checkComment('', LIMITS, 'rule.comment');
  fails(
    () => checkComment('x'.repeat(11), LIMITS, 'rule.comment'),
    'COMMENT_TOO_LONG',
    /^rule\.comment has 11 characters; at most 10/,
    'long',
    {
      length: '11',
      max: '10',
    },
  );
});

test('validateNewRule: defaults and the canonical form', () => {
  const spec = validateNewRule(
    Rule.fromPartial({ cidr: '198.51.100.7', action: Action.ACTION_DENY, comment: 'scan' }),
    undefined,
    NOW,
    LIMITS,
  );
  const { prefix, ...rest } = spec;
  assert.deepEqual(rest, {
    cidr: '198.51.100.7/32',
    action: Action.ACTION_DENY,
    direction: Direction.DIRECTION_INGRESS,
    mode: Mode.MODE_ENFORCE,
    selector: {},
    selectorKey: '{}',
    expireTime: null,
    comment: 'scan',
  });
  assert.equal(prefix.len, 32);

  const full = validateNewRule(
    Rule.fromPartial({
      cidr: '2001:db8::/48',
      action: Action.ACTION_DENY,
      direction: Direction.DIRECTION_EGRESS,
      mode: Mode.MODE_MONITOR,
      selector: { zone: 'a', role: 'web' },
    }),
    { seconds: 60n, nanos: 0 },
    NOW,
    LIMITS,
  );
  assert.equal(full.direction, Direction.DIRECTION_EGRESS);
  assert.equal(full.mode, Mode.MODE_MONITOR);
  assert.equal(full.selectorKey, '{"role":"web","zone":"a"}');
  assert.deepEqual(full.expireTime, new Date('2030-01-01T00:01:00Z'), 'ttl: now + ttl');
  const at = new Date('2030-06-01T00:00:00Z');
  assert.deepEqual(
    validateNewRule(Rule.fromPartial({ cidr: '10.0.0.0/8', action: Action.ACTION_ALLOW, expireTime: at }), undefined, NOW, LIMITS)
      .expireTime,
    at,
  );
});

test('validateNewRule: every rejection, with the field named by its place in the request', () => {
  const rule = (r: Partial<Rule>) => Rule.fromPartial({ cidr: '10.0.0.0/8', action: Action.ACTION_DENY, ...r });
  const hour = { seconds: 3600n, nanos: 0 };
  const cases: Array<[string, Rule | undefined, typeof hour | undefined, string, string, RegExp]> = [
    ['no rule', undefined, undefined, 'rule', 'RULE_REQUIRED', /^rule is required/],
    ['no rule, in a batch', undefined, undefined, 'requests[3].rule', 'RULE_REQUIRED', /^requests\[3\]\.rule is required/],
    ['bad cidr', rule({ cidr: 'x' }), undefined, 'requests[1].rule', 'INVALID_CIDR', /^requests\[1\]\.rule\.cidr: "x" is not a CIDR/],
    ['host bits', rule({ cidr: '10.0.0.1/8' }), undefined, 'rule', 'HOST_BITS_SET', /did you mean 10\.0\.0\.0\/8/],
    ['no action', rule({ action: Action.ACTION_UNSPECIFIED }), undefined, 'rule', 'ACTION_REQUIRED', /^rule\.action is required/],
    ['unknown action', rule({ action: 7 as Action }), undefined, 'rule', 'INVALID_ENUM', /^rule\.action 7 is not a known value/],
    ['unknown direction', rule({ direction: 3 as Direction }), undefined, 'rule', 'INVALID_ENUM', /^rule\.direction 3/],
    ['unknown mode', rule({ mode: 4 as Mode }), undefined, 'rule', 'INVALID_ENUM', /^rule\.mode 4/],
    [
      'monitor allow',
      rule({ action: Action.ACTION_ALLOW, mode: Mode.MODE_MONITOR }),
      undefined,
      'rule',
      'MONITOR_ON_ALLOW',
      /monitor mode/,
    ],
    ['bad selector', rule({ selector: { 'a b': 'c' } }), undefined, 'rule', 'INVALID_SELECTOR', /^rule\.selector has /],
    [
      'both expiries',
      rule({ expireTime: new Date('2031-01-01T00:00:00Z') }),
      hour,
      'rule',
      'CONFLICTING_EXPIRY',
      /expire_time and ttl are both set/,
    ],
    ['past expiry', rule({ expireTime: new Date('2029-01-01T00:00:00Z') }), undefined, 'rule', 'EXPIRY_IN_PAST', /^rule\.expire_time /],
    ['zero ttl', rule({}), { seconds: 0n, nanos: 0 }, 'rule', 'INVALID_TTL', /^ttl must be positive/],
    [
      'zero ttl, in a batch',
      rule({}),
      { seconds: 0n, nanos: 0 },
      'requests[2].rule',
      'INVALID_TTL',
      /^requests\[2\]\.ttl must be positive/,
    ],
    ['long comment', rule({ comment: 'c'.repeat(11) }), undefined, 'rule', 'COMMENT_TOO_LONG', /^rule\.comment has 11 characters/],
  ];
  for (const [name, r, ttl, prefix, reason, message] of cases)
    fails(() => validateNewRule(r, ttl, NOW, LIMITS, prefix), reason, message, name);
});
