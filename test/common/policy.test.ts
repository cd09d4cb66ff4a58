import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, parseCidr } from '../../common/src/cidr.js';
import { decide, type PolicyRule } from '../../common/src/policy.js';

let nextId = 1n;
const rule = (cidr: string, action: 'deny' | 'allow', extra: Partial<PolicyRule> = {}): PolicyRule => ({
  id: nextId++,
  prefix: parseCidr(cidr),
  action,
  mode: 'enforce',
  direction: 'ingress',
  ...extra,
});

test('allow beats deny whatever the prefix lengths', () => {
  const allow8 = rule('10.0.0.0/8', 'allow');
  const deny32 = rule('10.1.2.3/32', 'deny');
  const d = decide([allow8, deny32], 'ingress', parseAddress('10.1.2.3'));
  assert.equal(d.verdict, 'pass');
  assert.equal(d.deciding, allow8);
  assert.deepEqual(
    d.matches.map((m) => m.role),
    ['shadowed_by_allow', 'deciding'],
  );
});

test('longest deny is counted; allow inside deny passes', () => {
  const deny8 = rule('10.0.0.0/8', 'deny');
  const deny16 = rule('10.1.0.0/16', 'deny');
  const allow24 = rule('10.1.2.0/24', 'allow');
  assert.equal(decide([deny8, deny16, allow24], 'ingress', parseAddress('10.1.3.1')).deciding, deny16);
  assert.equal(decide([deny8, deny16, allow24], 'ingress', parseAddress('10.1.3.1')).verdict, 'drop');
  assert.equal(decide([deny8, deny16, allow24], 'ingress', parseAddress('10.1.2.1')).verdict, 'pass');
  assert.equal(decide([deny8, deny16, allow24], 'ingress', parseAddress('11.0.0.1')).verdict, 'pass');
  assert.equal(decide([deny8], 'ingress', parseAddress('11.0.0.1'), 'drop').verdict, 'drop', 'allowlist default');
});

test('monitor mode, direction and same-prefix ties', () => {
  const mon = rule('192.0.2.0/24', 'deny', { mode: 'monitor' });
  assert.equal(decide([mon], 'ingress', parseAddress('192.0.2.9')).verdict, 'would_drop');
  assert.equal(decide([mon], 'egress', parseAddress('192.0.2.9')).verdict, 'pass');
  const enf = rule('192.0.2.0/24', 'deny');
  assert.equal(decide([mon, enf], 'ingress', parseAddress('192.0.2.9')).deciding, enf, 'enforce beats monitor on a tie');
});
