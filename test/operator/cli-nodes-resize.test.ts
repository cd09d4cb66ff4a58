// A node whose maps failed to resize, as an operator sees it: a Sync client
// (real gRPC) reports AgentStatus.map_resize_failures to a real control plane
// on real Postgres; `fleetwall nodes ls` (a real CLI process) shows it in the
// PROBLEM column and in full with --json, `nodes get` and GET /v1/nodes/:name
// too; a later status with a resize that went in keeps the counts and drops
// the reason; a node without failures shows no problem.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AgentStatus } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { type CliRun, runCli } from '../support/cli.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { eventually } from '../support/eventually.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { SyncClient } from '../support/scripted-agent.js';

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

const fw = (args: string[]): Promise<CliRun> => runCli(cp.target, args);

function jsonLines(s: string): Record<string, any>[] {
  return s
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** The PROBLEM cell of `node`'s row in `nodes ls` (the last column: it may hold spaces). */
function problemOf(table: string, node: string): string {
  const lines = table.split('\n');
  const at = lines[0]!.indexOf('PROBLEM');
  assert.ok(at > 0, `a PROBLEM column in:\n${table}`);
  const row = lines.find((l) => l.startsWith(`${node} `));
  assert.ok(row, `a row for ${node} in:\n${table}`);
  return row.slice(at).trim();
}

function status(failures: AgentStatus['mapResizeFailures']): AgentStatus {
  return {
    interfaces: [],
    rulesInKernel: 49_000n,
    mapFillRatio: 0.75,
    lastError: '',
    appliedRevision: 0n,
    failsafe: [],
    kernelMemoryBytes: 12_000_000n,
    mapResizeFailures: failures,
  };
}

test('failed map resizes an agent reports show in nodes ls (table and --json), nodes get and GET /v1/nodes/:name', async () => {
  const failing = new SyncClient(cp.target, { nodeName: 'resize-fails' }).connect();
  const healthy = new SyncClient(cp.target, { nodeName: 'resize-ok' }).connect();
  try {
    await failing.waitInSync();
    await healthy.waitInSync();
    const at = new Date(Date.now() - 5 * 60_000);
    const reason = `grow: load generation 2: the verifier rejected the program (EACCES)\nverifier log line 1\nline 2 ${'y'.repeat(200)}`;
    failing.send({ msg: { $case: 'status', value: status({ grow: 2n, shrink: 1n, lastReason: reason, lastTime: at }) } });
    healthy.send({ msg: { $case: 'status', value: status(undefined) } });

    const json = await eventually(async () => {
      const r = await fw(['nodes', 'ls', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const nodes = jsonLines(r.stdout);
      const n = nodes.find((x) => x.name === 'resize-fails');
      assert.ok(n?.mapResizeFailures, `not yet: ${r.stdout}`);
      return nodes;
    }, 'the failed resizes in nodes ls --json');
    assert.deepEqual(json.find((x) => x.name === 'resize-fails')!.mapResizeFailures, {
      grow: '2',
      shrink: '1',
      lastReason: reason,
      lastTime: at.toISOString(),
    });
    assert.equal(json.find((x) => x.name === 'resize-ok')!.mapResizeFailures, undefined, 'none failed: unset');

    const ls = await fw(['nodes', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(
      problemOf(ls.stdout, 'resize-fails'),
      'map resizes failed: 2 grows, 1 shrink; last 5m ago: grow: load generation 2: the verifier rejected the program (EACCES)',
    );
    assert.equal(problemOf(ls.stdout, 'resize-ok'), '');

    const get = await fw(['nodes', 'get', 'resize-fails']);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /map resizes failed: 2 grows, 1 shrink; last 5m ago: grow: /);

    const http = (await (await fetch(`http://127.0.0.1:${cp.httpPort}/v1/nodes/resize-fails`)).json()) as {
      node: { mapResizeFailures: unknown };
    };
    assert.deepEqual(http.node.mapResizeFailures, { grow: '2', shrink: '1', lastReason: reason, lastTime: at.toISOString() });

    // A resize went in since: the counts stay, the reason and time go.
    failing.send({ msg: { $case: 'status', value: status({ grow: 2n, shrink: 1n, lastReason: '', lastTime: undefined }) } });
    const since = await eventually(async () => {
      const r = await fw(['nodes', 'ls']);
      assert.equal(r.code, 0, r.stderr);
      const p = problemOf(r.stdout, 'resize-fails');
      assert.ok(!p.includes('last'), `not yet: ${p}`);
      return { p, json: jsonLines((await fw(['nodes', 'get', 'resize-fails', '--json'])).stdout)[0]! };
    }, 'the resize that went in');
    assert.equal(since.p, 'map resizes failed: 2 grows, 1 shrink (a resize went in since)');
    assert.deepEqual(since.json.mapResizeFailures, { grow: '2', shrink: '1' });
  } finally {
    failing.close();
    healthy.close();
  }
});
