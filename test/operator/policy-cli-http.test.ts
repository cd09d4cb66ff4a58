// Detection policies as an operator uses them (issue 18): the `fleetwall
// policy` and `fleetwall bans` commands (a real CLI process) and
// /v1/policies, /v1/bans over HTTP/JSON, against a real control plane on
// real Postgres. Bad input is refused naming the field; nothing is stored.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';

const BIN = resolve(import.meta.dirname, '../../bin/fleetwall.mjs');
let pg: TestPostgres;
let cp: TestControlPlane;

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

function fw(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, '--server', cp.target, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

async function http(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${cp.httpPort}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

test('fleetwall policy create|ls|get|rm and bans ls', async () => {
  const ok = await fw([
    'policy',
    'create',
    'ssh',
    '--proto',
    'tcp',
    '--ports',
    '22',
    '--syn',
    '--pps',
    '20',
    '--window',
    '2s',
    '--ban',
    '10m',
    '--factor',
    '3',
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /created policy ssh \(revision \d+\): tcp\/22 syn, 20 pkt\/s over 2s/);
  const bad = await fw(['policy', 'create', 'bad', '--proto', 'udp', '--ports', '70000', '--pps', '5']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /policy\.match\.ports\[0\]: port 70000 is not 1\.\.65535/);
  const ls = await fw(['policy', 'ls']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /ssh\s+tcp\/22 syn\s+20 pkt\/s over 2s\s+10m x3 <= 24h\s+fleet\s+enforce/);
  assert.doesNotMatch(ls.stdout, /\bbad\b/, 'nothing stored for the bad one');
  // The /24 merge (issue 18, bounded under attack): a flag, validated by the control plane.
  const merge = await fw(['policy', 'create', 'web', '--proto', 'tcp', '--ports', '443', '--pps', '50', '--merge-threshold', '8']);
  assert.equal(merge.code, 0, merge.stderr);
  const badMerge = await fw(['policy', 'create', 'bad', '--pps', '5', '--merge-threshold', '1']);
  assert.notEqual(badMerge.code, 0);
  assert.match(badMerge.stderr, /policy\.merge_threshold: 1 is not 2\.\.256/);
  assert.match((await fw(['policy', 'ls'])).stdout, /web\s+tcp\/443\s+50 pkt\/s over 1s\s+10m x2 <= 24h, 8\+ per \/24,\/64 merged/);
  assert.equal(JSON.parse((await fw(['--json', 'policy', 'get', 'web'])).stdout).mergeThreshold, 8);
  assert.equal((await fw(['policy', 'rm', 'web'])).code, 0);
  const get = await fw(['--json', 'policy', 'get', 'ssh']);
  assert.equal(get.code, 0, get.stderr);
  const j = JSON.parse(get.stdout);
  assert.equal(j.name, 'ssh');
  assert.deepEqual(j.threshold.window, { seconds: '2' });
  const bans = await fw(['bans', 'ls']);
  assert.equal(bans.code, 0, bans.stderr);
  assert.match(bans.stdout, /no bans in force/);
  const rm = await fw(['policy', 'rm', 'ssh']);
  assert.equal(rm.code, 0, rm.stderr);
  const gone = await fw(['policy', 'get', 'ssh']);
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /no detection policy named "ssh"/);
});

test('/v1/policies and /v1/bans over HTTP/JSON', async () => {
  const created = await http('POST', '/v1/policies', {
    name: 'dns-flood',
    match: { protocol: 'udp', ports: [{ first: 53 }] },
    threshold: { packetsPerSecond: '500', window: '1s' },
    response: { duration: '300s' },
    grouping: 'network',
    mode: 'monitor',
  });
  assert.equal(created.status, 200, JSON.stringify(created.json));
  const p = created.json.policy as Record<string, unknown>;
  assert.equal(p.grouping, 'SOURCE_GROUPING_NETWORK');
  assert.equal(p.mode, 'MODE_MONITOR');
  assert.equal((await http('POST', '/v1/policies', { name: 'dns-flood', threshold: { packetsPerSecond: '5' } })).status, 409);
  for (const [body, field] of [
    [{ name: 'z', threshold: { packetsPerSecond: '0' } }, 'policy.threshold'],
    [{ name: 'z', match: { protocol: 'sctp' }, threshold: { packetsPerSecond: '5' } }, 'policy.match.protocol'],
    [{ name: 'z', threshold: { packetsPerSecond: '5', window: '10s' }, response: { duration: '5s' } }, 'policy.response.duration'],
  ] as const) {
    const r = await http('POST', '/v1/policies', body);
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.equal(r.json.reason, 'INVALID_POLICY');
    assert.equal((r.json.metadata as Record<string, string>).field, field);
  }
  const list = await http('GET', '/v1/policies');
  assert.deepEqual(
    (list.json.policies as { name: string }[]).map((x) => x.name),
    ['dns-flood'],
  );
  assert.equal((await http('GET', '/v1/policies/dns-flood')).status, 200);
  assert.deepEqual((await http('GET', '/v1/bans?policy=dns-flood')).json, {}, 'no bans (proto3 JSON leaves an empty list out)');
  assert.equal((await http('DELETE', '/v1/policies/dns-flood')).status, 200);
  assert.equal((await http('GET', '/v1/policies/dns-flood')).status, 404);
});
