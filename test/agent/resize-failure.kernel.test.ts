// The agent's view of a resize that fails (issue: a failed background grow
// was only a log line): the in-process agent on the real datapath (a test pin
// dir, an interface that does not exist: nothing attached) takes its rules
// from a scripted control plane; the datapath was opened from a copy of the
// objects whose XDP object is then replaced by one the verifier rejects, so
// the grow ahead the snapshot makes due fails at its load. /metrics counts it
// (fleetwall_agent_map_resize_failures{kind="grow"}), /healthz gives its
// reason and time, the control plane is told (AgentStatus.map_resize_failures
// on the stream: test/operator/cli-nodes-resize.test.ts takes it from there to
// `fleetwall nodes ls`), the snapshot was ACKed, and the generation in force
// still drops every listed source.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Agent } from '../../node-agent/src/agent.js';
import { loadConfig } from '../../node-agent/src/config.js';
import { type BpfDatapath, openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/libbpf.js';
import { waitFor } from '../support/agent-harness.js';
import { ipFrame } from '../support/frames.js';
import { cleanupPins, uniquePinDir } from '../support/pin-dirs.js';
import { compileRejectedObject } from '../support/rejected-object.js';
import { ScriptedControlPlane, wireRule } from '../support/scripted-control-plane.js';

const OBJ_DIR = resolve(import.meta.dirname, '../../bpf/obj');
const XDP_OBJ = 'xdp_ingress.bpf.o';
/** Rule i: 10.<i>.7.9/32, a /16 (a /24 index block) of its own. */
const source = (i: number) => `10.${i}.7.9`;

test('a grow ahead the kernel refuses: /metrics counts it by kind, /healthz and AgentStatus give its reason and time, the snapshot is ACKed and the maps in force drop every listed source', async (t) => {
  const objDir = mkdtempSync(join(tmpdir(), 'fw-agent-resize-'));
  const pinDir = uniquePinDir('agent-resize-fail');
  const cp = await ScriptedControlPlane.start();
  let agent: Agent | undefined;
  t.after(async () => {
    await agent?.stop();
    cp.stop();
    cleanupPins(pinDir);
    rmSync(objDir, { recursive: true, force: true });
  });
  copyFileSync(join(OBJ_DIR, XDP_OBJ), join(objDir, XDP_OBJ));
  copyFileSync(join(OBJ_DIR, 'tc_egress.bpf.o'), join(objDir, 'tc_egress.bpf.o'));
  copyFileSync(join(OBJ_DIR, 'fw_clock.bpf.o'), join(objDir, 'fw_clock.bpf.o')); // the policies' clock (kernel-clock.ts)
  const rejected = compileRejectedObject(objDir);
  const cfg = loadConfig(
    [
      ...['--control-plane', cp.address, '--node-name', 'node-r', '--interfaces', 'fwt-absent0'],
      ...['--pin-path', pinDir, '--obj-dir', objDir, '--http-addr', '127.0.0.1:0'],
      ...['--capacity-prefixes', '4096', '--capacity-slots', '1024', '--reconnect-min', '20ms', '--reconnect-max', '200ms'],
    ],
    {},
  );
  let opened: BpfDatapath | undefined;
  agent = await Agent.start(cfg, {
    openDatapath: (o) => (opened = openDatapath(o)),
    logger: pino({ level: process.env.AGENT_TEST_LOG ?? 'silent' }),
  });
  const dp = opened!;
  // The open loaded the real objects; from now on a swap's load reads one the kernel refuses.
  copyFileSync(rejected, join(objDir, XDP_OBJ));
  const base = `http://127.0.0.1:${agent.httpPort}`;
  const metrics = async () => (await fetch(`${base}/metrics`)).text();
  assert.match(await metrics(), /^fleetwall_agent_map_resize_failures\{kind="grow"\} 0$/m);

  // Enough /16s of their own to fill the least /24 pool past 3/4 (the failsafe entries hold some) while it still fits.
  const least = dp.generation().sizes.blocks[0]!;
  const held = dp.memory().tables[0]!.blocksInUse;
  const n = Math.floor(least * 0.75) + 1 - held;
  assert.ok(n > 0 && held + n <= least, `${least} blocks, ${held} in use`);
  const startedAt = new Date();
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(7n, 'st');
  s.chunk(
    7n,
    Array.from({ length: n }, (_, i) => wireRule(i + 1, source(i))),
    true,
  );
  assert.equal((await s.next('ack')).revision, 7n, 'the snapshot went in: ACKed');
  await dp.settled();

  await waitFor('the failed grow on /metrics', async () => /^fleetwall_agent_map_resize_failures\{kind="grow"\} 1$/m.test(await metrics()));
  const m = await metrics();
  assert.match(m, /^fleetwall_agent_map_resize_failures\{kind="shrink"\} 0$/m);
  assert.match(m, /^fleetwall_agent_map_resizes 0$/m);
  const h = (await (await fetch(`${base}/healthz`)).json()) as {
    kernelMemory: {
      resizes: number;
      resizeFailures: { grow: number; shrink: number };
      lastResizeFailure: string;
      lastResizeFailureTime: string;
    };
  };
  assert.deepEqual(h.kernelMemory.resizeFailures, { grow: 1, shrink: 0 });
  assert.match(h.kernelMemory.lastResizeFailure, /^grow: .*verifier rejected the program/s);
  const failedAt = Date.parse(h.kernelMemory.lastResizeFailureTime);
  assert.ok(failedAt >= startedAt.getTime() && failedAt <= Date.now(), h.kernelMemory.lastResizeFailureTime);

  // The control plane is told: the next AgentStatus (on a counter tick) carries the count, the reason and the time.
  const reported = () => s.received.flatMap((m) => (m.$case === 'status' && m.value.mapResizeFailures ? [m.value.mapResizeFailures] : []));
  await waitFor('the failed grow in an AgentStatus', () => reported().length > 0);
  const f = reported()[0]!;
  assert.deepEqual([f.grow, f.shrink], [1n, 0n]);
  assert.equal(f.lastReason, h.kernelMemory.lastResizeFailure);
  assert.equal(f.lastTime?.getTime(), failedAt);
  assert.equal(dp.generation().sizes.blocks[0], least, 'the maps in force stayed');
  for (let i = 0; i < n; i++) assert.equal(dp.testRun('xdp', ipFrame(source(i), '192.0.2.1')).retval, XDP_DROP, source(i));
  assert.equal(dp.testRun('xdp', ipFrame(source(n), '192.0.2.1')).retval, XDP_PASS);
});
