// End to end on real packets: two namespaces joined by a veth pair (the test
// bed), fleetwall attached to the veth in namespace b by a separate process,
// real ping and UDP from addresses inside and outside the rules.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { withNetnsPair } from '../support/netns.js';
import { ping, udp } from '../support/traffic.js';
import { runChild, startChild } from '../support/dataplane-child.js';
import { cleanupPins, uniquePinDir } from '../support/pin-dirs.js';
import { readEntries, readRuleCounters } from '../support/object-forms.js';

const PING4_FRAME = 98; // 14 + 20 + 8 + 56
const UDP6_FRAME = 94; // 14 + 40 + 8 + 32
const UDP4_FRAME = 74; // 14 + 20 + 8 + 32
const CAP = { prefixesPerTable: 4096, counterSlots: 64 };

test('ingress and egress on real packets; counters exact; enforcement survives kill -9; a new process reopens and removes a rule', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('e2e');
    try {
      const A = bed.a;
      const [a2, a3, a4, a5] = A.v4Extra as [string, string, string, string];
      const [a6_2, a6_3, a6_4] = A.v6Extra as [string, string, string];

      // The loader runs inside namespace b, attaches, loads rules, then is killed.
      const agent = startChild(bed, 'b', [
        { open: { pinDir, capacity: CAP } },
        { attach: { ifname: bed.b.ifname } },
        {
          apply: [
            { upsert: { direction: 'ingress', cidr: '192.0.2.0/30', action: 'deny', slot: 1 } }, // .0-.3
            { upsert: { direction: 'ingress', cidr: `${A.v4}/32`, action: 'allow', slot: 2 } }, // allow inside the deny
            { upsert: { direction: 'ingress', cidr: `${a4}/32`, action: 'deny', mode: 'monitor', slot: 3 } },
            { upsert: { direction: 'ingress', cidr: `${a6_2}/128`, action: 'deny', slot: 4 } },
            { upsert: { direction: 'egress', cidr: `${a5}/32`, action: 'deny', slot: 5 } },
            { upsert: { direction: 'egress', cidr: '2001:db8:f00::4/127', action: 'deny', slot: 6 } }, // ::4-::5
          ],
        },
        { hold: true },
      ]);
      const res = await agent.results(4);
      assert.ok(
        res.every((r) => r.ok),
        JSON.stringify(res),
      );
      assert.equal(res[1]!.result.xdpMode, 'native', 'veth takes native XDP');
      assert.equal(res[1]!.result.egressMode, 'tcx', 'TCX egress link on this kernel');

      const dp = openDatapath({ pinDir });
      try {
        assert.equal(dp.createdFresh, false, 'the test process reopens the pins');
        const n = 5;
        // Inside the /30 deny: dropped.
        assert.deepEqual(await ping(bed, { from: 'a', src: a2, dst: bed.b.v4, count: n }), { sent: n, received: 0 });
        assert.deepEqual(await ping(bed, { from: 'a', src: a3, dst: bed.b.v4, count: n }), { sent: n, received: 0 });
        // The allowed /32 inside the deny: passes.
        assert.deepEqual(await ping(bed, { from: 'a', src: A.v4, dst: bed.b.v4, count: n }), { sent: n, received: n });
        // Monitor: passes, counted as would-drop.
        assert.deepEqual(await ping(bed, { from: 'a', src: a4, dst: bed.b.v4, count: n }), { sent: n, received: n });
        // IPv6: denied source dropped, another one passes.
        assert.deepEqual(await udp(bed, { from: 'a', src: a6_2, dst: bed.b.v6, count: 20 }), { sent: 20, received: 0 });
        assert.deepEqual(await udp(bed, { from: 'a', src: a6_3, dst: bed.b.v6, count: 20 }), { sent: 20, received: 20 });
        // UDP over IPv4 from an address inside and outside the deny.
        assert.deepEqual(await udp(bed, { from: 'a', src: a3, dst: bed.b.v4, count: 10 }), { sent: 10, received: 0 });
        assert.deepEqual(await udp(bed, { from: 'a', src: A.v4, dst: bed.b.v4, count: 10 }), { sent: 10, received: 10 });

        // Egress: b's replies to a5 are shot by the TC program (the requests got in).
        assert.deepEqual(await ping(bed, { from: 'a', src: a5, dst: bed.b.v4, count: n }), { sent: n, received: 0 });
        // Egress IPv6: b sends to ::4 (inside the /127): blocked; to ::3: delivered.
        assert.deepEqual(await udp(bed, { from: 'b', src: bed.b.v6, dst: a6_4, count: 10 }), { sent: 10, received: 0 });
        assert.deepEqual(await udp(bed, { from: 'b', src: bed.b.v6, dst: a6_3, count: 10 }), { sent: 10, received: 10 });

        const c = readRuleCounters(dp, 8);
        assert.deepEqual(
          [...c.packets],
          [0n, BigInt(2 * n + 10), BigInt(n + 10), BigInt(n), 20n, BigInt(n), 10n, 0n],
          'rule packet counters equal the packets sent',
        );
        assert.equal(c.bytes[1], BigInt(2 * n * PING4_FRAME + 10 * UDP4_FRAME));
        assert.equal(c.bytes[3], BigInt(n * PING4_FRAME));
        assert.equal(c.bytes[4], BigInt(20 * UDP6_FRAME));
        assert.equal(c.bytes[5], BigInt(n * PING4_FRAME));
        assert.equal(c.bytes[6], BigInt(10 * UDP6_FRAME));

        const ifc = dp.readInterfaceCounters().filter((x) => x.ifname === bed.b.ifname);
        const ing = ifc.find((x) => x.direction === 'ingress')!;
        const eg = ifc.find((x) => x.direction === 'egress')!;
        assert.ok(ing && eg, 'interface totals exist for both directions');
        assert.equal(ing.totals.drop.packets, BigInt(2 * n + 20 + 10));
        assert.equal(ing.totals.wouldDrop.packets, BigInt(n));
        assert.ok(ing.totals.pass.packets >= BigInt(n + 20 + 10 + n), `passed packets counted: ${ing.totals.pass.packets}`);
        assert.equal(eg.totals.drop.packets, BigInt(n + 10));
        assert.equal(eg.totals.wouldDrop.packets, 0n);

        // kill -9 the loader: the pinned links keep enforcing.
        agent.child.kill('SIGKILL');
        await new Promise((r) => agent.child.once('exit', r));
        assert.deepEqual(
          await ping(bed, { from: 'a', src: a2, dst: bed.b.v4, count: 3 }),
          { sent: 3, received: 0 },
          'still dropping after kill -9',
        );
        assert.equal(readRuleCounters(dp, 2).packets[1], BigInt(2 * n + 10 + 3));

        // A new process reopens the pins (no flush, no detach), removes the rule: traffic flows.
        const again = await runChild(bed, 'b', [
          { open: { pinDir } },
          { attachments: true },
          { apply: [{ delete: { direction: 'ingress', cidr: '192.0.2.0/30' } }] },
          { attach: { ifname: bed.b.ifname } }, // idempotent
          { close: true },
        ]);
        assert.ok(
          again.every((r) => r.ok),
          JSON.stringify(again),
        );
        assert.equal(again[0]!.result.createdFresh, false);
        assert.deepEqual(again[1]!.result, [{ ifname: bed.b.ifname, ifindex: bed.b.ifindex, xdpMode: 'native', egressMode: 'tcx' }]);
        assert.deepEqual(
          await ping(bed, { from: 'a', src: a2, dst: bed.b.v4, count: 3 }),
          { sent: 3, received: 3 },
          'flows after the rule is removed',
        );
        // The other rules are still in force.
        assert.deepEqual(await udp(bed, { from: 'a', src: a6_2, dst: bed.b.v6, count: 5 }), { sent: 5, received: 0 });
        assert.deepEqual(
          readEntries(dp)
            .map((e) => `${e.direction} ${e.prefix.len} ${e.slot}`)
            .sort(),
          ['egress 127 6', 'egress 32 5', 'ingress 128 4', 'ingress 32 2', 'ingress 32 3'],
        );

        // Explicit uninstall detaches and unpins everything.
        dp.uninstall();
      } finally {
        dp.close();
      }
      assert.equal(existsSync(pinDir), false, 'no pins left');
      const link = bed.execSync('b', ['ip', '-d', 'link', 'show', bed.b.ifname]).stdout;
      assert.doesNotMatch(link, /prog\/xdp/, 'no XDP program left on the interface');
      assert.deepEqual(await ping(bed, { from: 'a', src: a5, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 }, 'egress rule gone');
    } finally {
      cleanupPins(pinDir);
    }
  });
});

test('allowlist mode on real packets: only allowed sources get in, ARP still works', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('e2e-allow');
    try {
      const res = await runChild(bed, 'b', [
        { open: { pinDir, defaultAction: 'drop', capacity: CAP } },
        { attach: { ifname: bed.b.ifname, opts: { egress: false } } },
        {
          apply: [
            { upsert: { direction: 'ingress', cidr: `${bed.a.v4}/32`, action: 'allow', slot: 1 } },
            { upsert: { direction: 'ingress', cidr: `${bed.a.v6}/128`, action: 'allow', slot: 2 } },
          ],
        },
        { close: true },
      ]);
      assert.ok(
        res.every((r) => r.ok),
        JSON.stringify(res),
      );
      assert.equal(res[1]!.result.egressMode, 'none');
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4, dst: bed.b.v4, count: 3 }), { sent: 3, received: 3 });
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 });
      assert.deepEqual(await udp(bed, { from: 'a', src: bed.a.v6, dst: bed.b.v6, count: 5 }), { sent: 5, received: 5 });
      assert.deepEqual(await udp(bed, { from: 'a', src: bed.a.v6Extra[0]!, dst: bed.b.v6, count: 5 }), { sent: 5, received: 0 });
      // Make a resolve b's MAC by ARP again: ARP frames pass even in allowlist mode.
      bed.execSync('a', ['ip', 'neigh', 'del', bed.b.v4, 'dev', bed.a.ifname]);
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 });
      assert.match(bed.execSync('a', ['ip', 'neigh', 'show', bed.b.v4]).stdout, /REACHABLE|STALE|DELAY/);

      // The default is kept with the pins: reopening with another one is refused.
      const re = await runChild(bed, 'b', [{ open: { pinDir, defaultAction: 'pass' } }, { open: { pinDir } }, { close: true }]);
      assert.equal(re[0]!.ok, false);
      assert.equal(re[0]!.error!.code, 'EINVAL');
      assert.match(re[0]!.error!.message!, /default action "drop"; refusing to change it to "pass"/);
      assert.equal(re[1]!.ok, true);
      assert.equal(re[1]!.result.defaultAction, 'drop', 'reopened without a default: keeps drop');
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 2 }), { sent: 2, received: 0 });
    } finally {
      cleanupPins(pinDir);
    }
  });
});

test('attach: foreign XDP is refused unless replaceForeign; generic fallback; clsact egress; detach', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('e2e-attach');
    try {
      const ifb = bed.b.ifname;
      const res = await runChild(bed, 'b', [
        { open: { pinDir, capacity: CAP } },
        { foreignXdp: { ifname: ifb } },
        { attach: { ifname: ifb } },
        { attach: { ifname: ifb, opts: { replaceForeign: true, egressMode: 'clsact' } } },
        { attach: { ifname: 'lo' } }, // loopback has no native XDP: generic with a warning
        { attach: { ifname: 'nosuch0' } },
        { apply: [{ upsert: { direction: 'egress', cidr: `${bed.a.v4Extra[1]}/32`, action: 'deny', slot: 7 } }] },
        { attachments: true },
        { close: true },
      ]);
      assert.equal(res[1]!.ok, true, JSON.stringify(res[1]));
      assert.equal(res[2]!.ok, false, 'a foreign XDP program is not replaced by default');
      assert.equal(res[2]!.error!.code, 'EBUSY');
      assert.match(
        res[2]!.error!.message!,
        new RegExp(`attach xdp to ${ifb}: EBUSY, interface already has XDP program \\d+ \\(bare_pass\\) that fleetwall did not attach`),
      );
      assert.equal(res[3]!.ok, true, JSON.stringify(res[3]));
      assert.equal(res[3]!.result.xdpMode, 'native');
      assert.equal(res[3]!.result.egressMode, 'clsact');
      assert.equal(res[4]!.ok, true, JSON.stringify(res[4]));
      assert.equal(res[4]!.result.xdpMode, 'generic');
      assert.equal(res[5]!.ok, false);
      assert.equal(res[5]!.error!.message, 'attach xdp to nosuch0: ENODEV, no such interface');
      assert.deepEqual(
        res[7]!.result.map((a: { ifname: string; xdpMode: string; egressMode: string }) => `${a.ifname} ${a.xdpMode} ${a.egressMode}`),
        [`${ifb} native clsact`, 'lo generic tcx'],
      );
      // The clsact egress filter enforces.
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 3 }), { sent: 3, received: 0 });
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4, dst: bed.b.v4, count: 3 }), { sent: 3, received: 3 });
      assert.match(bed.execSync('b', ['tc', 'filter', 'show', 'dev', ifb, 'egress']).stdout, /fw_tc_egress/);

      const det = await runChild(bed, 'b', [{ open: { pinDir } }, { detach: ifb }, { attachments: true }, { uninstall: true }]);
      assert.ok(
        det.every((r) => r.ok),
        JSON.stringify(det),
      );
      assert.deepEqual(
        det[2]!.result.map((a: { ifname: string }) => a.ifname),
        ['lo'],
      );
      assert.doesNotMatch(
        bed.execSync('b', ['tc', 'filter', 'show', 'dev', ifb, 'egress']).stdout,
        /fw_tc_egress/,
        'clsact filter removed',
      );
      assert.doesNotMatch(bed.execSync('b', ['ip', '-d', 'link', 'show', 'lo']).stdout, /prog\/xdp/, 'uninstall detached lo');
      assert.deepEqual(await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 2 }), { sent: 2, received: 2 });
      assert.equal(existsSync(pinDir), false);
    } finally {
      cleanupPins(pinDir);
    }
  });
});
