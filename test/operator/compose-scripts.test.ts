// The first-start steps of docker-compose.yml, run for real (no Docker engine
// here: the scripts run on this host with the paths compose gives them moved
// into a temp directory): `secrets` makes a random password per file once and
// keeps it; `enroll`, against a real control plane with TLS and its first
// admin token, makes a single-use join token per agent with its labels and
// hands over the CA, and a viewer token for Prometheus; an agent configured as
// compose configures it (its env, token file and CA) enrolls with its token
// under its name; a second run of the step changes nothing. And the control
// plane's healthcheck command answers over TLS.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type AddressInfo, createServer } from 'node:net';
import { promisify } from 'node:util';
import pino from 'pino';
import { parse } from 'yaml';
import { ListJoinTokensRequest } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { parseLabelText } from '../../common/src/labels.js';
import { loadConfig as loadAgentConfig } from '../../node-agent/src/config.js';
import { NodeIdentity } from '../../node-agent/src/identity/node-identity.js';
import { unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { httpsJson, startTlsControlPlane, type TlsControlPlane } from '../support/tls-control-plane.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
type Service = { entrypoint?: string[]; environment?: Record<string, string>; healthcheck?: { test: string[] }; command?: string[] };
const svc = (parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> }).services;
const agents = Object.keys(svc).filter((n) => svc[n]!.command?.[0] === 'agent');
/** The script a service's entrypoint runs, in this checkout. */
const scriptOf = (s: Service): string => resolve(ROOT, s.entrypoint![1]!.replace('/opt/fleetwall/', ''));

let pg: TestPostgres;
let t: TlsControlPlane;
let dir: string;

before(async () => {
  pg = await startTestPostgres();
  t = await startTlsControlPlane(await pg.newDatabase(), { authPenaltyMaxMs: 0 });
  dir = mkdtempSync(join(tmpdir(), 'fwcompose-'));
});

after(async () => {
  await t?.stop();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('secrets: a random password in each file on the first start, readable by the services, kept on the next', async () => {
  const [, script, ...files] = svc.secrets!.entrypoint!;
  assert.equal(files.length, 2, 'Postgres and Grafana');
  const local = files.map((f, i) => join(dir, `secret-${i}-${f.split('/').at(-1)}`));
  await run('sh', [resolve(ROOT, script!.replace('/opt/fleetwall/', '')), ...local]);
  const made = local.map((f) => readFileSync(f, 'utf8'));
  for (const [i, f] of local.entries()) {
    assert.match(made[i]!, /^[0-9a-f]{48}$/, '192 random bits');
    assert.equal(statSync(f).mode & 0o777, 0o444, 'read by the services as their own users');
  }
  assert.notEqual(made[0], made[1]);
  await run('sh', [scriptOf(svc.secrets!), ...local]);
  assert.deepEqual(
    local.map((f) => readFileSync(f, 'utf8')),
    made,
    'a restart keeps the passwords',
  );
  await assert.rejects(run('sh', [scriptOf(svc.secrets!)]), /usage/);
});

test('enroll: a join token per agent with its labels, the CA, a viewer token for Prometheus; agents enroll with them; a rerun changes nothing', async () => {
  const e = svc.enroll!.environment!;
  const out = join(dir, 'enrollment');
  const prom = join(dir, 'prometheus');
  mkdirSync(out);
  mkdirSync(prom);
  const env = {
    ...process.env,
    ...e,
    // The control plane as this host reaches it; its admin token and CA from its data dir (compose: its volume).
    FLEETWALL_CONTROL_PLANE: `localhost:${t.cp.grpcPort}`,
    FLEETWALL_TOKEN_FILE: join(t.dataDir, 'admin.token'),
    FLEETWALL_CA_CERT: join(t.dataDir, 'pki/ca.crt'),
    FLEETWALL_ENROLLMENT_DIR: out,
    FLEETWALL_PROMETHEUS_DIR: prom,
  };
  const step = () => run('sh', [scriptOf(svc.enroll!)], { env, cwd: dir });
  await step();
  const wanted = new Map(e.FLEETWALL_ENROLL_NODES!.split(/\s+/).map((s) => [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)]));
  const admin = t.clients(t.adminToken);
  const list = async () =>
    (await unaryCall(admin.enrollment, 'listJoinTokens', ListJoinTokensRequest.fromPartial({ includeInactive: true }))).joinTokens;
  const tokens = await list();
  assert.equal(tokens.length, agents.length, 'one join token per agent');
  for (const name of agents) {
    const jt = tokens.find((x) => x.nodeName === name);
    assert.ok(jt, `a token for ${name}`);
    assert.deepEqual(jt.labels, parseLabelText(wanted.get(name)!), `${name}'s labels, bound when it enrolls`);
    assert.equal(statSync(join(out, `${name}.token`)).mode & 0o777, 0o600);
  }
  assert.equal(readFileSync(join(out, 'ca.crt'), 'utf8'), t.ca.toString('utf8'), 'the CA the agents trust');

  // Each agent, configured as compose configures it, enrolls with its own token and is named by its certificate.
  const log = pino({ level: 'silent' });
  for (const name of agents) {
    const aenv = { ...svc[name]!.environment! };
    for (const k of ['FLEETWALL_JOIN_TOKEN_FILE', 'FLEETWALL_CA_CERT'] as const)
      aenv[k] = aenv[k]!.replace(e.FLEETWALL_ENROLLMENT_DIR!, out);
    const cfg = loadAgentConfig([], {
      ...aenv,
      FLEETWALL_CONTROL_PLANE: `localhost:${t.cp.grpcPort}`,
      FLEETWALL_IDENTITY_DIR: join(dir, `${name}-identity`),
    });
    const id = await NodeIdentity.open(cfg, log);
    assert.ok(id, `${name} dials TLS`);
    assert.match(new X509Certificate(id.certPem).subjectAltName ?? '', new RegExp(`URI:fleetwall://node/${name}\\b`));
    id.stop();
  }
  const used = await list();
  for (const name of agents) assert.equal(used.find((x) => x.nodeName === name)?.usedByNode, name, `${name}'s token is used up`);

  // Prometheus' token reads /metrics over TLS and may not write.
  const promToken = readFileSync(join(prom, 'token'), 'utf8').trim();
  const promCa = readFileSync(join(prom, 'ca.crt'));
  assert.equal(statSync(join(prom, 'token')).mode & 0o777, 0o444, 'Prometheus runs as nobody');
  const m = await httpsJson(t.cp.httpPort, 'GET', '/metrics', { ca: promCa, token: promToken });
  assert.equal(m.status, 200);
  assert.match(String(m.body), /fleetwall_rules/);
  const w = await httpsJson(t.cp.httpPort, 'POST', '/v1/rules', {
    ca: promCa,
    token: promToken,
    body: { rule: { cidr: '203.0.113.0/24', action: 'ACTION_DENY' } },
  });
  assert.equal(w.status, 403, 'a viewer');

  // A restart of the stack runs the step again: nothing new, the files kept.
  const before = agents.map((n) => readFileSync(join(out, `${n}.token`), 'utf8'));
  await step();
  assert.deepEqual(
    agents.map((n) => readFileSync(join(out, `${n}.token`), 'utf8')),
    before,
  );
  assert.equal((await list()).length, agents.length, 'no new join token');
  assert.equal(readFileSync(join(prom, 'token'), 'utf8').trim(), promToken);
});

test("the control plane's healthcheck command answers over TLS, and fails when nothing serves", async () => {
  const [kind, ...argv] = svc['control-plane']!.healthcheck!.test;
  assert.equal(kind, 'CMD');
  assert.equal(argv[0], 'node');
  const cpDir = svc['control-plane']!.environment!.FLEETWALL_DATA_DIR!;
  const http = svc['control-plane']!.environment!.FLEETWALL_HTTP_PORT!;
  const code = argv[2]!;
  assert.ok(code.includes(`port:${http}`) && code.includes(`${cpDir}/pki/ca.crt`), 'the port it serves, the CA it made');
  const here = (port: number) => code.replace(`port:${http}`, `port:${port}`).replace(`${cpDir}/pki/ca.crt`, join(t.dataDir, 'pki/ca.crt'));
  await run(process.execPath, [argv[1]!, here(t.cp.httpPort)]);
  const closed = await new Promise<number>((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => r(port));
    });
  });
  await assert.rejects(run(process.execPath, [argv[1]!, here(closed)]), 'nothing serves there');
});
