// The agent's --events setting picks the programs on its links (bpf/README.md,
// "The programs"): off, fw_xdp_noev / fw_tc_noev (no event code); on,
// fw_xdp_ingress / fw_tc_egress. A restart with the other setting (a real
// agent process, the same pins) puts the other pair on the links, and a
// blocked source stays blocked throughout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { PROG } from '../../node-agent/src/datapath/abi.js';
import { AgentProcess, UdsProxy } from '../support/agent-process.js';
import { interfacePrograms } from '../support/link-programs.js';
import { withNetnsPair } from '../support/netns.js';
import { ScriptedControlPlane, wireRule } from '../support/scripted-control-plane.js';
import { ping } from '../support/traffic.js';

const NOEV = { xdp: PROG.XDP_NOEV, tc: PROG.TC_NOEV };
const EV = { xdp: PROG.XDP, tc: PROG.TC };

test('--events off runs the noev pair on the links, on the event pair; each restart with the other setting switches them, the rule enforced throughout', async () => {
  await withNetnsPair(async (bed) => {
    const cp = await ScriptedControlPlane.start();
    const link = await UdsProxy.start(cp.address);
    const pinDir = `/sys/fs/bpf/fleetwall-test-evprog-${process.pid}-${randomBytes(3).toString('hex')}`;
    const blocked = bed.a.v4Extra[0]!;
    const agents: AgentProcess[] = [];
    const start = async (events: 'on' | 'off') => {
      const a = await AgentProcess.start({ bed, controlPlane: link.address, pinDir, args: ['--events', events] });
      agents.push(a);
      return a;
    };
    try {
      const first = await start('off');
      assert.deepEqual(interfacePrograms(pinDir, bed.b.ifname), NOEV, 'events off: the noev pair');
      const s1 = await cp.accept();
      await s1.next('hello');
      s1.startSnapshot(5n, 'e3b0c442-98fc-4c1c-9d3b-1c6e0a1f2d3e');
      s1.chunk(5n, [wireRule(1, `${blocked}/32`)], true);
      await s1.next('ack');
      assert.equal((await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 3 })).received, 0, 'blocked (events off)');
      await first.stop();
      assert.deepEqual(interfacePrograms(pinDir, bed.b.ifname), NOEV, 'a stopped agent leaves its pair enforcing');

      const second = await start('on');
      assert.deepEqual(interfacePrograms(pinDir, bed.b.ifname), EV, 'restarted with events on: the event pair');
      assert.equal((await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 3 })).received, 0, 'blocked (events on)');
      await second.stop();

      await start('off');
      assert.deepEqual(interfacePrograms(pinDir, bed.b.ifname), NOEV, 'restarted with events off: the noev pair again');
      assert.equal((await ping(bed, { from: 'a', src: blocked, dst: bed.b.v4, count: 3 })).received, 0, 'blocked (events off again)');
      const open = bed.a.v4Extra[1]!;
      assert.equal((await ping(bed, { from: 'a', src: open, dst: bed.b.v4, count: 3 })).received, 3, 'an unlisted source passes');
    } catch (e) {
      (e as Error).message += `\n--- agent log ---\n${agents.at(-1)?.tail(60) ?? ''}`;
      throw e;
    } finally {
      // The last one removes the pins; the earlier ones only their files.
      for (const a of agents.slice(0, -1)) {
        if (a.alive) await a.kill9();
        rmSync(a.dir, { recursive: true, force: true });
      }
      await agents.at(-1)?.cleanup();
      await link.close();
      cp.stop();
    }
  });
});
