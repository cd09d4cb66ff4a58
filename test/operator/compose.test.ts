// docker-compose.yml cannot run here (no Docker engine), so it is checked
// against the code: every service's command is a real `fleetwall` command,
// its environment parses with that service's own config.ts, ports agree with
// what the config binds, mounted files exist, Prometheus scrapes the ports
// the services serve /metrics on, and the Grafana dashboard only queries
// metrics the control plane and the agent really export (and docs/metrics.md
// documents).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../control-plane/src/config.js';
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
  assert.equal(db.password, pgEnv.POSTGRES_PASSWORD);
  assert.equal(db.pathname.slice(1), pgEnv.POSTGRES_DB);
  assert.ok(
    svc.postgres!.volumes?.some((v) => v.startsWith('pgdata:')) && compose.volumes && 'pgdata' in compose.volumes,
    'Postgres data on a named volume',
  );
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
    assert.ok(Object.keys(s.depends_on ?? {}).includes('control-plane'));
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
    assert.ok(existsSync(resolve(ROOT, host)), `grafana mounts ${host}`);
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
