// Standard gRPC health checking and server reflection (what grpcurl,
// grpc_health_probe and other languages' tools use), and the HTTP server:
// /healthz, /metrics, route registration, JSON errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import pino from 'pino';
import { startControlPlane, type ControlPlane } from '../../control-plane/src/control-plane.js';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { sendJson } from '../../control-plane/src/http/router.js';
import { testConfig } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

let pg: TestPostgres;
let cp: ControlPlane;

before(async () => {
  pg = await startTestPostgres();
  cp = await startControlPlane(testConfig(await pg.newDatabase()), pino({ level: 'silent' }), {
    routes: (router) => {
      router.add('GET', '/test/echo/:word', (_req, res, params) => sendJson(res, 200, { word: params.word }));
      router.add('GET', '/test/fail', () => {
        throw new FleetwallError('HOST_BITS_SET', 'host bits set: did you mean 10.0.0.0/8?', { canonical: '10.0.0.0/8' });
      });
      router.add('GET', '/test/crash', () => {
        throw new Error('secret detail');
      });
    },
  });
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Client = { [method: string]: any; close(): void };

function loadClient(file: string, includeDirs: string[], service: string): Client {
  const def = protoLoader.loadSync(file, { includeDirs, keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as unknown as Record<string, unknown>;
  const ctor = service.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as new (
    t: string,
    c: unknown,
  ) => Client;
  return new ctor(`127.0.0.1:${cp.grpcPort}`, credentials.createInsecure());
}

test('grpc.health.v1: SERVING overall and per service', async () => {
  const health = loadClient(healthProtoPath, [], 'grpc.health.v1.Health');
  try {
    for (const service of ['', 'fleetwall.v1.RuleService', 'fleetwall.v1.AgentService']) {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        health.Check({ service }, (e: ServiceError | null, r: { status: string }) => (e ? reject(e) : resolve(r))),
      );
      assert.equal(res.status, 'SERVING', `service "${service}"`);
    }
    const err = await new Promise<ServiceError>((resolve) => health.Check({ service: 'no.Such' }, (e: ServiceError) => resolve(e)));
    assert.equal(err.code, 5, 'unknown services are NOT_FOUND');
  } finally {
    health.close();
  }
});

test('server reflection lists the services and serves their descriptors', async () => {
  const req = createRequire(import.meta.url);
  const reflDir = join(dirname(req.resolve('@grpc/reflection/package.json')), 'build/proto');
  const refl = loadClient('grpc/reflection/v1/reflection.proto', [reflDir], 'grpc.reflection.v1.ServerReflection');
  try {
    const call = refl.ServerReflectionInfo() as import('@grpc/grpc-js').ClientDuplexStream<unknown, Record<string, unknown>>;
    const responses: Record<string, unknown>[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m) => {
        responses.push(m);
        if (responses.length === 2) call.end();
      });
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    call.write({ list_services: '*' });
    call.write({ file_containing_symbol: 'fleetwall.v1.RuleService' });
    await done;
    const services = (responses[0]!.list_services_response as { service: { name: string }[] }).service.map((s) => s.name);
    for (const s of [
      'fleetwall.v1.RuleService',
      'fleetwall.v1.NodeService',
      'fleetwall.v1.CounterService',
      'fleetwall.v1.ExplainService',
      'fleetwall.v1.AgentService',
      'grpc.health.v1.Health',
    ]) {
      assert.ok(services.includes(s), `${s} listed (got ${services.join(', ')})`);
    }
    const files = (responses[1]!.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
    assert.ok(files.length > 0);
    assert.ok(Buffer.concat(files).includes('ImportRules'), 'the RuleService descriptor');
  } finally {
    refl.close();
  }
});

test('HTTP: /healthz, /metrics, registered routes, JSON errors that never leak', async () => {
  const base = `http://127.0.0.1:${cp.httpPort}`;
  const h = await fetch(`${base}/healthz`);
  assert.equal(h.status, 200);
  const hj = (await h.json()) as { status: string; controlPlaneId: string };
  assert.equal(hj.status, 'ok');
  assert.equal(hj.controlPlaneId, cp.id);
  const m = await fetch(`${base}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
  assert.match(await m.text(), /fleetwall_controlplane_process_resident_memory_bytes/);
  const echo = await fetch(`${base}/test/echo/hello%20world`);
  assert.deepEqual(await echo.json(), { word: 'hello world' });
  const fail = await fetch(`${base}/test/fail`);
  assert.equal(fail.status, 400);
  assert.deepEqual(await fail.json(), {
    code: 3,
    message: 'host bits set: did you mean 10.0.0.0/8?',
    reason: 'HOST_BITS_SET',
    metadata: { canonical: '10.0.0.0/8' },
  });
  const crash = await fetch(`${base}/test/crash`);
  assert.equal(crash.status, 500);
  const cj = (await crash.json()) as { message: string };
  assert.equal(cj.message, 'internal error');
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
});
