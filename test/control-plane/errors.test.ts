// The one mapper from thrown errors to gRPC status, and what callers see
// when Postgres goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { CATALOGUE } from '../../control-plane/src/errors/catalogue.js';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { errorInfoOf } from '../../control-plane/src/errors/status-details.js';
import { toGrpcStatus } from '../../control-plane/src/errors/to-grpc-status.js';
import { httpStatusOf } from '../../control-plane/src/http/router.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, startTestControlPlane } from '../support/control-plane.js';
import { startTestPostgres } from '../support/postgres.js';
import { rulesApi } from '../support/rule-fixtures.js';

function capture() {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _e, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  return { logger, lines };
}

test('catalogued errors keep code, message, reason and metadata', () => {
  const { logger } = capture();
  const st = toGrpcStatus(new FleetwallError('DUPLICATE_RULE', 'rule 7 exists', { existing_rule_id: '7' }), logger, 'm');
  assert.equal(st.code, status.ALREADY_EXISTS);
  assert.equal(st.details, 'rule 7 exists');
  const info = errorInfoOf({ metadata: st.metadata! });
  assert.deepEqual(info, { reason: 'DUPLICATE_RULE', domain: 'fleetwall.dev', metadata: { existing_rule_id: '7' } });
});

test('unknown errors: INTERNAL "internal error", logged with the stack, never leaked', () => {
  const { logger, lines } = capture();
  const st = toGrpcStatus(new Error('password=hunter2 in a stack'), logger, 'RuleService/CreateRule');
  assert.equal(st.code, status.INTERNAL);
  assert.equal(st.details, 'internal error');
  assert.equal(errorInfoOf({ metadata: st.metadata! })!.reason, 'INTERNAL');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /hunter2/);
  assert.match(lines[0]!, /"stack"/);
});

test('every catalogue entry has a code and a message', () => {
  for (const [reason, e] of Object.entries(CATALOGUE)) {
    assert.match(reason, /^[A-Z][A-Z0-9_]{0,62}$/);
    assert.ok(e.message.length > 0);
    assert.ok(e.code > 0 && e.code <= 16);
  }
});

test('control-plane/README.md lists every catalogue reason, with its gRPC code and HTTP status, and no other', () => {
  const readme = readFileSync(new URL('../../control-plane/README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors'), readme.indexOf('\n## ', readme.indexOf('\n## Errors') + 1));
  const rows = section
    .split('\n')
    .map((l) => /^\|\s*`([A-Z0-9_]+)`\s*\|\s*([A-Z_]+)\s*\|\s*(\d{3})\s*\|\s*(.+?)\s*\|$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  assert.ok(rows.length > 0, 'an error table in the Errors section');
  assert.deepEqual(rows.map((m) => m[1]).sort(), Object.keys(CATALOGUE).sort(), 'the same reasons as the catalogue');
  for (const [, reason, code, http, meaning] of rows) {
    const e = CATALOGUE[reason as keyof typeof CATALOGUE];
    assert.equal(code, status[e.code], `${reason}: gRPC code`);
    assert.equal(Number(http), httpStatusOf(reason as keyof typeof CATALOGUE), `${reason}: HTTP status`);
    assert.ok(meaning!.length > 0, `${reason}: a meaning`);
  }
});

test('Postgres gone: UNAVAILABLE STORE_UNAVAILABLE, not INTERNAL', async () => {
  const pg = await startTestPostgres();
  const cp = await startTestControlPlane(await pg.newDatabase());
  try {
    await pg.stop();
    const e = await callError(rulesApi(cp.clients.rules).create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } }));
    assert.equal(e.code, status.UNAVAILABLE);
    assert.equal(errorInfoOf(e)?.reason, 'STORE_UNAVAILABLE');
  } finally {
    await cp.stop();
    await pg.stop();
  }
});
