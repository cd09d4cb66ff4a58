// control-plane/src/rules/update-mask.ts, table by table: which update_mask
// paths are accepted (and how they are spelled), which are refused with which
// reason, and what applyUpdate keeps, replaces and validates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { applyUpdate, MUTABLE_PATHS, type MutablePath, parseUpdateMask } from '../../control-plane/src/rules/update-mask.js';
import { Action, Direction, Mode, Rule } from '../../proto/gen/fleetwall/v1/rule.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const LIMITS = { maxCommentLength: 20 };
const LATER = new Date('2030-01-02T00:00:00Z');

function fails(fn: () => unknown, reason: string, message: RegExp, what: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof FleetwallError, `${what}: a FleetwallError`);
      assert.equal(e.reason, reason, `${what}: reason`);
      assert.match(e.message, message, `${what}: message`);
      return true;
    },
    what,
  );
}

test('parseUpdateMask: accepted paths, snake_case or the JSON camelCase spelling, "*" for all', () => {
  const cases: Array<[string[], MutablePath[]]> = [
    [['comment'], ['comment']],
    [[' comment '], ['comment']],
    [['expire_time'], ['expire_time']],
    [['expireTime'], ['expire_time']],
    [
      ['action', 'mode'],
      ['action', 'mode'],
    ],
    [['comment', 'comment'], ['comment']],
    [['*'], [...MUTABLE_PATHS]],
    [['*', 'comment'], [...MUTABLE_PATHS]],
    [
      ['selector', 'direction', 'expire_time'],
      ['selector', 'direction', 'expire_time'],
    ],
  ];
  for (const [paths, want] of cases) assert.deepEqual([...parseUpdateMask(paths)].sort(), [...want].sort(), paths.join(','));
  assert.deepEqual([...MUTABLE_PATHS].sort(), ['action', 'comment', 'direction', 'expire_time', 'mode', 'selector']);
});

test('parseUpdateMask: refused paths and their reasons', () => {
  const cases: Array<[string[], string, RegExp]> = [
    [[], 'INVALID_UPDATE_MASK', /update_mask is empty/],
    [['cidr'], 'IMMUTABLE_FIELD', /cidr cannot change: delete the rule and create one/],
    [['comment', 'cidr'], 'IMMUTABLE_FIELD', /cidr cannot change/],
    [['id'], 'IMMUTABLE_FIELD', /id is set by the server/],
    [['create_time'], 'IMMUTABLE_FIELD', /set by the server/],
    [['createTime'], 'IMMUTABLE_FIELD', /set by the server/],
    [['update_time'], 'IMMUTABLE_FIELD', /set by the server/],
    [['revision'], 'IMMUTABLE_FIELD', /set by the server/],
    [['createdBy'], 'IMMUTABLE_FIELD', /set by the server/],
    [['ttl'], 'INVALID_UPDATE_MASK', /path "ttl" is not a rule field that can change/],
    [['Comment'], 'INVALID_UPDATE_MASK', /path "Comment"/],
    [[''], 'INVALID_UPDATE_MASK', /path ""/],
    [['rule.comment'], 'INVALID_UPDATE_MASK', /path "rule.comment"/],
  ];
  for (const [paths, reason, message] of cases) fails(() => parseUpdateMask(paths), reason, message, JSON.stringify(paths));
});

const CURRENT = Rule.fromPartial({
  id: 7n,
  cidr: '203.0.113.0/24',
  action: Action.ACTION_DENY,
  direction: Direction.DIRECTION_INGRESS,
  mode: Mode.MODE_MONITOR,
  selector: { role: 'web' },
  expireTime: LATER,
  comment: 'scanner',
});

test('applyUpdate: masked fields come from the input, the others stay; the CIDR never changes', () => {
  const input = Rule.fromPartial({
    cidr: '10.0.0.0/8',
    action: Action.ACTION_DENY,
    direction: Direction.DIRECTION_EGRESS,
    mode: Mode.MODE_ENFORCE,
    selector: { zone: 'b', role: 'db' },
    comment: 'changed',
  });
  const cases: Array<[MutablePath[], Partial<Record<string, unknown>>]> = [
    [['comment'], { comment: 'changed' }],
    [['direction'], { direction: Direction.DIRECTION_EGRESS }],
    [['mode'], { mode: Mode.MODE_ENFORCE }],
    [['selector'], { selector: { zone: 'b', role: 'db' }, selectorKey: '{"role":"db","zone":"b"}' }],
    [['expire_time'], { expireTime: null }],
    [
      [...MUTABLE_PATHS],
      {
        direction: Direction.DIRECTION_EGRESS,
        mode: Mode.MODE_ENFORCE,
        selector: { zone: 'b', role: 'db' },
        selectorKey: '{"role":"db","zone":"b"}',
        expireTime: null,
        comment: 'changed',
      },
    ],
  ];
  const kept = {
    cidr: '203.0.113.0/24',
    action: Action.ACTION_DENY,
    direction: Direction.DIRECTION_INGRESS,
    mode: Mode.MODE_MONITOR,
    selector: { role: 'web' },
    selectorKey: '{"role":"web"}',
    expireTime: LATER,
    comment: 'scanner',
  };
  for (const [mask, changed] of cases) {
    const { prefix, ...spec } = applyUpdate(CURRENT, input, new Set(mask), NOW, LIMITS);
    assert.deepEqual(spec, { ...kept, ...changed }, mask.join(','));
    assert.deepEqual(prefix, { family: 4, bytes: new Uint8Array([203, 0, 113, 0]), len: 24 }, `${mask.join(',')}: the stored CIDR`);
  }
});

test('applyUpdate: defaults for unspecified enums, a new expiry, and every check on the masked fields', () => {
  const spec = (input: Partial<Rule>, mask: MutablePath[]) => applyUpdate(CURRENT, Rule.fromPartial(input), new Set(mask), NOW, LIMITS);
  assert.equal(spec({}, ['direction']).direction, Direction.DIRECTION_INGRESS, 'unspecified direction: ingress');
  assert.equal(spec({}, ['mode']).mode, Mode.MODE_ENFORCE, 'unspecified mode: enforce');
  assert.deepEqual(spec({ expireTime: new Date('2031-01-01T00:00:00Z') }, ['expire_time']).expireTime, new Date('2031-01-01T00:00:00Z'));
  assert.deepEqual(spec({ selector: {} }, ['selector']).selectorKey, '{}', 'an empty selector: every node');
  assert.equal(spec({ action: Action.ACTION_ALLOW, mode: Mode.MODE_ENFORCE }, ['action', 'mode']).action, Action.ACTION_ALLOW);

  const cases: Array<[Partial<Rule>, MutablePath[], string, RegExp]> = [
    [{}, ['action'], 'ACTION_REQUIRED', /rule\.action is required/],
    [{ action: 9 as Action }, ['action'], 'INVALID_ENUM', /rule\.action 9 is not a known value/],
    [{ direction: 5 as Direction }, ['direction'], 'INVALID_ENUM', /rule\.direction 5/],
    [{ mode: 3 as Mode }, ['mode'], 'INVALID_ENUM', /rule\.mode 3/],
    // The stored rule is in monitor mode: turning it into an allow needs mode too.
    [{ action: Action.ACTION_ALLOW }, ['action'], 'MONITOR_ON_ALLOW', /monitor mode applies to deny rules only/],
    [{ selector: { 'bad key': 'x' } }, ['selector'], 'INVALID_SELECTOR', /^rule\.selector has /],
    [{ expireTime: NOW }, ['expire_time'], 'EXPIRY_IN_PAST', /rule\.expire_time .* is not in the future/],
    [{ expireTime: new Date('2029-01-01T00:00:00Z') }, ['expire_time'], 'EXPIRY_IN_PAST', /not in the future/],
    [{ comment: 'x'.repeat(21) }, ['comment'], 'COMMENT_TOO_LONG', /rule\.comment has 21 characters; at most 20/],
  ];
  for (const [input, mask, reason, message] of cases)
    fails(() => spec(input, mask), reason, message, `${mask.join(',')} ${JSON.stringify(input)}`);
  // Fields outside the mask are not checked: a too-long comment that is not being changed is fine.
  assert.equal(spec({ comment: 'x'.repeat(21) }, ['mode']).comment, 'scanner');
});
