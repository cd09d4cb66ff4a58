import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabelTextError, labelProblem, parseLabelText } from '../../common/src/labels.js';

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
