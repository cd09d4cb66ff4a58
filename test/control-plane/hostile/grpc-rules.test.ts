// Hostile input at the gRPC API boundary (RuleService, NodeService,
// CounterService, ExplainService): every field out of range, of an unknown
// enum value, holding NUL, too long or breaking its grammar is an
// INVALID_ARGUMENT naming the field, stores nothing, and the control plane
// goes on serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { GetCountersRequest } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainRequest } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { DeleteNodeRequest, GetNodeRequest, ListNodesRequest } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { Action, type Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { AddressOperation, ManageAddressRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { unaryCall } from '../../support/control-plane.js';
import { assertStillServes, grpcRejected, type Rig, startRig } from './rig.js';

let rig: Rig;
const U64_MAX = (1n << 64n) - 1n;
const INT8_OVER = 1n << 63n;

before(async () => {
  rig = await startRig();
  await rig.api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'kept' } });
});

after(async () => {
  await rig?.stop();
});

const invalid = (field: RegExp, reason = 'INVALID_FIELD') => ({ code: status.INVALID_ARGUMENT, reason, field });

test('ids and revisions beyond int8', async () => {
  await grpcRejected(rig, 'get 2^64-1', () => rig.api.get(U64_MAX), invalid(/^id /));
  await grpcRejected(rig, 'delete 2^63', () => rig.api.delete(INT8_OVER), invalid(/^id /));
  await grpcRejected(rig, 'batch delete', () => rig.api.batchDelete([1n, INT8_OVER]), invalid(/ids\[1\]/));
  await grpcRejected(
    rig,
    'update rule.id',
    () => rig.api.update({ rule: { id: U64_MAX, comment: 'x' }, updateMask: ['comment'] }),
    invalid(/rule\.id/),
  );
  await grpcRejected(
    rig,
    'create with rule.revision',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, revision: U64_MAX } }),
    invalid(/rule\.revision/),
  );
  await grpcRejected(
    rig,
    'counters rule_ids',
    () => unaryCall(rig.cp.clients.counters, 'getCounters', GetCountersRequest.fromPartial({ query: { ruleIds: [5n, U64_MAX] } })),
    invalid(/query\.rule_ids\[1\]/),
  );
  await assertStillServes(rig, 'big ids');
});

test('unknown enum values, impossible times and durations', async () => {
  await grpcRejected(
    rig,
    'action 99',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: 99 as Action } }),
    invalid(/rule\.action 99/, 'INVALID_ENUM'),
  );
  await grpcRejected(rig, 'direction -1', () => rig.api.list({ direction: -1 as Direction }), invalid(/direction -1/, 'INVALID_ENUM'));
  await grpcRejected(
    rig,
    'explain direction 40000',
    () => unaryCall(rig.cp.clients.explain, 'explain', ExplainRequest.fromPartial({ address: '192.0.2.1', direction: 40000 as Direction })),
    invalid(/direction 40000/, 'INVALID_ENUM'),
  );
  await grpcRejected(
    rig,
    'expire_time year 300000',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, expireTime: new Date(8.64e15) } }),
    invalid(/rule\.expire_time/),
  );
  await grpcRejected(
    rig,
    'ttl nanos 2e9',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY }, ttl: { seconds: 10n, nanos: 2_000_000_000 } }),
    invalid(/^ttl /),
  );
  await grpcRejected(
    rig,
    'ttl seconds 2^62',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY }, ttl: { seconds: 1n << 62n, nanos: 0 } }),
    invalid(/^ttl /),
  );
  await grpcRejected(
    rig,
    'manage operation 9',
    () =>
      unaryCall(
        rig.cp.clients.rules,
        'manageAddress',
        ManageAddressRequest.fromPartial({ operation: 9 as AddressOperation, address: '192.0.2.1' }),
      ),
    invalid(/operation 9/, 'INVALID_ENUM'),
  );
  await assertStillServes(rig, 'enums and times');
});

test('NUL, sizes and grammar of strings', async () => {
  await grpcRejected(
    rig,
    'NUL comment',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, comment: 'a\u0000' } }),
    invalid(/rule\.comment.*NUL/),
  );
  await grpcRejected(
    rig,
    'NUL selector value',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, selector: { role: 'web\u0000' } } }),
    invalid(/rule\.selector/),
  );
  await grpcRejected(
    rig,
    'control character in a selector value',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, selector: { role: 'web\u0007' } } }),
    invalid(/rule\.selector/, 'INVALID_SELECTOR'),
  );
  const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, 'v']));
  await grpcRejected(
    rig,
    '3,000 selector labels',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, selector: many } }),
    invalid(/rule\.selector/),
  );
  const long = Object.fromEntries(
    Array.from({ length: 12 }, (_, i) => [`${'k'.repeat(250)}${String(i).padStart(3, '0')}`, 'v'.repeat(253)]),
  );
  await grpcRejected(
    rig,
    'twelve 253-character pairs',
    () => rig.api.create({ rule: { cidr: '198.51.100.1', action: Action.ACTION_DENY, selector: long } }),
    invalid(/rule\.selector.*bytes/, 'INVALID_SELECTOR'),
  );
  await grpcRejected(
    rig,
    'import header selector of twelve long pairs',
    () => rig.api.import({ action: Action.ACTION_DENY, selector: long }, [['198.51.100.9']]),
    invalid(/header\.selector/, 'INVALID_SELECTOR'),
  );
  await grpcRejected(
    rig,
    '200 KB cidr',
    () => rig.api.create({ rule: { cidr: '2'.repeat(200_000), action: Action.ACTION_DENY } }),
    invalid(/rule\.cidr has 200000 characters/),
  );
  await grpcRejected(rig, 'NUL text filter', () => rig.api.list({ text: '\u0000' }), invalid(/^text/));
  await grpcRejected(rig, 'NUL covers_address', () => rig.api.list({ coversAddress: '192.0.2.1\u0000' }), invalid(/covers_address/));
  await grpcRejected(
    rig,
    'NUL explain node',
    () => unaryCall(rig.cp.clients.explain, 'explain', ExplainRequest.fromPartial({ address: '192.0.2.1', nodeName: 'n\u0000' })),
    invalid(/node_name/),
  );
  await grpcRejected(
    rig,
    'NUL manage address',
    () =>
      unaryCall(
        rig.cp.clients.rules,
        'manageAddress',
        ManageAddressRequest.fromPartial({ operation: AddressOperation.ADDRESS_OPERATION_BLOCK, address: '192.0.2.1\u0000' }),
      ),
    invalid(/address/),
  );
  await grpcRejected(
    rig,
    'NUL node name',
    () => unaryCall(rig.cp.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: 'a\u0000' })),
    invalid(/^name/),
  );
  await grpcRejected(
    rig,
    'update mask path 1,000 characters',
    () => rig.api.update({ rule: { id: 1n, comment: 'x' }, updateMask: ['c'.repeat(1000)] }),
    invalid(/update_mask\[0\]/),
  );
  await assertStillServes(rig, 'strings');
});

test('page tokens and sizes', async () => {
  const forged = Buffer.from(JSON.stringify({ a: '99999999999999999999999', f: 'AAAAAAAAAAAAAAAA' })).toString('base64url');
  await grpcRejected(rig, 'forged rules token', () => rig.api.list({ pageToken: forged }), invalid(/page_token/, 'INVALID_PAGE_TOKEN'));
  await grpcRejected(
    rig,
    'forged nodes token',
    () => unaryCall(rig.cp.clients.nodes, 'listNodes', ListNodesRequest.fromPartial({ pageToken: forged })),
    invalid(/page_token/, 'INVALID_PAGE_TOKEN'),
  );
  await grpcRejected(
    rig,
    'nodes page_size 5000',
    () => unaryCall(rig.cp.clients.nodes, 'listNodes', ListNodesRequest.fromPartial({ pageSize: 5000 })),
    invalid(/page_size/, 'INVALID_PAGE_SIZE'),
  );
  await grpcRejected(
    rig,
    'delete a node without a name',
    () => unaryCall(rig.cp.clients.nodes, 'deleteNode', DeleteNodeRequest.fromPartial({ name: '' })),
    invalid(/name/, 'NODE_NAME_REQUIRED'),
  );
  // A real token still pages.
  await rig.api.create({ rule: { cidr: '192.0.2.200/32', action: Action.ACTION_DENY } });
  const first = await rig.api.list({ pageSize: 1 });
  assert.notEqual(first.nextPageToken, '');
  const second = await rig.api.list({ pageSize: 1, pageToken: first.nextPageToken });
  assert.equal(second.rules.length, 1);
  assert.notEqual(second.rules[0]!.id, first.rules[0]!.id);
  await assertStillServes(rig, 'tokens');
});
