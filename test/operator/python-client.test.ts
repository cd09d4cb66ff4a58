// Another language on the real API: the Python client in examples/python,
// with stubs generated from proto/ by grpcio-tools, against a live control
// plane. It creates, lists, watches counters, deletes, and reads the
// google.rpc.ErrorInfo reason of a rejected request; and the same over TLS
// with an API token against a control plane that requires them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolve } from 'node:path';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTokenRequest, Role } from '../../proto/gen/fleetwall/v1/token_service.js';
import { connectClients, startTestControlPlane, unaryCall, type TestControlPlane } from '../support/control-plane.js';
import { detectionPolicy } from '../support/policy-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';
import { Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { EventKind, EventVerdict } from '../../proto/gen/fleetwall/v1/event.js';

const exec = promisify(execFile);
const DIR = resolve(import.meta.dirname, '../../examples/python');
let pg: TestPostgres;
let cp: TestControlPlane;

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
  await exec('python3', [`${DIR}/generate.py`]);
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

async function py(args: string[], target = cp.target): Promise<{ code: number; lines: any[] }> {
  try {
    const { stdout } = await exec('python3', [`${DIR}/fleetwall_client.py`, '--target', target, ...args], { timeout: 60_000 });
    return {
      code: 0,
      lines: stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    if (err.stderr) process.stderr.write(err.stderr);
    return {
      code: err.code,
      lines: err.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    };
  }
}

test('python demo: create, list (covers), watch counters, delete, ErrorInfo on bad input', async () => {
  const r = await py(['demo', '198.51.100.0/24']);
  assert.equal(r.code, 0, JSON.stringify(r.lines));
  const kinds = r.lines.map((l) => l.kind);
  assert.deepEqual(kinds, ['created', 'rule', 'listed', 'counters', 'counters', 'deleted', 'rejected']);
  const created = r.lines[0].data.rule;
  assert.equal(created.cidr, '198.51.100.0/24');
  assert.equal(created.action, 'ACTION_DENY');
  assert.ok(created.expireTime, 'the ttl Duration reached the server');
  assert.equal(r.lines[1].data.id, created.id, 'listed by covers_address');
  assert.ok('collectTime' in r.lines[3].data, 'a counter snapshot pushed by WatchCounters');
  const rejected = r.lines[6];
  assert.equal(rejected.code, 'INVALID_ARGUMENT');
  assert.equal(rejected.reason, 'HOST_BITS_SET', 'ErrorInfo decoded from grpc-status-details-bin');
  assert.match(rejected.message, /10\.0\.0\.0\/8/);
  // The TypeScript side sees the same store: the rule is gone.
  await assert.rejects(unaryCall(cp.clients.rules, 'getRule', { id: BigInt(created.id) }), /NOT_FOUND|no such rule|5/);
});

test('python create / list / delete commands and a duplicate', async () => {
  const c = await py(['create', '2001:db8:7::/48', '--allow', '--egress', '--comment', 'from python']);
  assert.equal(c.code, 0);
  const rule = c.lines[0].data.rule;
  assert.equal(rule.direction, 'DIRECTION_EGRESS');
  assert.equal(rule.action, 'ACTION_ALLOW');
  const fromTs = await unaryCall(cp.clients.rules, 'getRule', { id: BigInt(rule.id) });
  assert.equal(fromTs.rule?.comment, 'from python');

  const dup = await py(['create', '2001:db8:7::/48', '--egress']); // same CIDR, direction, selector; other action
  assert.equal(dup.code, 1);
  assert.equal(dup.lines[0].reason, 'DUPLICATE_RULE');
  assert.match(dup.lines[0].message, new RegExp(rule.id));

  const l = await py(['list']);
  assert.ok(l.lines.some((x) => x.kind === 'rule' && x.data.id === rule.id));
  const d = await py(['delete', rule.id]);
  assert.equal(d.code, 0);
  const again = await py(['delete', rule.id]);
  assert.equal(again.code, 1);
  assert.equal(again.lines[0].code, 'NOT_FOUND');
});

test('python over TLS with an API token; without one: UNAUTHENTICATED with its ErrorInfo reason', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetwall-py-tls-'));
  const tls = await startTestControlPlane(await pg.newDatabase(), { tls: true, dataDir });
  try {
    const ca = join(dataDir, 'pki/ca.crt');
    const admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const adminClients = connectClients(`127.0.0.1:${tls.grpcPort}`, { ca: readFileSync(ca), token: admin });
    const made = await unaryCall(
      adminClients.tokens,
      'createToken',
      CreateTokenRequest.fromPartial({ name: 'python', role: Role.ROLE_OPERATOR }),
    );
    adminClients.close();
    const target = `localhost:${tls.grpcPort}`;
    const r = await py(['--ca-cert', ca, '--token', made.token, 'demo', '192.0.2.0/24'], target);
    assert.equal(r.code, 0, JSON.stringify(r.lines));
    assert.deepEqual(
      r.lines.map((l) => l.kind),
      ['created', 'rule', 'listed', 'counters', 'counters', 'deleted', 'rejected'],
    );
    assert.equal(r.lines[0].data.rule.createdBy, `token:${made.apiToken!.id}/python`, 'created by the token');
    const anon = await py(['--ca-cert', ca, 'list'], target);
    assert.equal(anon.code, 1);
    assert.equal(anon.lines[0].code, 'UNAUTHENTICATED');
    assert.equal(anon.lines[0].reason, 'CREDENTIALS_REQUIRED');
  } finally {
    await tls.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('python events: drop events an agent sent, filtered; a bad filter is INVALID_ARGUMENT naming the field; detections and bans printed, --kind selects them', async () => {
  const agent = new SyncClient(cp.target, { nodeName: 'py-events-node' }).connect();
  try {
    await agent.waitInSync();
    const ev = (src: number, proto: number, dport: number) => ({
      timeUnixNano: BigInt(Date.now()) * 1_000_000n,
      ruleId: 7n,
      verdict: EventVerdict.EVENT_VERDICT_DROP,
      direction: Direction.DIRECTION_INGRESS,
      source: Buffer.from([203, 0, 113, src]),
      destination: Buffer.from([192, 0, 2, 1]),
      protocol: proto,
      sourcePort: 40000,
      destinationPort: dport,
      tcpFlags: 0,
      length: 60,
      weight: 3n,
      interface: 'eth0',
      packet: Buffer.alloc(0),
      kind: EventKind.EVENT_KIND_DROP,
    });
    agent.send({
      msg: { $case: 'events', value: { events: [ev(9, 17, 53), ev(10, 6, 22), ev(9, 6, 443)], queueDropped: 0n, kernelLost: [] } },
    });
    // The history (since 60 s), only TCP from 203.0.113.9.
    let r = { code: -1, lines: [] as any[] };
    for (let i = 0; i < 50; i++) {
      r = await py(['events', '--since', '60', '--proto', 'tcp', '--source', '203.0.113.9/32']);
      if (r.lines.length > 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(r.code, 0, JSON.stringify(r.lines));
    assert.equal(r.lines.length, 1, JSON.stringify(r.lines));
    const e = r.lines[0].data;
    assert.deepEqual([e.nodeName, e.ruleId, e.source, e.destinationPort, e.weight], ['py-events-node', '7', '203.0.113.9', 443, '3']);
    const bad = await py(['events', '--port', '70000']);
    assert.equal(bad.code, 1);
    assert.equal(bad.lines[0].code, 'INVALID_ARGUMENT');
    assert.equal(bad.lines[0].reason, 'INVALID_FILTER');
    assert.match(bad.lines[0].message, /allow\[0\]\.ports/);

    // Detections and bans are events too (issue 18): the client prints them, and --kind selects them.
    await unaryCall(cp.clients.policies, 'createPolicy', {
      policy: detectionPolicy({ name: 'py-ssh', match: { ports: [], tcpSynOnly: false } }),
    });
    await agent.waitFor((c) => c.policySets.at(-1)?.length === 1, 'the agent gets the policy');
    agent.send({
      msg: {
        $case: 'detection',
        value: {
          kind: 'detection',
          policyId: agent.policySets.at(-1)![0]!.id,
          policy: 'py-ssh',
          address: Buffer.from([198, 51, 100, 77]),
          prefixLength: 32,
          packets: 50n,
          bytes: 3000n,
          window: { seconds: 1n, nanos: 0 },
          packetsPerSecond: 50,
          bytesPerSecond: 3000,
          detectTime: new Date(),
          monitor: false,
          bannedLocally: true,
        },
      },
    });
    let all = { code: -1, lines: [] as any[] };
    for (let i = 0; i < 100; i++) {
      all = await py(['events', '--since', '60']);
      if (all.lines.some((l) => l.data?.kind === 'EVENT_KIND_BAN')) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(all.code, 0, JSON.stringify(all.lines));
    const kinds = all.lines.map((l) => l.data.kind ?? 'EVENT_KIND_UNSPECIFIED');
    assert.deepEqual(
      [...new Set(kinds)].sort(),
      ['EVENT_KIND_BAN', 'EVENT_KIND_DETECTION', 'EVENT_KIND_DROP'],
      'drops, the detection and its ban',
    );
    const only = await py(['events', '--since', '60', '--kind', 'ban', '--policy', 'py-ssh']);
    assert.equal(only.code, 0);
    assert.deepEqual(
      only.lines.map((l) => [l.data.kind, l.data.ban.source, l.data.ban.outcome]),
      [['EVENT_KIND_BAN', '198.51.100.77/32', 'BAN_OUTCOME_CREATED']],
    );
  } finally {
    agent.close();
  }
});
