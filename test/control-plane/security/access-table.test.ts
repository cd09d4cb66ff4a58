// Authorization in one place (auth/access-table.ts): every gRPC method and
// HTTP route the control plane serves has an entry, a new one without an
// entry stops the server from starting, and every entry is enforced: with
// TLS on, each non-public method refuses a call without a token
// (UNAUTHENTICATED / 401) and each method above viewer refuses a viewer
// (PERMISSION_DENIED / 403), before any handler runs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import pino from 'pino';
import { GRPC_ACCESS, HTTP_ACCESS } from '../../../control-plane/src/auth/access-table.js';
import { checkGrpcAccessTable } from '../../../control-plane/src/auth/grpc-auth.js';
import { checkHttpAccessTable } from '../../../control-plane/src/auth/http-auth.js';
import { registerApiRoutes } from '../../../control-plane/src/http/api-routes.js';
import { HttpRouter } from '../../../control-plane/src/http/router.js';
import { apiServiceDefinitions } from '../../support/api-proto-modules.js';
import { errorInfoOf } from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { storeState } from '../../support/rule-fixtures.js';
import { httpsJson, startTlsControlPlane, type TlsControlPlane } from '../../support/tls-control-plane.js';

// Every service of the API's .proto files (API_PROTO_FILES, the list the server serves): none can be left out here.
const SERVICES = await apiServiceDefinitions();
const METHODS = SERVICES.flatMap((s) => Object.values(s));

let pg: TestPostgres;
let url: string;
let t: TlsControlPlane;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  // Every refusal here comes from 127.0.0.1: no hold-back (penalty.test.ts covers it).
  t = await startTlsControlPlane(url, { authPenaltyMaxMs: 0 });
});

after(async () => {
  await t?.stop();
  await pg?.stop();
});

test('every fleetwall.v1 method and every HTTP route has an entry; nothing stale in the table', () => {
  const paths = METHODS.map((m) => m.path);
  assert.doesNotThrow(() => checkGrpcAccessTable(paths));
  const ours = Object.keys(GRPC_ACCESS).filter((p) => p.startsWith('/fleetwall.'));
  assert.deepEqual(ours.sort(), [...paths].sort(), 'the table lists exactly the served fleetwall.v1 methods');
  for (const p of Object.keys(GRPC_ACCESS).filter((k) => !k.startsWith('/fleetwall.')))
    assert.equal(GRPC_ACCESS[p], 'public', `${p}: health and reflection are public`);

  const router = new HttpRouter(pino({ level: 'silent' }));
  registerApiRoutes(router, {} as never);
  router.add('GET', '/metrics', () => undefined).add('GET', '/healthz', () => undefined); // control-plane.ts adds these two
  const routes = router.list();
  assert.doesNotThrow(() => checkHttpAccessTable(routes));
  assert.deepEqual(
    routes.map((r) => `${r.method} ${r.pattern}`).sort(),
    Object.keys(HTTP_ACCESS).sort(),
    'the table lists exactly the routes',
  );
});

test('a method or route without an entry stops the server from starting', () => {
  assert.throws(() => checkGrpcAccessTable([...METHODS.map((m) => m.path), '/fleetwall.v1.RuleService/Wipe']), /RuleService\/Wipe/);
  assert.throws(() => checkHttpAccessTable([{ method: 'POST', pattern: '/v1/wipe', access: undefined }]), /POST \/v1\/wipe/);
  assert.doesNotThrow(() => checkHttpAccessTable([{ method: 'POST', pattern: '/v1/wipe', access: 'admin' }]), 'unless it brings its own');
});

/** Calls `path` with an empty request of the right streaming kind; resolves with the status it ended with. */
function rawCall(client: Client, m: (typeof METHODS)[number], token: string | undefined): Promise<ServiceError | undefined> {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const ser = () => Buffer.alloc(0);
  const de = (b: Buffer) => b;
  const opts = { deadline: Date.now() + 10_000 };
  return new Promise((resolve) => {
    const done = (e: ServiceError | null) => resolve(e ?? undefined);
    if (!m.requestStream && !m.responseStream) client.makeUnaryRequest(m.path, ser, de, Buffer.alloc(0), md, opts, done);
    else if (m.requestStream && !m.responseStream) client.makeClientStreamRequest(m.path, ser, de, md, opts, done).end();
    else {
      const call = m.requestStream
        ? client.makeBidiStreamRequest(m.path, ser, de, md, opts)
        : client.makeServerStreamRequest(m.path, ser, de, Buffer.alloc(0), md, opts);
      // A first message means the call got past authorization: enough, stop it.
      call.on('data', () => {
        done(null);
        call.cancel();
      });
      call.on('error', (e: ServiceError) => done(e));
      call.on('status', (s: { code: number }) => s.code === 0 && done(null));
      if (m.requestStream) (call as unknown as { end(): void }).end();
    }
  });
}

test('with TLS on, every gRPC method refuses a call without a token, and a viewer above its role, before any handler runs', async () => {
  const viewer = await t.makeToken('viewer');
  const client = new Client(`127.0.0.1:${t.cp.grpcPort}`, credentials.createSsl(t.ca));
  const before = await storeState(url);
  try {
    for (const m of METHODS) {
      const access = GRPC_ACCESS[m.path];
      const anon = await rawCall(client, m, undefined);
      const asViewer = await rawCall(client, m, viewer.token);
      if (access === 'public') {
        assert.equal(anon, undefined, `${m.path} is public`);
        continue;
      }
      if (access === 'join-token') {
        // No credential at the door: the handler checks the join token in the request (an empty one here).
        for (const e of [anon, asViewer]) assert.equal(errorInfoOf(e!)?.reason, 'JOIN_TOKEN_INVALID', m.path);
        continue;
      }
      assert.equal(anon?.code, status.UNAUTHENTICATED, `${m.path} without a token`);
      if (access === 'node') {
        // A node method takes a node certificate and nothing else, whatever the token's role.
        for (const e of [anon, asViewer]) assert.equal(errorInfoOf(e!)?.reason, 'NODE_CERT_REQUIRED', m.path);
        const asAdmin = await rawCall(client, m, t.adminToken);
        assert.equal(errorInfoOf(asAdmin!)?.reason, 'NODE_CERT_REQUIRED', `${m.path} refuses an admin token`);
        continue;
      }
      assert.equal(errorInfoOf(anon!)?.reason, 'CREDENTIALS_REQUIRED', m.path);
      if (access === 'viewer') assert.notEqual(asViewer?.code, status.PERMISSION_DENIED, `${m.path} is open to a viewer`);
      else {
        assert.equal(asViewer?.code, status.PERMISSION_DENIED, `${m.path} (${access}) refuses a viewer`);
        assert.equal(errorInfoOf(asViewer!)?.reason, 'ROLE_TOO_LOW', m.path);
      }
    }
  } finally {
    client.close();
  }
  assert.deepEqual(await storeState(url), before, 'nothing stored');
});

test('with TLS on, every HTTP route but /healthz answers 401 without a token, and 403 to a viewer above its role', async () => {
  const viewer = await t.makeToken('viewer');
  for (const [key, access] of Object.entries(HTTP_ACCESS)) {
    const [method, pattern] = key.split(' ') as [string, string];
    const path = pattern.replace(':id', '1').replace(':name', 'web-1');
    const body = method === 'POST' || method === 'PATCH' ? {} : undefined;
    const anon = await httpsJson(t.cp.httpPort, method, path, { ca: t.ca, ...(body ? { body } : {}) });
    if (access === 'public') {
      assert.equal(anon.status, 200, `${key} is public`);
      continue;
    }
    assert.equal(anon.status, 401, `${key} without a token`);
    const v = await httpsJson(t.cp.httpPort, method, path, { ca: t.ca, token: viewer.token, ...(body ? { body } : {}) });
    if (access === 'viewer') assert.ok(v.status !== 401 && v.status !== 403, `${key} is open to a viewer (${v.status})`);
    else {
      assert.equal(v.status, 403, `${key} (${access}) refuses a viewer`);
      assert.equal(v.body.reason, 'ROLE_TOO_LOW');
    }
  }
});
