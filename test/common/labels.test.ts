import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabelTextError, labelProblem, labelSetProblem, parseLabelText } from '../../common/src/labels.js';

test('label text: k=v lists, merged, validated', () => {
  assert.deepEqual(parseLabelText('role=web, zone=a'), { role: 'web', zone: 'a' });
  assert.deepEqual(parseLabelText(['role=web', 'topology.io/zone=eu-1']), { role: 'web', 'topology.io/zone': 'eu-1' });
  assert.deepEqual(parseLabelText(''), {});
  assert.deepEqual(parseLabelText('canary='), { canary: '' });
  for (const [bad, msg] of [
    ['web', /not key=value/],
    ['=web', /empty label key/],
    ['-x=1', /letters, digits/],
    ['team name=x', /letters, digits/],
    ['a=1,a=2', /twice/],
    ['a=b c', /without , = or spaces/],
  ] as const) {
    assert.throws(
      () => parseLabelText(bad),
      (e: unknown) => e instanceof LabelTextError && msg.test(e.message),
      bad,
    );
  }
  assert.equal(labelProblem('role', 'web'), undefined);
  assert.match(labelProblem('role', 'x'.repeat(254)) ?? '', /at most 253/);
});

test('label values hold no control characters; a label set has at most 64 labels', () => {
  for (const v of ['a\u0000b', 'a\u0007', 'tab\there', 'x\u007f'])
    assert.match(labelProblem('role', v) ?? '', /control characters/, JSON.stringify(v));
  const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
  assert.match(labelSetProblem(many) ?? '', /65 labels; at most 64/);
  assert.equal(labelSetProblem({ role: 'web', 'topology.io/zone': 'a' }), undefined);
  assert.throws(() => parseLabelText(Object.keys(many).map((k) => `${k}=v`)), /at most 64/);
  assert.ok((labelProblem('x'.repeat(5000), 'v') ?? '').length < 400, 'a long key is quoted cut short');
});
