import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDurationMs } from '../../common/src/duration.js';

test('one duration grammar: units required, compounds', () => {
  assert.equal(parseDurationMs('250ms'), 250);
  assert.equal(parseDurationMs('90s'), 90_000);
  assert.equal(parseDurationMs('15m'), 900_000);
  assert.equal(parseDurationMs('1h30m'), 5_400_000);
  assert.equal(parseDurationMs('1.5h'), 5_400_000);
  assert.equal(parseDurationMs('7d'), 604_800_000);
  assert.equal(parseDurationMs(' 2m '), 120_000);
  for (const bad of ['', '3600', 'soon', '10 minutes', '-5s', '1h 30m', '5x', 'm', '1.s', 's1']) {
    assert.equal(parseDurationMs(bad), undefined, bad);
  }
});
