// RuleService/ManageAddress over real gRPC (the service behind /manage-ip and
// `fleetwall unblock`): block / allow / unblock one address fleet-wide, and
// an unblock that leaves the address blocked by broader rules says so and
// names them (STILL_BLOCKED), with allow-beats-deny, selectors and monitor
// mode taken into account.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import {
  AddressOperation,
  type DeepPartial,
  ManageAddressRequest,
  ManageAddressResult,
} from '../../proto/gen/fleetwall/v1/rule_service.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState } from '../support/rule-fixtures.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  api = rulesApi(cp.clients.rules);
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

const { BLOCK, ALLOW, UNBLOCK } = {
  BLOCK: AddressOperation.ADDRESS_OPERATION_BLOCK,
  ALLOW: AddressOperation.ADDRESS_OPERATION_ALLOW,
  UNBLOCK: AddressOperation.ADDRESS_OPERATION_UNBLOCK,
};

function manage(req: DeepPartial<ManageAddressRequest>) {
  return unaryCall(cp.clients.rules, 'manageAddress', ManageAddressRequest.fromPartial(req), 'test:manage');
}

async function exists(id: bigint): Promise<boolean> {
  const e = await api.get(id).then(
    () => undefined,
    (err) => err,
  );
  if (e === undefined) return true;
  assert.equal(e.code, status.NOT_FOUND);
  return false;
}

test('block, already blocked, allow turns it into an allow, already allowed, block of an allowlisted address, unblock of none', async () => {
  const blocked = await manage({ operation: BLOCK, address: '192.0.2.10', ttl: { seconds: 3600n, nanos: 0 }, comment: 'brute force' });
  assert.equal(blocked.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_BLOCKED);
  assert.equal(blocked.cidr, '192.0.2.10/32');
  assert.equal(blocked.rule!.action, Action.ACTION_DENY);
  assert.equal(blocked.rule!.direction, Direction.DIRECTION_INGRESS);
  assert.deepEqual(blocked.rule!.selector, {});
  assert.equal(blocked.rule!.comment, 'brute force');
  assert.equal(blocked.rule!.createdBy, 'local:loopback', 'the authenticated principal (x-fleetwall-actor is only a note)');
  const ttlMs = blocked.rule!.expireTime!.getTime() - Date.now();
  assert.ok(ttlMs > 3500_000 && ttlMs <= 3600_000, `ttl 1h sets the expiry an hour out (${ttlMs} ms)`);
  assert.deepEqual(blocked.coveringRules, []);

  const again = await manage({ operation: BLOCK, address: '192.0.2.10' });
  assert.equal(again.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_ALREADY_BLOCKED);
  assert.equal(again.rule!.id, blocked.rule!.id);
  assert.equal(again.revision, blocked.revision, 'nothing changed: the current revision');

  const allowed = await manage({ operation: ALLOW, address: '192.0.2.10' });
  assert.equal(allowed.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_CHANGED_TO_ALLOW);
  assert.equal(allowed.rule!.id, blocked.rule!.id, 'the same rule, now an allow');
  assert.equal(allowed.rule!.action, Action.ACTION_ALLOW);
  assert.equal(allowed.rule!.comment, 'manage-ip allow', 'the default comment');
  assert.equal(allowed.revision, blocked.revision + 1n);
  assert.equal(
    (await manage({ operation: ALLOW, address: '192.0.2.10' })).result,
    ManageAddressResult.MANAGE_ADDRESS_RESULT_ALREADY_ALLOWED,
  );

  const dup = await callError(manage({ operation: BLOCK, address: '192.0.2.10' }));
  assert.equal(dup.code, status.ALREADY_EXISTS);
  assert.equal(errorInfoOf(dup)?.reason, 'DUPLICATE_RULE');
  assert.equal(errorInfoOf(dup)?.metadata.existing_rule_id, String(blocked.rule!.id));
  assert.match(dup.details, /allowlisted by rule \d+; allow beats deny/);

  const none = await callError(manage({ operation: UNBLOCK, address: '192.0.2.11' }));
  assert.equal(none.code, status.NOT_FOUND);
  assert.equal(errorInfoOf(none)?.reason, 'NOT_BLOCKED');

  const fresh = await manage({ operation: ALLOW, address: '2001:db8:77::/48' });
  assert.equal(fresh.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_ALLOWED);
  assert.equal(fresh.rule!.cidr, '2001:db8:77::/48');
});

test('unblock with a broader deny still covering the address: STILL_BLOCKED, the /32 removed, the covering rule named', async () => {
  const net = await api.create({ rule: { cidr: '198.51.100.64/26', action: Action.ACTION_DENY } });
  const host = await manage({ operation: BLOCK, address: '198.51.100.77' });
  const un = await manage({ operation: UNBLOCK, address: '198.51.100.77' });
  assert.equal(un.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_STILL_BLOCKED);
  assert.equal(un.rule!.id, host.rule!.id, "the deleted rule is the address's own");
  assert.equal(await exists(host.rule!.id), false);
  assert.equal(un.revision, host.revision + 1n);
  assert.deepEqual(
    un.coveringRules.map((r) => [r.id, r.cidr]),
    [[net.rule!.id, '198.51.100.64/26']],
  );
  const explain = await unaryCall(cp.clients.explain, 'explain', {
    address: '198.51.100.77',
    nodeName: '',
    direction: Direction.DIRECTION_INGRESS,
  });
  assert.equal(explain.decidingRule?.id, net.rule!.id, 'Explain agrees: the /26 decides');

  // The same address with the /26 gone: plainly unblocked.
  await manage({ operation: BLOCK, address: '198.51.100.77' });
  await api.delete(net.rule!.id);
  const clean = await manage({ operation: UNBLOCK, address: '198.51.100.77' });
  assert.equal(clean.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_UNBLOCKED);
  assert.deepEqual(clean.coveringRules, []);
});

test('what still blocks: enforce denies covering the whole address, selectors included, unless an allow overrides them everywhere', async () => {
  // Each case: rules besides the address's own /32 deny, and which of them must be named.
  const cases: Array<{ name: string; address: string; others: Array<Record<string, unknown>>; blocking: number[] }> = [
    {
      name: 'a deny on some nodes (selector) still blocks there',
      address: '10.20.1.5',
      others: [{ cidr: '10.20.1.0/24', action: Action.ACTION_DENY, selector: { role: 'web' } }],
      blocking: [0],
    },
    {
      name: 'a monitor deny only counts: unblocked',
      address: '10.20.2.5',
      others: [{ cidr: '10.20.2.0/24', action: Action.ACTION_DENY, mode: Mode.MODE_MONITOR }],
      blocking: [],
    },
    {
      name: 'a fleet-wide allow covering the address beats the deny: unblocked',
      address: '10.20.3.5',
      others: [
        { cidr: '10.20.0.0/16', action: Action.ACTION_DENY },
        { cidr: '10.20.3.0/28', action: Action.ACTION_ALLOW },
      ],
      blocking: [],
    },
    {
      name: 'an allow on the nodes the deny selects beats it; an allow on other nodes does not beat a fleet-wide deny',
      address: '10.21.4.5',
      others: [
        { cidr: '10.21.4.0/24', action: Action.ACTION_DENY, selector: { role: 'web' } },
        { cidr: '10.21.4.0/25', action: Action.ACTION_ALLOW, selector: { role: 'web' } },
        { cidr: '10.21.0.0/16', action: Action.ACTION_DENY },
        { cidr: '10.21.4.0/26', action: Action.ACTION_ALLOW, selector: { role: 'db' } },
      ],
      blocking: [2],
    },
    {
      name: "egress rules do not block the address's packets in: unblocked",
      address: '10.20.5.5',
      others: [{ cidr: '10.20.5.0/24', action: Action.ACTION_DENY, direction: Direction.DIRECTION_EGRESS }],
      blocking: [],
    },
    {
      name: 'a rule inside a CIDR does not cover all of it: unblocked',
      address: '10.20.6.0/24',
      others: [{ cidr: '10.20.6.0/32', action: Action.ACTION_DENY }],
      blocking: [],
    },
    {
      name: 'several, longest prefix first',
      address: '10.22.7.5',
      others: [
        { cidr: '10.0.0.0/8', action: Action.ACTION_DENY },
        { cidr: '10.22.7.0/24', action: Action.ACTION_DENY },
        { cidr: '10.22.7.5/32', action: Action.ACTION_DENY, selector: { role: 'edge' } },
      ],
      blocking: [2, 1, 0],
    },
  ];
  for (const c of cases) {
    const ids: bigint[] = [];
    for (const rule of c.others) ids.push((await api.create({ rule })).rule!.id);
    const own = await manage({ operation: BLOCK, address: c.address });
    assert.equal(own.result, ManageAddressResult.MANAGE_ADDRESS_RESULT_BLOCKED, `${c.name}: its own rule`);
    const un = await manage({ operation: UNBLOCK, address: c.address });
    assert.equal(await exists(own.rule!.id), false, `${c.name}: the own rule is deleted`);
    assert.equal(
      un.result,
      c.blocking.length > 0 ? ManageAddressResult.MANAGE_ADDRESS_RESULT_STILL_BLOCKED : ManageAddressResult.MANAGE_ADDRESS_RESULT_UNBLOCKED,
      c.name,
    );
    assert.deepEqual(
      un.coveringRules.map((r) => r.id),
      c.blocking.map((i) => ids[i]!),
      `${c.name}: the rules named`,
    );
    await api.batchDelete(ids); // so no case's rules cover another's address
  }
});

test('bad requests: a catalogued reason, nothing stored', async () => {
  const before = await storeState(url);
  const cases: Array<[string, DeepPartial<ManageAddressRequest>, status, string, RegExp]> = [
    ['no operation', { address: '192.0.2.1' }, status.INVALID_ARGUMENT, 'MISSING_FIELD', /missing field "operation"/],
    // An enum value the proto does not define is refused at the edge, before the service (INVALID_ENUM).
    [
      'unknown operation',
      { operation: 9 as AddressOperation, address: '192.0.2.1' },
      status.INVALID_ARGUMENT,
      'INVALID_ENUM',
      /operation 9/,
    ],
    ['no address', { operation: BLOCK }, status.INVALID_ARGUMENT, 'MISSING_FIELD', /missing field "address"/],
    ['bad address', { operation: BLOCK, address: '999.1.1.1' }, status.INVALID_ARGUMENT, 'INVALID_CIDR', /^address: .*999\.1\.1\.1/],
    ['host bits', { operation: UNBLOCK, address: '10.1.2.3/8' }, status.INVALID_ARGUMENT, 'HOST_BITS_SET', /10\.0\.0\.0\/8/],
    [
      'negative ttl',
      { operation: BLOCK, address: '192.0.2.1', ttl: { seconds: -5n, nanos: 0 } },
      status.INVALID_ARGUMENT,
      'INVALID_TTL',
      /positive/,
    ],
  ];
  for (const [name, req, code, reason, message] of cases) {
    const e = await callError(manage(req));
    assert.equal(e.code, code, `${name}: code`);
    assert.equal(errorInfoOf(e)?.reason, reason, `${name}: reason`);
    assert.match(e.details, message, `${name}: message`);
  }
  assert.deepEqual(await storeState(url), before, 'nothing stored');
});
