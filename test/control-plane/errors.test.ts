// The one mapper from thrown errors to gRPC status, and what callers see
// when Postgres goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Writable } from 'node:stream';
import { CATALOGUE } from '../../control-plane/src/errors/catalogue.js';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { errorInfoOf } from '../../control-plane/src/errors/status-details.js';
import { toGrpcStatus } from '../../control-plane/src/errors/to-grpc-status.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, startTestControlPlane } from '../support/control-plane.js';
import { startTestPostgres } from '../support/postgres.js';
import { rulesApi } from './support/rules.js';

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
