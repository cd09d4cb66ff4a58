// AgentService.Sync against a real control plane and Postgres, with scripted
// agents: snapshot, per-node filtering, empty deltas, ACK/NACK recorded on
// the node, resume from the change log, the snapshot fallbacks, pings and
// dead peers, protocol errors, stream replacement.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { SyncMode } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { GetNodeRequest, ListNodesRequest } from '../../proto/gen/fleetwall/v1/node_service.js';
import { SyncState, XdpMode } from '../../proto/gen/fleetwall/v1/node.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { rulesApi, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;
const clients: SyncClient[] = [];

function agent(
  nodeName: string,
  labels: Record<string, string> = {},
  opts: Partial<ConstructorParameters<typeof SyncClient>[1]> = {},
): SyncClient {
  const c = new SyncClient(cp.target, { nodeName, labels, ...opts });
  clients.push(c);
  return c;
}

const getNode = (name: string) => unaryCall(cp.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name })).then((r) => r.node!);

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, { pingIntervalMs: 300, nodeFlushIntervalMs: 100, syncChunkBytes: 4096 });
  api = rulesApi(cp.clients.rules);
});

after(async () => {
  for (const c of clients) c.close();
  await cp?.stop();
  await pg?.stop();
});

describe('snapshot and deltas', () => {
  test('a new agent gets a snapshot of the rules its labels select, then InSync', async () => {
    const everyone = await api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } });
    const web = await api.create({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY, selector: { role: 'web' } } });
    const db = await api.create({ rule: { cidr: '203.0.113.0/24', action: Action.ACTION_DENY, selector: { role: 'db' } } });
    // Enough rules for several snapshot chunks.
    const many = await api.import({ action: Action.ACTION_DENY, selector: { role: 'web' } }, [
      Array.from({ length: 600 }, (_, i) => `45.${64 + (i >> 8)}.${i & 255}.0/24`),
    ]);
    const a = agent('web-1', { role: 'web', host: 'web-1' }).connect();
    await a.waitInSync();
    const start = a.starts[0]!;
    assert.equal(start.mode, SyncMode.SYNC_MODE_SNAPSHOT);
    assert.equal(start.revision, many.revision);
    assert.equal(start.storeId, cp.storeId);
    assert.equal(start.controlPlaneId, cp.id);
    assert.equal(start.pingInterval!.nanos, 300_000_000);
    const chunks = a.received.filter((m) => m.msg?.$case === 'snapshotChunk');
    assert.ok(chunks.length > 1, `several chunks (${chunks.length})`);
    assert.equal(a.inSyncRevision, many.revision);
    assert.ok(a.rules.has(everyone.rule!.id));
    assert.ok(a.rules.has(web.rule!.id));
    assert.ok(!a.rules.has(db.rule!.id), 'a rule for role=db is not sent to role=web');
    assert.equal(a.rules.size, 2 + 600);
    const r = a.rules.get(web.rule!.id)!;
    assert.deepEqual([...r.address], [198, 51, 100, 0]);
    assert.equal(r.prefixLength, 24);
  });

  test('one delta per revision, filtered per node; empty when it does not touch the node', async () => {
    const a = agent('web-2', { role: 'web' }).connect();
    const b = agent('db-2', { role: 'db' }).connect();
    await Promise.all([a.waitInSync(), b.waitInSync()]);
    const from = a.inSyncRevision;
    // Each write reaches both agents before the next: the feed sends a rule as it is when it reads the
    // revision, so a feed running behind (a loaded machine) would fold r1..r4 into r4.
    const both = async <T extends { revision: bigint }>(w: T) => {
      await Promise.all([a.waitRevision(w.revision), b.waitRevision(w.revision)]);
      return w;
    };
    const r1 = await both(await api.create({ rule: { cidr: '10.1.0.0/16', action: Action.ACTION_DENY, selector: { role: 'web' } } }));
    const r2 = await both(await api.update({ rule: { id: r1.rule!.id, selector: { role: 'db' } }, updateMask: ['selector'] }));
    const r3 = await both(await api.update({ rule: { id: r1.rule!.id, comment: 'cosmetic' }, updateMask: ['comment'] }));
    const r4 = await both(await api.delete(r1.rule!.id));
    const revs = (c: SyncClient) => c.deltas.map((d) => d.delta.revision).filter((r) => r > from);
    const expected = Array.from({ length: Number(r4.revision - from) }, (_, i) => from + BigInt(i + 1));
    assert.deepEqual(revs(a), expected, 'every revision, once, in order');
    assert.deepEqual(revs(b), expected);
    const at = (c: SyncClient, rev: bigint) => c.deltas.find((d) => d.delta.revision === rev)!.delta;
    const id = r1.rule!.id;
    assert.deepEqual(
      at(a, r1.revision).upserts.map((u) => u.id),
      [id],
    );
    assert.deepEqual(at(b, r1.revision).upserts, [], 'empty delta: not selected');
    assert.deepEqual(at(b, r1.revision).deletes, []);
    assert.deepEqual(at(a, r2.revision).deletes, [id], 'selector moved away: a delete');
    assert.deepEqual(
      at(b, r2.revision).upserts.map((u) => u.id),
      [id],
      'selector moved here: an upsert',
    );
    assert.deepEqual(at(a, r3.revision).deletes, [], 'a comment-only change does not touch the kernel');
    assert.deepEqual(at(b, r3.revision).upserts, []);
    assert.deepEqual(at(b, r4.revision).deletes, [id]);
    assert.deepEqual(at(a, r4.revision).deletes, []);
    assert.ok(at(a, r1.revision).commitTime instanceof Date);
    assert.ok(!a.rules.has(id) && !b.rules.has(id));
  });

  test('a selector on a label key no rule used before splits nodes correctly', async () => {
    const a = agent('zone-a', { role: 'edge', zone: 'a' }).connect();
    const b = agent('zone-b', { role: 'edge', zone: 'b' }).connect();
    await Promise.all([a.waitInSync(), b.waitInSync()]);
    const r = await api.create({ rule: { cidr: '10.9.0.0/16', action: Action.ACTION_DENY, selector: { zone: 'a' } } });
    await Promise.all([a.waitRevision(r.revision), b.waitRevision(r.revision)]);
    assert.ok(a.rules.has(r.rule!.id));
    assert.ok(!b.rules.has(r.rule!.id));
  });
});

describe('node state', () => {
  test('ACK: applied revision, in sync, labels, version, interfaces, control plane', async () => {
    const a = agent('node-ack', { role: 'web' }, { agentVersion: 'fleetwall-agent/9.9' }).connect({
      interfaces: [{ name: 'eth0', ifindex: 2, xdpMode: XdpMode.XDP_MODE_NATIVE, egressMode: 1 }],
    });
    await a.waitInSync();
    const r = await api.create({ rule: { cidr: '10.2.0.0/16', action: Action.ACTION_DENY } });
    await a.waitRevision(r.revision);
    const n = await eventually(async () => {
      const n = await getNode('node-ack');
      assert.equal(n.appliedRevision, r.revision);
      return n;
    }, 'the ACK to be recorded');
    assert.equal(n.connected, true);
    assert.equal(n.syncState, SyncState.SYNC_STATE_IN_SYNC);
    assert.deepEqual(n.labels, { role: 'web' });
    assert.equal(n.agentVersion, 'fleetwall-agent/9.9');
    assert.equal(n.interfaces[0]!.name, 'eth0');
    assert.equal(n.interfaces[0]!.xdpMode, XdpMode.XDP_MODE_NATIVE);
    assert.equal(n.controlPlaneId, cp.id);
    assert.ok(n.lastSeenTime!.getTime() > Date.now() - 60_000);
    const list = await unaryCall(
      cp.clients.nodes,
      'listNodes',
      ListNodesRequest.fromPartial({ selector: { role: 'web' }, connectedOnly: true }),
    );
    assert.ok(list.nodes.some((x) => x.name === 'node-ack'));
    assert.ok(list.nodes.every((x) => x.labels.role === 'web'));
    assert.ok(list.revision >= r.revision);
  });

  test('AgentStatus: rules in the kernel, fill and kernel memory are stored and listed with the node', async () => {
    const a = agent('node-status').connect();
    await a.waitInSync();
    a.send({
      msg: {
        $case: 'status',
        value: {
          interfaces: [],
          rulesInKernel: 1234n,
          mapFillRatio: 0.25,
          lastError: '',
          appliedRevision: 0n,
          kernelMemoryBytes: 5_432_100n,
          mapResizeFailures: undefined,
          failsafe: [],
        },
      },
    });
    const n = await eventually(async () => {
      const n = await getNode('node-status');
      assert.equal(n.kernelMemoryBytes, 5_432_100n);
      return n;
    }, 'the status to be recorded');
    assert.deepEqual([n.rulesInKernel, n.mapFillRatio], [1234n, 0.25]);
  });

  test('NACK: DEGRADED with the status until a later revision is ACKed', async () => {
    const a = agent('node-nack', {}, { autoAck: false }).connect();
    await a.waitInSync();
    a.ack(a.inSyncRevision);
    const r = await api.create({ rule: { cidr: '10.3.0.0/16', action: Action.ACTION_DENY } });
    await a.waitRevision(r.revision);
    a.nack(r.revision, { code: status.RESOURCE_EXHAUSTED, message: 'ingress IPv4 table full: 1048576 of 1048576 prefixes', details: [] });
    const n = await eventually(async () => {
      const n = await getNode('node-nack');
      assert.equal(n.syncState, SyncState.SYNC_STATE_DEGRADED);
      return n;
    }, 'the NACK to be recorded');
    assert.equal(n.nackedRevision, r.revision);
    assert.equal(n.lastNack!.code, status.RESOURCE_EXHAUSTED);
    assert.match(n.lastNack!.message, /table full/);
    assert.ok(n.appliedRevision < r.revision);
    const r2 = await api.create({ rule: { cidr: '10.4.0.0/16', action: Action.ACTION_DENY } });
    await a.waitRevision(r2.revision);
    a.ack(r2.revision);
    const n2 = await eventually(async () => {
      const n2 = await getNode('node-nack');
      assert.equal(n2.syncState, SyncState.SYNC_STATE_IN_SYNC);
      return n2;
    }, 'the later ACK to clear the NACK');
    assert.equal(n2.nackedRevision, 0n);
    assert.equal(n2.lastNack, undefined);
    assert.equal(n2.appliedRevision, r2.revision);
  });

  test('disconnect is recorded', async () => {
    const a = agent('node-bye').connect();
    await a.waitInSync();
    await eventually(async () => assert.equal((await getNode('node-bye')).connected, true), 'connected');
    a.close();
    const n = await eventually(async () => {
      const n = await getNode('node-bye');
      assert.equal(n.connected, false);
      return n;
    }, 'the disconnect');
    assert.equal(n.syncState, SyncState.SYNC_STATE_DISCONNECTED);
    assert.equal(n.controlPlaneId, '');
  });
});

describe('resume', () => {
  test('from a revision in the change log: per-revision deltas, same final rules as a snapshot', async () => {
    const keep = await api.create({ rule: { cidr: '10.10.0.0/16', action: Action.ACTION_DENY } });
    const gone = await api.create({ rule: { cidr: '10.11.0.0/16', action: Action.ACTION_DENY } });
    const moved = await api.create({ rule: { cidr: '10.12.0.0/16', action: Action.ACTION_DENY, selector: { role: 'web' } } });
    const first = agent('resumer', { role: 'web' }).connect();
    await first.waitInSync();
    const r0 = first.inSyncRevision;
    const rules0 = new Map(first.rules);
    first.close();
    await api.delete(gone.rule!.id);
    await api.update({ rule: { id: moved.rule!.id, selector: { role: 'db' } }, updateMask: ['selector'] });
    const added = await api.create({ rule: { cidr: '10.13.0.0/16', action: Action.ACTION_DENY } });
    const unrelated = await api.create({ rule: { cidr: '10.14.0.0/16', action: Action.ACTION_DENY, selector: { role: 'db' } } });
    const second = agent('resumer', { role: 'web' }, { resumeRevision: r0, storeId: first.storeId }).connect();
    for (const [id, r] of rules0) second.rules.set(id, r);
    await second.waitInSync();
    assert.equal(second.starts[0]!.mode, SyncMode.SYNC_MODE_RESUME);
    assert.equal(second.received.filter((m) => m.msg?.$case === 'snapshotChunk').length, 0);
    const revs = second.deltas.map((d) => d.delta.revision);
    assert.deepEqual(
      revs,
      Array.from({ length: Number(unrelated.revision - r0) }, (_, i) => r0 + BigInt(i + 1)),
      'Delta{resume+1} ... Delta{R}',
    );
    assert.equal(second.inSyncRevision, unrelated.revision);
    assert.ok(second.rules.has(keep.rule!.id));
    assert.ok(second.rules.has(added.rule!.id));
    assert.ok(!second.rules.has(gone.rule!.id));
    assert.ok(!second.rules.has(moved.rule!.id), 'its selector moved away');
    assert.ok(!second.rules.has(unrelated.rule!.id));
    const fresh = agent('fresh-web', { role: 'web' }).connect();
    await fresh.waitInSync();
    await fresh.waitRevision(second.inSyncRevision);
    assert.deepEqual(second.ruleIds(), fresh.ruleIds(), 'resume ends where a snapshot would');
  });

  test('snapshot instead: resume 0, another store, a revision from the future', async () => {
    const cur = (await api.list({ pageSize: 1 })).revision;
    const other = agent('other-store', {}, { resumeRevision: 1n, storeId: '00000000-0000-0000-0000-000000000000' }).connect();
    const future = agent('future', {}, { resumeRevision: cur + 1000n, storeId: cp.storeId }).connect();
    const same = agent('same', {}, { resumeRevision: cur, storeId: cp.storeId }).connect();
    await Promise.all([other.waitInSync(), future.waitInSync(), same.waitInSync()]);
    assert.equal(other.starts[0]!.mode, SyncMode.SYNC_MODE_SNAPSHOT);
    assert.equal(future.starts[0]!.mode, SyncMode.SYNC_MODE_SNAPSHOT);
    assert.equal(same.starts[0]!.mode, SyncMode.SYNC_MODE_RESUME, 'nothing to catch up: resume with no deltas');
  });

  test('snapshot once the change log was pruned past the resume revision', async () => {
    const url2 = await pg.newDatabase();
    const cp2 = await startTestControlPlane(url2, { changeRetentionMs: 1000, retentionPruneIntervalMs: 100 });
    try {
      const api2 = rulesApi(cp2.clients.rules);
      const a = new SyncClient(cp2.target, { nodeName: 'old' }).connect();
      clients.push(a);
      await a.waitInSync();
      const r0 = a.inSyncRevision;
      a.close();
      await api2.create({ rule: { cidr: '10.20.0.0/16', action: Action.ACTION_DENY } });
      const last = await api2.create({ rule: { cidr: '10.21.0.0/16', action: Action.ACTION_DENY } });
      await eventually(
        () =>
          withSql(url2, async (sql) => {
            const [f] = await sql<{ value: string }[]>`select value from meta where key = 'log_floor'`;
            // A boolean, not a bare assert.ok: a failing assert without a message has Node re-parse this
            // file to describe it, seconds of CPU per poll under tsx, and the poll never ends.
            return BigInt(f!.value) >= last.revision;
          }),
        'the change log to be pruned',
      );
      const b = new SyncClient(cp2.target, { nodeName: 'old', resumeRevision: r0, storeId: cp2.storeId }).connect();
      clients.push(b);
      await b.waitInSync();
      assert.equal(b.starts[0]!.mode, SyncMode.SYNC_MODE_SNAPSHOT);
      assert.equal(b.rules.size, 2);
    } finally {
      await cp2.stop();
    }
  });
});

describe('liveness and protocol', () => {
  test('pings both ways; a silent agent is dropped after three intervals', async () => {
    const a = agent('pinger').connect();
    await a.waitInSync();
    await a.waitFor((c) => c.pings >= 2, 'two pings');
    a.send({ msg: { $case: 'ping', value: { nonce: 77n, sendTime: new Date() } } });
    await a.waitFor((c) => c.received.some((m) => m.msg?.$case === 'pong' && m.msg.value.nonce === 77n), 'a pong');
    const silent = agent('silent', {}, { autoPong: false }).connect();
    await silent.waitInSync();
    await silent.waitEnded();
    assert.equal(silent.ended!.code, status.UNAVAILABLE);
    assert.equal(errorInfoOf(silent.ended!.error!)?.reason, 'AGENT_TIMEOUT');
    assert.equal(a.ended, undefined, 'the agent that answers stays connected');
  });

  test('the first message must be Hello; node_name must be set', async () => {
    const a = agent('x');
    a.connect();
    await a.waitInSync();
    const bad = agent('no-hello');
    // Open the stream with a Ping instead of Hello.
    (bad as unknown as { call: unknown }).call = bad.client.sync();
    const call = (bad as unknown as { call: import('@grpc/grpc-js').ClientDuplexStream<unknown, unknown> }).call;
    const ended = new Promise<import('@grpc/grpc-js').ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', () => undefined);
    bad.send({ msg: { $case: 'ping', value: { nonce: 1n, sendTime: new Date() } } });
    const e = await ended;
    assert.equal(e.code, status.FAILED_PRECONDITION);
    assert.equal(errorInfoOf(e)?.reason, 'HELLO_REQUIRED');
    const unnamed = agent('').connect();
    await unnamed.waitEnded();
    assert.equal(unnamed.ended!.code, status.INVALID_ARGUMENT);
    assert.equal(errorInfoOf(unnamed.ended!.error!)?.reason, 'NODE_NAME_REQUIRED');
  });

  test('a second stream from the same node replaces the first', async () => {
    const a = agent('twin').connect();
    await a.waitInSync();
    const b = agent('twin').connect();
    await b.waitInSync();
    await a.waitEnded();
    assert.equal(a.ended!.code, status.ABORTED);
    assert.equal(errorInfoOf(a.ended!.error!)?.reason, 'STREAM_REPLACED');
    const r = await api.create({ rule: { cidr: '10.30.0.0/16', action: Action.ACTION_DENY } });
    await b.waitRevision(r.revision);
    await eventually(async () => {
      const n = await getNode('twin');
      assert.equal(n.connected, true);
      assert.equal(n.appliedRevision, r.revision);
    }, 'the newer stream to own the node');
  });
});
