// The lockout guard over the API (issue 15 "what it must show": a deny
// covering the control plane's address is refused). A control plane with TLS
// and tokens bound to 0.0.0.0 (so every host address is a listen address),
// --protected-cidrs 10.99.0.0/16: a deny covering loopback, a listen
// address, a management network, an agent's connect address, or any /0 is
// refused FAILED_PRECONDITION / 409 LOCKOUT_PROTECTED naming it, and nothing
// is stored; an admin's force stores it and the audit row says what was
// overridden; an operator's force is PERMISSION_DENIED / 403.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { status } from '@grpc/grpc-js';
import { ListAuditEventsRequest } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { AddressOperation, ManageAddressRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { callError, errorInfoOf, unaryCall } from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { rulesApi, storeState, withSql } from '../../support/rule-fixtures.js';
import { httpsJson, startTlsControlPlane, type TlsControlPlane } from '../../support/tls-control-plane.js';

let pg: TestPostgres;
let url: string;
let t: TlsControlPlane;
let admin: ReturnType<typeof rulesApi>;
let operator: ReturnType<typeof rulesApi>;
let operatorToken: string;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  t = await startTlsControlPlane(url, { protectedCidrs: ['10.99.0.0/16'], protectedRefreshMs: 0 });
  admin = rulesApi(t.clients(t.adminToken).rules);
  operatorToken = (await t.makeToken('operator')).token;
  operator = rulesApi(t.clients(operatorToken).rules);
});

after(async () => {
  await t?.stop();
  await pg?.stop();
});

const deny = (cidr: string, extra: Record<string, unknown> = {}) => ({ rule: { cidr, action: Action.ACTION_DENY, ...extra } });

/** Expects a LOCKOUT_PROTECTED refusal naming `protectedCidr`, with nothing stored. */
async function refused(p: () => Promise<unknown>, protectedCidr: string, why: RegExp): Promise<void> {
  const before = await storeState(url);
  const e = await callError(p());
  assert.equal(e.code, status.FAILED_PRECONDITION, e.message);
  const info = errorInfoOf(e)!;
  assert.equal(info.reason, 'LOCKOUT_PROTECTED');
  assert.equal(info.metadata.protected, protectedCidr);
  assert.match(info.metadata.why!, why);
  assert.match(e.details, new RegExp(protectedCidr.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.match(e.details, /force/, 'the message says how to override');
  assert.deepEqual(await storeState(url), before, 'nothing stored');
}

/** A non-loopback IPv4 address of this host (a listen address of a 0.0.0.0 bind). */
function hostAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}

test('refused, nothing stored: loopback, a listen address, a management network (covering it or inside it), egress too, and any /0', async () => {
  await refused(() => admin.create(deny('127.0.0.2')), '127.0.0.0/8', /loopback/);
  await refused(() => admin.create(deny('::1/128', { direction: Direction.DIRECTION_EGRESS })), '::1/128', /loopback/);
  await refused(() => admin.create(deny('10.0.0.0/8')), '10.99.0.0/16', /management network/);
  await refused(() => admin.create(deny('10.99.7.0/24')), '10.99.0.0/16', /management network/);
  await refused(() => admin.create(deny('10.99.0.1', { direction: Direction.DIRECTION_EGRESS })), '10.99.0.0/16', /--protected-cidrs/);
  const e = await callError(admin.create(deny('10.99.0.1', { direction: Direction.DIRECTION_EGRESS })));
  assert.match(e.details, /would drop traffic to 10\.99\.0\.0\/16/, 'egress: traffic to the protected address');
  const v4 = await callError(admin.create(deny('0.0.0.0/0')));
  assert.equal(errorInfoOf(v4)!.reason, 'LOCKOUT_PROTECTED');
  assert.match(v4.details, /every IPv4 address/);
  const v6 = await callError(admin.create(deny('::/0', { direction: Direction.DIRECTION_EGRESS })));
  assert.equal(errorInfoOf(v6)!.reason, 'LOCKOUT_PROTECTED');
  assert.match(v6.details, /every IPv6 address/);
  const host = hostAddress();
  if (host) await refused(() => admin.create(deny(host)), `${host}/32`, /listens on every address \(--grpc-host 0\.0\.0\.0\)/);
  // What the guard does not refuse: allows (of anything), monitor-mode denies, denies of other addresses.
  await admin.create({ rule: { cidr: '0.0.0.0/0', action: Action.ACTION_ALLOW } });
  await admin.create(deny('127.0.0.2', { mode: Mode.MODE_MONITOR }));
  await admin.create(deny('203.0.113.0/24'));
});

test('batch (all or nothing, naming the entry), ManageAddress block and update into a dropping deny are refused too', async () => {
  await refused(() => admin.batchCreate({ requests: [deny('203.0.114.0/24'), deny('10.99.1.1')] }), '10.99.0.0/16', /management/);
  const b = await callError(admin.batchCreate({ requests: [deny('203.0.114.0/24'), deny('10.99.1.1')] }));
  assert.match(b.details, /^requests\[1\]\.rule: /);
  await refused(
    () =>
      unaryCall(
        t.clients(t.adminToken).rules,
        'manageAddress',
        ManageAddressRequest.fromPartial({ operation: AddressOperation.ADDRESS_OPERATION_BLOCK, address: '127.0.0.53' }),
      ),
    '127.0.0.0/8',
    /loopback/,
  );
  // An allow turned into a deny; a monitor deny turned to enforce; a deny turned to the other direction.
  const allow = (await admin.create({ rule: { cidr: '10.99.9.0/24', action: Action.ACTION_ALLOW } })).rule!;
  await refused(
    () => admin.update({ rule: { id: allow.id, action: Action.ACTION_DENY }, updateMask: ['action'] }),
    '10.99.0.0/16',
    /management/,
  );
  const monitor = (await admin.create(deny('127.0.0.9', { mode: Mode.MODE_MONITOR }))).rule!;
  await refused(() => admin.update({ rule: { id: monitor.id, mode: Mode.MODE_ENFORCE }, updateMask: ['mode'] }), '127.0.0.0/8', /loopback/);
  // An update that does not make it drop anything new is not the guard's business.
  await admin.update({ rule: { id: monitor.id, comment: 'still monitor' }, updateMask: ['comment'] });
});

test('HTTP: 409 with the JSON error on /v1/rules, PATCH and /manage-ip; "force" must be a JSON boolean', async () => {
  const before = await storeState(url);
  const r = await httpsJson(t.cp.httpPort, 'POST', '/v1/rules', {
    ca: t.ca,
    token: t.adminToken,
    body: { cidr: '10.99.2.0/24', action: 'ACTION_DENY' },
  });
  assert.equal(r.status, 409);
  assert.equal(r.body.reason, 'LOCKOUT_PROTECTED');
  assert.equal(r.body.metadata.protected, '10.99.0.0/16');
  const m = await httpsJson(t.cp.httpPort, 'POST', '/manage-ip', {
    ca: t.ca,
    token: t.adminToken,
    body: { action: 'block', ip: '127.0.0.1' },
  });
  assert.equal(m.status, 409);
  assert.equal(m.body.reason, 'LOCKOUT_PROTECTED');
  const s = await httpsJson(t.cp.httpPort, 'POST', '/v1/rules', {
    ca: t.ca,
    token: t.adminToken,
    body: { rule: { cidr: '10.99.2.0/24', action: 'ACTION_DENY' }, force: 'false' },
  });
  assert.equal(s.status, 400, 'a string is not a boolean');
  assert.deepEqual(await storeState(url), before, 'nothing stored');
});

async function auditOf(ruleId: bigint) {
  const res = await unaryCall(t.clients(t.adminToken).audit, 'listAuditEvents', ListAuditEventsRequest.fromPartial({ ruleId }));
  return res.events;
}

test("an admin's force stores it, audited as forced with what was protected; other writes are not", async () => {
  // (An allow of 0.0.0.0/0 ingress exists from the first test: this one is egress.)
  const all = await admin.create({ ...deny('0.0.0.0/0', { direction: Direction.DIRECTION_EGRESS }), force: true });
  const [ev] = await auditOf(all.rule!.id);
  assert.equal(ev!.action, 'rule.create');
  assert.match(
    ev!.forced,
    /^rule: deny 0\.0\.0\.0\/0 egress covers every IPv4 address, 127\.0\.0\.0\/8 among them, which is protected: loopback/,
  );
  const mgmt = await admin.create({ ...deny('10.99.3.0/24', { direction: Direction.DIRECTION_EGRESS }), force: true });
  assert.match(
    (await auditOf(mgmt.rule!.id))[0]!.forced,
    /deny 10\.99\.3\.0\/24 egress lies inside 10\.99\.0\.0\/16, which is protected: a management network/,
  );
  // Batch: the forced entry named; update: the update row forced.
  const batch = await admin.batchCreate({ requests: [deny('203.0.115.0/24'), deny('10.99.4.0/24')], force: true });
  const forcedBatch = await auditOf(batch.rules[1]!.id);
  assert.match(forcedBatch[0]!.forced, /^requests\[1\]\.rule: deny 10\.99\.4\.0\/24 ingress/);
  const allow = (await admin.create({ rule: { cidr: '10.99.5.0/24', action: Action.ACTION_ALLOW } })).rule!;
  await admin.update({ rule: { id: allow.id, action: Action.ACTION_DENY }, updateMask: ['action'], force: true });
  const upd = await auditOf(allow.id);
  assert.equal(upd[0]!.action, 'rule.update');
  assert.match(upd[0]!.forced, new RegExp(`^rule ${allow.id}: deny 10\\.99\\.5\\.0/24 ingress`));
  assert.equal(upd[1]!.forced, '', 'the create of the allow was not forced');
  // ManageAddress and HTTP.
  const blocked = await unaryCall(
    t.clients(t.adminToken).rules,
    'manageAddress',
    ManageAddressRequest.fromPartial({ operation: AddressOperation.ADDRESS_OPERATION_BLOCK, address: '127.0.0.54', force: true }),
  );
  assert.match((await auditOf(blocked.rule!.id))[0]!.forced, /127\.0\.0\.0\/8/);
  const h = await httpsJson(t.cp.httpPort, 'POST', '/v1/rules', {
    ca: t.ca,
    token: t.adminToken,
    body: { rule: { cidr: '10.99.6.0/24', action: 'ACTION_DENY' }, force: true },
  });
  assert.equal(h.status, 200);
  assert.match((await auditOf(BigInt(h.body.rule.id)))[0]!.forced, /10\.99\.0\.0\/16/);
  // A plain create: nothing forced; forced rows can be told from the rest with SQL too.
  const plain = await admin.create(deny('203.0.116.0/24'));
  assert.equal((await auditOf(plain.rule!.id))[0]!.forced, '');
  const n = await withSql(url, (sql) => sql<{ n: number }[]>`select count(*)::int as n from audit_log where forced <> ''`);
  assert.equal(n[0]!.n, 7);
});

test("an operator's force is PERMISSION_DENIED (gRPC 7, HTTP 403), whatever the rule, and stores nothing", async () => {
  const before = await storeState(url);
  for (const req of [
    { ...deny('127.0.0.1'), force: true },
    { ...deny('203.0.117.0/24'), force: true },
  ]) {
    const e = await callError(operator.create(req));
    assert.equal(e.code, status.PERMISSION_DENIED);
    assert.equal(errorInfoOf(e)!.reason, 'ROLE_TOO_LOW');
    assert.equal(errorInfoOf(e)!.metadata.required_role, 'admin');
  }
  const b = await callError(operator.batchCreate({ requests: [{ ...deny('203.0.117.0/24'), force: true }] }));
  assert.equal(b.code, status.PERMISSION_DENIED);
  const h = await httpsJson(t.cp.httpPort, 'POST', '/manage-ip', {
    ca: t.ca,
    token: operatorToken,
    body: { action: 'block', ip: '127.0.0.1', force: true },
  });
  assert.equal(h.status, 403);
  assert.equal(h.body.reason, 'ROLE_TOO_LOW');
  assert.deepEqual(await storeState(url), before, 'nothing stored');
  // Without force, the operator gets the guard's answer like anyone.
  const e = await callError(operator.create(deny('127.0.0.1')));
  assert.equal(e.code, status.FAILED_PRECONDITION);
  // And writes that need no force work.
  await operator.create(deny('203.0.117.0/24'));
});
