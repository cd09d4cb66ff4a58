// docker-compose.yml cannot run here (no Docker engine), so it is checked
// against the code: every service's command is a real `fleetwall` command,
// its environment parses with that service's own config.ts, ports agree with
// what the config binds, mounted files exist, Prometheus scrapes the ports
// the services serve /metrics on, and the Grafana dashboard only queries
// metrics the control plane and the agent really export (and docs/metrics.md
// documents). And the shipped defaults are secure (issue 15): no password in
// the file (generated on first start into volumes by a script that exists),
// the control plane with TLS and tokens (no insecure switch), each agent
// enrolled by its own join token from the `enroll` step, which makes one per
// agent with the control plane's admin token, and Prometheus scraping over
// TLS with a token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../control-plane/src/config.js';
import { securityMode } from '../../control-plane/src/auth/security-mode.js';
import { parseLabelText } from '../../common/src/labels.js';
import { loadConfig as loadAgentConfig, SETTINGS as AGENT_SETTINGS } from '../../node-agent/src/config.js';
import { AgentMetrics } from '../../node-agent/src/health/metrics.js';
import type { AgentHealth } from '../../node-agent/src/health/agent-health.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';

const ROOT = resolve(import.meta.dirname, '../..');
const compose = parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8')) as {
  services: Record<
    string,
    {
      build?: string;
      image?: string;
      command?: string[];
      entrypoint?: string[];
      environment?: Record<string, string>;
      ports?: string[];
      volumes?: string[];
      privileged?: boolean;
      depends_on?: Record<string, unknown> | string[];
    }
  >;
  volumes?: Record<string, unknown>;
};
const svc = compose.services;
const agents = Object.keys(svc).filter((n) => svc[n]!.command?.[0] === 'agent');

let pg: TestPostgres;
let cp: TestControlPlane;
let cpMetrics: Set<string>;

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
  const text = await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text();
  cpMetrics = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

function agentMetricNames(): Set<string> {
  const m = new AgentMetrics(() => ({}) as AgentHealth);
  return new Set(m.registry.getMetricsAsArray().map((x) => x.name));
}

test('compose has Postgres, the control plane, two agents, Prometheus and Grafana', () => {
  for (const name of ['postgres', 'control-plane', 'prometheus', 'grafana']) assert.ok(svc[name], `service ${name}`);
  assert.equal(agents.length, 2, 'two agents');
  assert.equal(svc['control-plane']!.build, '.', 'built from this repository');
  assert.ok(existsSync(resolve(ROOT, 'Dockerfile')));
  const dockerfile = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8');
  for (const m of dockerfile.matchAll(/^COPY (\S+) /gm)) {
    for (const src of m[1]!.split(' ')) assert.ok(existsSync(resolve(ROOT, src)), `Dockerfile copies ${src}, which exists`);
  }
  assert.match(dockerfile, /ENTRYPOINT \["node", "bin\/fleetwall\.mjs"\]/);
  assert.ok(existsSync(resolve(ROOT, 'bin/fleetwall.mjs')));
});

test('the control plane service: command, env parsed by its config.ts, ports, database', () => {
  const s = svc['control-plane']!;
  assert.deepEqual(s.command, ['control-plane'], 'a real fleetwall command');
  const env = s.environment ?? {};
  const { config } = parseConfig([], env);
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL') continue;
    assert.match(key, /^FLEETWALL_/);
  }
  const ports = (s.ports ?? []).map((p) => p.split(':').map(Number));
  assert.deepEqual(ports.map((p) => p[1]).sort(), [config.grpcPort, config.httpPort].sort(), 'publishes the ports it binds');
  const db = new URL(config.databaseUrl!);
  const pgEnv = svc.postgres!.environment!;
  assert.equal(db.hostname, 'postgres');
  assert.equal(db.username, pgEnv.POSTGRES_USER);
  assert.equal(db.password, '', 'no password in the file');
  assert.equal(pgEnv.POSTGRES_PASSWORD, undefined, 'no default Postgres password');
  // Both read the one generated password, from the same volume at the same path.
  assert.equal(config.databasePasswordFile, pgEnv.POSTGRES_PASSWORD_FILE);
  assert.equal(mountOf('control-plane', config.databasePasswordFile!), mountOf('postgres', pgEnv.POSTGRES_PASSWORD_FILE!));
  assert.equal(db.pathname.slice(1), pgEnv.POSTGRES_DB);
  assert.ok(
    svc.postgres!.volumes?.some((v) => v.startsWith('pgdata:')) && compose.volumes && 'pgdata' in compose.volumes,
    'Postgres data on a named volume',
  );
});

/** The named volume (or host path) mounted at the folder holding `file` in `service`. */
function mountOf(service: string, file: string): string | undefined {
  for (const v of svc[service]!.volumes ?? []) {
    const [src, target] = v.split(':') as [string, string];
    if (file.startsWith(`${target}/`)) return src;
  }
  return undefined;
}

test('secure as shipped: no default passwords (generated on first start), TLS and tokens, no insecure switch', () => {
  const text = readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8');
  assert.doesNotMatch(text, /FLEETWALL_INSECURE_NO_AUTH/);
  assert.doesNotMatch(text, /PASSWORD:\s*\S/, 'no password given in the file');
  // The first-start step makes both passwords (compose-scripts.test.ts runs its script), into the volumes the services read.
  const secrets = svc.secrets!;
  const [sh, script, ...made] = secrets.entrypoint!;
  assert.equal(sh, 'sh');
  assert.ok(existsSync(resolve(ROOT, script!.replace('/opt/fleetwall/', ''))), script);
  assert.ok(mountOf('secrets', script!), 'the script is mounted where the step runs it');
  const grafanaFile = svc.grafana!.environment!.GF_SECURITY_ADMIN_PASSWORD__FILE!;
  assert.equal(svc.grafana!.environment!.GF_SECURITY_ADMIN_PASSWORD, undefined);
  for (const [service, file] of [
    ['postgres', svc.postgres!.environment!.POSTGRES_PASSWORD_FILE!],
    ['grafana', grafanaFile],
  ] as const) {
    const volume = mountOf(service, file)!;
    const name = file.split('/').at(-1)!;
    assert.ok(
      made.some((f) => mountOf('secrets', f) === volume && f.endsWith(`/${name}`)),
      `the secrets step makes ${name} in the volume ${service} reads`,
    );
    assert.ok(Object.keys(svc[service]!.depends_on ?? {}).includes('secrets'), `${service} waits for it`);
  }
  // TLS and API tokens on both ports, a certificate naming the host the agents dial, its state on a volume.
  const { config } = parseConfig([], svc['control-plane']!.environment ?? {});
  assert.equal(securityMode(config), 'tls');
  assert.ok(config.tlsSans.includes('control-plane'));
  assert.ok(mountOf('control-plane', `${config.dataDir}/pki/ca.crt`), 'the CA and admin token survive restarts');
});

test('each agent is enrolled with its own join token from the enroll step; Prometheus scrapes over TLS with a token', () => {
  const enroll = svc.enroll!;
  const env = enroll.environment!;
  const script = enroll.entrypoint!.at(-1)!;
  assert.ok(existsSync(resolve(ROOT, script.replace('/opt/fleetwall/', ''))), script);
  assert.ok(mountOf('enroll', script), 'the script is mounted where the step runs it');
  // It uses the control plane's first admin token and CA, from the control plane's data volume.
  const cpDir = parseConfig([], svc['control-plane']!.environment ?? {}).config.dataDir;
  assert.equal(env.FLEETWALL_TOKEN_FILE, `${cpDir}/admin.token`);
  assert.equal(env.FLEETWALL_CA_CERT, `${cpDir}/pki/ca.crt`);
  assert.equal(mountOf('enroll', env.FLEETWALL_TOKEN_FILE), mountOf('control-plane', `${cpDir}/admin.token`));
  assert.ok(Object.keys(enroll.depends_on ?? {}).includes('control-plane'));
  const nodes = new Map(
    env
      .FLEETWALL_ENROLL_NODES!.split(/\s+/)
      .map((spec) => [spec.slice(0, spec.indexOf(':')), parseLabelText(spec.slice(spec.indexOf(':') + 1))]),
  );
  assert.deepEqual([...nodes.keys()].sort(), [...agents].sort(), 'a token for every agent');
  const out = env.FLEETWALL_ENROLLMENT_DIR!;
  for (const name of agents) {
    const a = svc[name]!;
    const cfg = loadAgentConfig([], a.environment ?? {});
    assert.equal(cfg.controlPlanes.join(','), env.FLEETWALL_CONTROL_PLANE, `${name} dials the control plane the tokens came from`);
    assert.equal(cfg.joinTokenFile, `${out}/${name}.token`, `${name} reads the token made for it`);
    assert.equal(mountOf(name, cfg.joinTokenFile!), mountOf('enroll', `${out}/${name}.token`));
    assert.equal(mountOf(name, cfg.caCertFile!), mountOf('enroll', `${out}/ca.crt`), 'and the CA with it');
    assert.equal(cfg.caCertFile!.split('/').at(-1), 'ca.crt');
    assert.ok(mountOf(name, `${cfg.identityDir}/node.crt`)?.endsWith('-identity'), `${name} keeps its certificate on a volume`);
    assert.ok(Object.keys(a.depends_on ?? {}).includes('enroll'), `${name} starts once its token is made`);
    assert.ok(Object.keys(nodes.get(name)!).length > 0, `${name} has labels (bound by its token)`);
    assert.equal(a.environment?.FLEETWALL_LABELS, undefined, `${name}: labels come with the token, not the agent`);
  }
  const prom = parse(readFileSync(resolve(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
    scrape_configs: { job_name: string; scheme?: string; tls_config?: { ca_file: string }; authorization?: { credentials_file: string } }[];
  };
  const job = prom.scrape_configs.find((j) => j.job_name === 'fleetwall-control-plane')!;
  assert.equal(job.scheme, 'https');
  const promDir = env.FLEETWALL_PROMETHEUS_DIR!;
  for (const [f, made] of [
    [job.tls_config!.ca_file, `${promDir}/ca.crt`],
    [job.authorization!.credentials_file, `${promDir}/token`],
  ] as const) {
    assert.equal(f.split('/').at(-1), made.split('/').at(-1));
    assert.equal(mountOf('prometheus', f), mountOf('enroll', made), `${f}: made by the enroll step`);
  }
  assert.ok(Object.keys(svc.prometheus!.depends_on ?? {}).includes('enroll'));
});

test('agent services: privileged, bpffs mounted, env parsed by the agent config, unique pins, reach the control plane', () => {
  const cpEnv = parseConfig([], svc['control-plane']!.environment ?? {}).config;
  const knownAgentEnv = new Set<string>(Object.values(AGENT_SETTINGS).map((x) => x.env));
  const pins = new Set<string>();
  for (const name of agents) {
    const s = svc[name]!;
    assert.equal(s.privileged, true, `${name} is privileged (BPF, XDP)`);
    assert.ok(s.volumes?.includes('/sys/fs/bpf:/sys/fs/bpf'), `${name} mounts bpffs so pins survive container restarts`);
    const env = s.environment ?? {};
    for (const key of Object.keys(env)) assert.ok(knownAgentEnv.has(key), `${name}: ${key} is an agent setting`);
    const cfg = loadAgentConfig([], env);
    assert.equal(cfg.nodeName, name);
    assert.deepEqual(cfg.interfaces, ['eth0']);
    assert.ok(!pins.has(cfg.pinPath), 'each agent has its own pin path');
    pins.add(cfg.pinPath);
    assert.equal(env.FLEETWALL_CONTROL_PLANE, `control-plane:${cpEnv.grpcPort}`, 'the control plane gRPC port');
  }
});

test('Prometheus scrapes the ports the services serve /metrics on; Grafana is provisioned', () => {
  const mounts = svc.prometheus!.volumes ?? [];
  const promFile = mounts.map((v) => v.split(':')[0]!).find((p) => p.endsWith('prometheus.yml'))!;
  assert.ok(existsSync(resolve(ROOT, promFile)), promFile);
  const prom = parse(readFileSync(resolve(ROOT, promFile), 'utf8')) as {
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  };
  const targets = prom.scrape_configs.flatMap((j) => j.static_configs.flatMap((c) => c.targets));
  const cpHttp = parseConfig([], svc['control-plane']!.environment ?? {}).config.httpPort;
  assert.ok(targets.includes(`control-plane:${cpHttp}`), 'the control plane /metrics');
  for (const name of agents) {
    const port = (svc[name]!.environment!.FLEETWALL_HTTP_ADDR ?? '').split(':')[1];
    assert.ok(targets.includes(`${name}:${port}`), `${name} /metrics`);
  }
  for (const v of svc.grafana!.volumes ?? []) {
    const host = v.split(':')[0]!;
    if (host.startsWith('./')) assert.ok(existsSync(resolve(ROOT, host)), `grafana mounts ${host}`);
    else assert.ok(compose.volumes && host in compose.volumes, `grafana mounts the named volume ${host}`);
  }
  const dsFile = resolve(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml');
  const ds = parse(readFileSync(dsFile, 'utf8')) as { datasources: { url: string; uid: string }[] };
  assert.equal(ds.datasources[0]!.url, 'http://prometheus:9090');
  assert.ok((svc.prometheus!.ports ?? []).includes('9090:9090'));
});

test('the dashboard queries only metrics that exist, and docs/metrics.md documents every exported metric', () => {
  const dash = JSON.parse(readFileSync(resolve(ROOT, 'deploy/grafana/dashboards/fleetwall.json'), 'utf8')) as {
    panels: { title: string; targets?: { expr: string; datasource?: { uid: string } }[] }[];
  };
  const agentMetrics = agentMetricNames();
  const exported = new Set([...cpMetrics, ...agentMetrics]);
  const used = new Set<string>();
  for (const p of dash.panels) {
    for (const t of p.targets ?? []) {
      assert.equal(t.datasource?.uid, 'prometheus', `${p.title}: the provisioned datasource`);
      for (const m of t.expr.matchAll(/\b(fleetwall_[a-z_]+)/g)) {
        const name = m[1]!.replace(/_(bucket|sum|count)$/, '');
        used.add(name);
        assert.ok(exported.has(name), `${p.title}: ${name} is exported by the control plane or the agent`);
      }
    }
  }
  for (const needed of [
    'fleetwall_node_packets_total',
    'fleetwall_rule_packets_total',
    'fleetwall_policy_implementation_delay_seconds',
    'fleetwall_agents_connected',
    'fleetwall_node_applied_revision',
  ]) {
    assert.ok(used.has(needed), `the dashboard shows ${needed}`);
  }
  const docs = readFileSync(resolve(ROOT, 'docs/metrics.md'), 'utf8');
  // Node's own process metrics (collectDefaultMetrics) are documented as a family, not one by one.
  const own = [...exported].filter((n) => !/^fleetwall_(agent|controlplane)_(process|nodejs)_/.test(n));
  for (const name of own) assert.ok(docs.includes(`\`${name}\``), `docs/metrics.md documents ${name}`);
});
