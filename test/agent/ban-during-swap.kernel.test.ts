// Issue 18, "bounded under attack", at the agent level: the engine runs one
// reconcile at a time, so a local ban waits for the reconcile before it. The
// apply of that reconcile resolves once its ops are written, even when they
// left the maps more than 3/4 full and so started a larger generation's swap
// (grow ahead): the swap's load (the verifier, 0.3-6 s under load) goes on in
// the background. So a ban arriving during that load is reconciled and drops
// its source in the kernel before the swap is built, and the swap carries it.
//
// The engine and reconciler are the agent's, on the real BpfDatapath; the bans
// go in the way the responder puts them (Engine.replaceLocalRules, owner
// 'ban', planBanRules). The property is an order of events: the swap's own
// hook records its steps, the test records each ban once it drops.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/libbpf.js';
import { Engine } from '../../node-agent/src/engine.js';
import type { LocalBan } from '../../node-agent/src/respond/evaluator.js';
import { planBanRules } from '../../node-agent/src/respond/local-bans.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';

const IN4: TableIndex = 0;

/** Source i: 10.<i>.7.9, a /16 (a block of the /24 index) of its own. */
const source = (i: number) => `10.${i}.7.9`;
const ban = (i: number): LocalBan => ({
  family: 4,
  addr: new Uint8Array([10, i, 7, 9]),
  len: 32,
  direction: 'ingress',
  expireUnixMs: Date.now() + 3_600_000,
});

test("a ban arriving while a grow-ahead swap's programs load drops its source before the swap is built; the swap carries it", async () => {
  const events: string[] = [];
  await withDatapath(
    'ban-swap',
    { capacity: { prefixesPerTable: 4096, counterSlots: 1024 }, onSwapStep: (step) => events.push(`swap ${step}`) },
    async (dp) => {
      const engine = await Engine.open(dp, pino({ level: 'silent' }));
      try {
        const g0 = dp.generation();
        const blocks = g0.sizes.blocks[IN4]!;
        // Bans A fill the /24 index past 3/4 (their apply then starts a larger generation's swap); ban B still fits.
        const nA = Math.floor(blocks * 0.75) + 1;
        assert.ok(nA + 1 <= blocks, `${blocks} blocks`);
        const drops = (i: number) => dp.testRun('xdp', ipFrame(source(i), '192.0.2.1')).retval === XDP_DROP;

        await engine.replaceLocalRules(
          (cur) =>
            planBanRules(
              cur,
              Array.from({ length: nA }, (_, i) => ban(i)),
              Date.now(),
            ),
          'ban',
        );
        await engine.idle();
        assert.ok(drops(nA - 1), 'the last of bans A drops');
        events.push('bans A reconciled');
        assert.ok(dp.swapping, 'the swap bans A made due is in flight once their reconcile is done');

        // Ban B, the way the responder sends it: queued behind nothing but the reconcile of bans A, which is done.
        assert.equal(dp.testRun('xdp', ipFrame(source(nA), '192.0.2.1')).retval, XDP_PASS, 'B passes before its ban');
        await engine.replaceLocalRules((cur) => planBanRules(cur, [ban(nA)], Date.now()), 'ban');
        await engine.idle();
        assert.ok(drops(nA), "B's source drops once its ban is reconciled");
        assert.equal(dp.generation().n, g0.n, 'in the generation the swap replaces');
        events.push('ban B drops');

        await dp.settled();
        events.push('settled');
        assert.equal(engine.lastError, '', 'no reconcile failed');
        assert.deepEqual(events.slice(0, 3), ['bans A reconciled', 'ban B drops', 'swap built'], JSON.stringify(events));
        assert.equal(events.at(-1), 'settled');
        assert.ok(events.includes('swap committed'), JSON.stringify(events));
        const g1 = dp.generation();
        assert.equal(g1.n, g0.n + 1, 'the swap bans A made due went in');
        assert.ok(g1.sizes.blocks[IN4]! > blocks, `the /24 index grew: ${blocks} -> ${g1.sizes.blocks[IN4]}`);
        // The new generation was filled after the load: it holds ban B, reconciled during it, as well as bans A.
        for (let i = 0; i <= nA; i++) assert.ok(drops(i), `${source(i)} drops in the new generation`);
        assert.equal(dp.testRun('xdp', ipFrame(source(nA + 1), '192.0.2.1')).retval, XDP_PASS, 'an unbanned source passes');
        assert.equal(engine.localRules().length, nA + 1);
      } finally {
        engine.stop();
      }
    },
  );
});
