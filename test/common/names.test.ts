// common/src/names.ts: the node-name and interface-name grammars the agent's
// configuration and the control plane's Sync boundary share, and echo().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { echo } from '../../common/src/echo.js';
import { interfaceNameProblem, nodeNameProblem } from '../../common/src/names.js';

test('node names: letters, digits, . _ -, starting and ending with a letter or digit, at most 253', () => {
  for (const ok of ['web-1', 'edge-2.example.com', 'a', 'n_1', 'x'.repeat(253)]) assert.equal(nodeNameProblem(ok), undefined, ok);
  for (const bad of ['', '-web', 'web-', 'web 1', 'a\u0000b', 'a/b', 'é', 'x'.repeat(254), 'web;drop']) {
    assert.ok(nodeNameProblem(bad), JSON.stringify(bad));
  }
});

test('interface names: 1..15 bytes, no whitespace, "/", ":" or control characters', () => {
  for (const ok of ['eth0', 'veth-a.100', 'x'.repeat(15), 'wlp2s0']) assert.equal(interfaceNameProblem(ok), undefined, ok);
  for (const bad of ['', 'x'.repeat(16), 'eth 0', 'eth0:1', 'a/b', 'e\u0000', 'e\u001b', 'ééééééééé']) {
    assert.ok(interfaceNameProblem(bad), JSON.stringify(bad));
  }
});

test('echo quotes input and cuts it short, saying how long it was', () => {
  assert.equal(echo('abc'), '"abc"');
  assert.equal(echo('a\u0000'), '"a\\u0000"');
  const e = echo('x'.repeat(200_000));
  assert.ok(e.length < 100, e);
  assert.match(e, /\(200000 characters\)$/);
});
