// control-plane/src/rules/selector.ts, table by table: the canonical key
// (part of a rule's identity), matching a node's labels, and validation of
// request selectors with the agents' label grammar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { parseSelectorKey, selectorKey, selectorMatches, validateSelector } from '../../control-plane/src/rules/selector.js';

test('selectorKey: sorted-key JSON, so equal selectors have equal keys; parseSelectorKey reverses it', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{}, '{}'],
    [{ role: 'web' }, '{"role":"web"}'],
    [{ zone: 'a', role: 'web' }, '{"role":"web","zone":"a"}'],
    [{ role: 'web', zone: 'a' }, '{"role":"web","zone":"a"}'],
    [{ b: '', a: 'x' }, '{"a":"x","b":""}'],
    [{ 'topology.io/zone': 'eu-1', app: 'api' }, '{"app":"api","topology.io/zone":"eu-1"}'],
  ];
  for (const [sel, key] of cases) {
    assert.equal(selectorKey(sel), key, JSON.stringify(sel));
    assert.deepEqual(parseSelectorKey(key), sel, key);
  }
  assert.notEqual(selectorKey({ role: 'web' }), selectorKey({ role: 'db' }));
  assert.notEqual(selectorKey({ role: 'web' }), selectorKey({ role: 'web', zone: 'a' }));
});

test('selectorMatches: every selector label must equal the node label; empty selects every node', () => {
  const node = { role: 'web', zone: 'a', host: 'web-1' };
  const cases: Array<[Record<string, string>, Record<string, string>, boolean]> = [
    [{}, node, true],
    [{}, {}, true],
    [{ role: 'web' }, node, true],
    [{ role: 'web', zone: 'a' }, node, true],
    [{ role: 'web', zone: 'b' }, node, false],
    [{ role: 'db' }, node, false],
    [{ rack: '7' }, node, false],
    [{ role: 'web' }, {}, false],
    [{ role: '' }, { role: '' }, true],
    [{ role: '' }, {}, false],
    [{ Role: 'web' }, node, false],
  ];
  for (const [sel, labels, want] of cases)
    assert.equal(selectorMatches(sel, labels), want, `${JSON.stringify(sel)} on ${JSON.stringify(labels)}`);
});

test('validateSelector: valid selectors come back equal; each invalid label is INVALID_SELECTOR naming the field and key', () => {
  const good: Record<string, string>[] = [{}, { role: 'web' }, { 'topology.io/zone': 'eu-1', tier: '' }, { a: 'x'.repeat(253) }];
  for (const sel of good) {
    assert.deepEqual(validateSelector(sel, 'rule.selector'), sel);
  }
  const bad: Array<[Record<string, string>, string, RegExp]> = [
    [{ '': 'x' }, '', /empty label key/],
    [{ 'team name': 'x' }, 'team name', /letters, digits/],
    [{ '-role': 'x' }, '-role', /starting and ending with a letter or digit/],
    [{ 'role-': 'x' }, 'role-', /starting and ending/],
    [{ role: 'a,b' }, 'role', /without , = or spaces/],
    [{ role: 'a=b' }, 'role', /without , = or spaces/],
    [{ role: 'a b' }, 'role', /without , = or spaces/],
    [{ role: 'x'.repeat(254) }, 'role', /at most 253/],
    [{ ok: 'yes', ['k'.repeat(300)]: 'v' }, 'k'.repeat(63), /letters, digits/],
  ];
  for (const [sel, key, message] of bad) {
    assert.throws(
      () => validateSelector(sel, 'requests[2].rule.selector'),
      (e: unknown) => {
        assert.ok(e instanceof FleetwallError);
        assert.equal(e.reason, 'INVALID_SELECTOR');
        assert.match(e.message, /^requests\[2\]\.rule\.selector has /);
        assert.match(e.message, message);
        assert.deepEqual(e.metadata, { field: 'requests[2].rule.selector', key });
        return true;
      },
      JSON.stringify(sel).slice(0, 80),
    );
  }
});
