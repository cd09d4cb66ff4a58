// Every kind of bad input: a clear gRPC status (code, message saying what is
// wrong and how to fix it, google.rpc.ErrorInfo reason), and nothing stored
// (no rule, revision, change-log or audit row).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState } from '../support/rule-fixtures.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;
const MAX_MESSAGE = 64 * 1024;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, { maxBatch: 5, maxImportLines: 10, maxMessageBytes: MAX_MESSAGE, maxCommentLength: 100 });
  api = rulesApi(cp.clients.rules);
  // Something already stored, to collide with and to see it is untouched.
  await api.create({ rule: { cidr: '10.0.0.0/8', action: Action.ACTION_ALLOW, comment: 'existing' } });
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

async function rejected(call: () => Promise<unknown>, code: status, reason: string, message: RegExp): Promise<ServiceError> {
  const before = await storeState(url);
  const e = await callError(call());
  assert.equal(e.code, code, `code ${status[e.code]}: ${e.details}`);
  assert.match(e.details, message);
  const info = errorInfoOf(e);
  assert.ok(info, 'an ErrorInfo detail');
  assert.equal(info.reason, reason);
  assert.equal(info.domain, 'fleetwall.dev');
  assert.deepEqual(await storeState(url), before, 'nothing stored');
  return e;
}

describe('CreateRule', () => {
  test('malformed CIDR', async () => {
    for (const cidr of ['10.0.0/8', 'banana', '10.0.0.0/33', '2001:db8::/129', '010.0.0.0/8', '']) {
      await rejected(
        () => api.create({ rule: { cidr, action: Action.ACTION_DENY } }),
        status.INVALID_ARGUMENT,
        'INVALID_CIDR',
        /rule\.cidr.*(not a CIDR|prefix length|empty)/,
      );
    }
  });

  test('host bits set: the message names the canonical form', async () => {
    const e = await rejected(
      () => api.create({ rule: { cidr: '192.168.1.77/24', action: Action.ACTION_DENY } }),
      status.INVALID_ARGUMENT,
      'HOST_BITS_SET',
      /did you mean 192\.168\.1\.0\/24\?/,
    );
    assert.equal(errorInfoOf(e)!.metadata.canonical, '192.168.1.0/24');
    await rejected(
      () => api.create({ rule: { cidr: '2001:db8::1/32', action: Action.ACTION_DENY } }),
      status.INVALID_ARGUMENT,
      'HOST_BITS_SET',
      /2001:db8::\/32/,
    );
  });

  test('unknown enum values', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: 7 as Action } }),
      status.INVALID_ARGUMENT,
      'INVALID_ENUM',
      /rule\.action 7 .*ACTION_DENY, ACTION_ALLOW/,
    );
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, direction: 9 as Direction } }),
      status.INVALID_ARGUMENT,
      'INVALID_ENUM',
      /rule\.direction 9/,
    );
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, mode: 5 as Mode } }),
      status.INVALID_ARGUMENT,
      'INVALID_ENUM',
      /rule\.mode 5/,
    );
  });

  test('unspecified action', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24' } }),
      status.INVALID_ARGUMENT,
      'ACTION_REQUIRED',
      /action is required: ACTION_DENY/,
    );
    await rejected(() => api.create({}), status.INVALID_ARGUMENT, 'RULE_REQUIRED', /rule is required/);
  });

  test('monitor mode on an allow rule', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_ALLOW, mode: Mode.MODE_MONITOR } }),
      status.INVALID_ARGUMENT,
      'MONITOR_ON_ALLOW',
      /deny rules only/,
    );
  });

  test('empty selector key', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, selector: { '': 'web' } } }),
      status.INVALID_ARGUMENT,
      'INVALID_SELECTOR',
      /empty label key/,
    );
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, selector: { '  ': 'web' } } }),
      status.INVALID_ARGUMENT,
      'INVALID_SELECTOR',
      /empty label key/,
    );
  });

  test('expiry in the past, bad ttl, both set', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, expireTime: new Date(Date.now() - 1000) } }),
      status.INVALID_ARGUMENT,
      'EXPIRY_IN_PAST',
      /not in the future/,
    );
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY }, ttl: { seconds: -5n, nanos: 0 } }),
      status.INVALID_ARGUMENT,
      'INVALID_TTL',
      /ttl must be positive/,
    );
    await rejected(
      () =>
        api.create({
          rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, expireTime: new Date(Date.now() + 60_000) },
          ttl: { seconds: 60n, nanos: 0 },
        }),
      status.INVALID_ARGUMENT,
      'CONFLICTING_EXPIRY',
      /both set/,
    );
  });

  test('duplicate rule: the message names the existing rule and its action', async () => {
    const existing = (await api.list({ text: 'existing' })).rules[0]!;
    const e = await rejected(
      () => api.create({ rule: { cidr: '10.0.0.0/8', action: Action.ACTION_DENY } }),
      status.ALREADY_EXISTS,
      'DUPLICATE_RULE',
      new RegExp(`rule ${existing.id} \\(allow 10\\.0\\.0\\.0/8`),
    );
    assert.equal(errorInfoOf(e)!.metadata.existing_rule_id, existing.id.toString());
    assert.equal(errorInfoOf(e)!.metadata.existing_action, 'ACTION_ALLOW');
    // The same CIDR with another direction or selector is not a duplicate.
    const egress = await api.create({ rule: { cidr: '10.0.0.0/8', action: Action.ACTION_DENY, direction: Direction.DIRECTION_EGRESS } });
    await api.delete(egress.rule!.id);
  });

  test('comment too long', async () => {
    await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'x'.repeat(101) } }),
      status.INVALID_ARGUMENT,
      'COMMENT_TOO_LONG',
      /101 characters; at most 100/,
    );
  });

  test('oversized message: catalogued error up to 2x the limit (1 MiB over at most), grpc-js beyond', async () => {
    const e = await rejected(
      () => api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'x'.repeat(MAX_MESSAGE + 10) } }),
      status.RESOURCE_EXHAUSTED,
      'MESSAGE_TOO_LARGE',
      /at most 65536/,
    );
    assert.equal(errorInfoOf(e)!.metadata.max_bytes, String(MAX_MESSAGE));
    const before = await storeState(url);
    const huge = await callError(
      api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'x'.repeat(5 * MAX_MESSAGE) } }),
    );
    assert.equal(huge.code, status.RESOURCE_EXHAUSTED);
    assert.match(huge.details, /larger than max/);
    assert.deepEqual(await storeState(url), before);
  });
});

describe('BatchCreateRules', () => {
  test('over the configured limit', async () => {
    const requests = Array.from({ length: 6 }, (_, i) => ({ rule: { cidr: `192.0.2.${i}/32`, action: Action.ACTION_DENY } }));
    await rejected(() => api.batchCreate({ requests }), status.INVALID_ARGUMENT, 'BATCH_TOO_LARGE', /6 entries; at most 5/);
  });

  test('empty', async () => {
    await rejected(() => api.batchCreate({ requests: [] }), status.INVALID_ARGUMENT, 'EMPTY_BATCH', /empty/);
  });

  test('one invalid entry rejects the batch, naming its index', async () => {
    const requests = [
      { rule: { cidr: '192.0.2.1/32', action: Action.ACTION_DENY } },
      { rule: { cidr: '192.0.2.2/32', action: Action.ACTION_DENY } },
      { rule: { cidr: '192.0.2.3/24', action: Action.ACTION_DENY } },
    ];
    const e = await rejected(
      () => api.batchCreate({ requests }),
      status.INVALID_ARGUMENT,
      'HOST_BITS_SET',
      /requests\[2\]\.rule\.cidr.*nothing in the batch was stored/,
    );
    assert.equal(errorInfoOf(e)!.metadata.index, '2');
  });

  test('a duplicate of a stored rule, or inside the batch, rejects it all', async () => {
    await rejected(
      () =>
        api.batchCreate({
          requests: [
            { rule: { cidr: '192.0.2.9/32', action: Action.ACTION_DENY } },
            { rule: { cidr: '10.0.0.0/8', action: Action.ACTION_DENY } },
          ],
        }),
      status.ALREADY_EXISTS,
      'DUPLICATE_RULE',
      /requests\[1\]\.rule: rule \d+ \(allow 10\.0\.0\.0\/8/,
    );
    await rejected(
      () =>
        api.batchCreate({
          requests: [
            { rule: { cidr: '192.0.2.9', action: Action.ACTION_DENY } },
            { rule: { cidr: '192.0.2.9/32', action: Action.ACTION_ALLOW } },
          ],
        }),
      status.ALREADY_EXISTS,
      'DUPLICATE_RULE',
      /requests\[1\]\.rule: same CIDR 192\.0\.2\.9\/32.*as requests\[0\]\.rule/,
    );
  });
});

describe('ImportRules', () => {
  test('over the configured line limit: nothing stored', async () => {
    const lines = Array.from({ length: 11 }, (_, i) => `198.51.100.${i}`);
    await rejected(
      () => api.import({ action: Action.ACTION_DENY }, [lines.slice(0, 6), lines.slice(6)]),
      status.INVALID_ARGUMENT,
      'IMPORT_TOO_LARGE',
      /more than 10 lines; nothing was stored/,
    );
  });

  test('no header, a second header, a bad header', async () => {
    await rejected(
      () => api.import(undefined, [['198.51.100.1']], { skipHeader: true }),
      status.INVALID_ARGUMENT,
      'IMPORT_HEADER_REQUIRED',
      /must carry the header/,
    );
    await rejected(
      () => api.import({ action: Action.ACTION_DENY }, [['198.51.100.1']], { extraHeader: true }),
      status.INVALID_ARGUMENT,
      'IMPORT_HEADER_REQUIRED',
      /second header/,
    );
    await rejected(() => api.import({}, [['198.51.100.1']]), status.INVALID_ARGUMENT, 'ACTION_REQUIRED', /header\.action is required/);
    await rejected(
      () => api.import({ action: Action.ACTION_DENY, selector: { '': 'x' } }, [['198.51.100.1']]),
      status.INVALID_ARGUMENT,
      'INVALID_SELECTOR',
      /header\.selector/,
    );
  });

  test('an oversized chunk', async () => {
    const big = Array.from({ length: 5000 }, () => '198.51.100.1'.padEnd(20, ' '));
    await rejected(
      () => api.import({ action: Action.ACTION_DENY }, [big]),
      status.RESOURCE_EXHAUSTED,
      'MESSAGE_TOO_LARGE',
      /accepts at most/,
    );
  });
});

describe('other requests', () => {
  test('update: bad mask, immutable field, bad values', async () => {
    const existing = (await api.list({ text: 'existing' })).rules[0]!;
    await rejected(
      () => api.update({ rule: { id: existing.id }, updateMask: ['id'] }),
      status.INVALID_ARGUMENT,
      'IMMUTABLE_FIELD',
      /set by the server/,
    );
    await rejected(
      () => api.update({ rule: { id: existing.id, selector: { '': 'x' } }, updateMask: ['selector'] }),
      status.INVALID_ARGUMENT,
      'INVALID_SELECTOR',
      /empty label key/,
    );
    await rejected(
      () => api.update({ rule: { id: existing.id, expireTime: new Date(1000) }, updateMask: ['expire_time'] }),
      status.INVALID_ARGUMENT,
      'EXPIRY_IN_PAST',
      /not in the future/,
    );
    await rejected(
      () => api.update({ rule: { id: existing.id, direction: 4 as Direction }, updateMask: ['direction'] }),
      status.INVALID_ARGUMENT,
      'INVALID_ENUM',
      /rule\.direction 4/,
    );
    await rejected(
      () => api.update({ rule: { id: existing.id, action: Action.ACTION_UNSPECIFIED }, updateMask: ['action'] }),
      status.INVALID_ARGUMENT,
      'ACTION_REQUIRED',
      /required/,
    );
  });

  test('batch delete over the limit, empty', async () => {
    await rejected(() => api.batchDelete([1n, 2n, 3n, 4n, 5n, 6n]), status.INVALID_ARGUMENT, 'BATCH_TOO_LARGE', /at most 5/);
    await rejected(() => api.batchDelete([]), status.INVALID_ARGUMENT, 'EMPTY_BATCH', /empty/);
  });

  test('list: negative page size, bad address, bad enum', async () => {
    await rejected(() => api.list({ pageSize: -1 }), status.INVALID_ARGUMENT, 'INVALID_PAGE_SIZE', /negative/);
    await rejected(
      () => api.list({ coversAddress: '10.0.0.0/8' }),
      status.INVALID_ARGUMENT,
      'INVALID_ADDRESS',
      /is a CIDR; give a single address/,
    );
    await rejected(() => api.list({ coversAddress: 'nope' }), status.INVALID_ARGUMENT, 'INVALID_ADDRESS', /not an IP address/);
    await rejected(() => api.list({ action: 3 as Action }), status.INVALID_ARGUMENT, 'INVALID_ENUM', /action 3/);
  });
});
