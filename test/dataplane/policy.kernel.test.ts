// Detection policies in the kernel (issue 18, bpf/include/fw_policy.h)
// through BPF_PROG_TEST_RUN: what a policy counts (protocol, ports, SYN only,
// direction), per group (/32, /24, /64), in windows; one hit per group and
// window when it crosses the limit, none below it; packets a deny drops are
// not counted; nothing is counted without policies; a flood of 100k random
// sources in the count-min sketch: counted in full, the margin follows it,
// nobody below the limit is reported, a heavy hitter among them is; eight
// policies at once classified by their slots (ABI 13: ports, SYN only, later
// fragments, ICMP per family, direction).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAddress, parseCidr } from '../../common/src/cidr.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import type { KernelPolicy } from '../../node-agent/src/datapath/policy-maps.js';
import { FW_POL_CELLS, FW_POL_MAX, FW_POL_ROWS, FW_POL_WIDTH } from '../../node-agent/src/datapath/policy-abi.js';
import { ipFrame, l4Frame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { applyOps } from '../support/object-forms.js';
import { kernelPolicy } from '../support/policy-fixtures.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const DST = '192.0.2.1';
const SEC = 1_000_000_000n;

function policy(p: Partial<KernelPolicy> & { id: number }): KernelPolicy {
  // Windows are aligned (jiffies in windows, ABI 14): a long one, so no test straddles two.
  return kernelPolicy({ windowNs: 3600n * SEC, ...p });
}

function send(dp: BpfDatapath, frame: Buffer, n = 1): number {
  let r = 0;
  for (let i = 0; i < n; i++) r = dp.testRun('xdp', frame).retval;
  return r;
}

function hitsFrom(dp: BpfDatapath, from: bigint) {
  return dp.policies.readPolicyHits(from);
}

test('a policy counts matching packets per source and reports a source once per window when it crosses the limit', () =>
  withDatapath('pol-basic', {}, (dp) => {
    const start = dp.policies.policyStats();
    // No policy: nothing counted.
    send(dp, ipFrame('198.51.100.7', DST), 20);
    dp.policies.writePolicies([policy({ id: 11 })]);
    assert.equal(dp.policies.policyStats().windowPackets, 0n, 'no policy: nothing counted');
    assert.equal(dp.policies.policyStats().sketchBytes, FW_POL_CELLS * 16, 'the sketch: fixed at load');
    assert.equal(FW_POL_CELLS, FW_POL_MAX * FW_POL_ROWS * FW_POL_WIDTH);
    const a = ipFrame('198.51.100.7', DST); // UDP to port 9
    assert.equal(send(dp, a, 5), XDP_PASS);
    assert.equal(hitsFrom(dp, start.hits).hits.length, 0, 'at the limit (5 packets): not reported');
    send(dp, a);
    let r = hitsFrom(dp, start.hits);
    assert.equal(r.hits.length, 1, 'the 6th packet crosses the limit');
    const h = r.hits[0]!;
    assert.equal(h.policy, 11);
    assert.equal(h.family, 4);
    assert.equal(formatAddress({ family: 4, bytes: h.addr }), '198.51.100.7');
    assert.equal(h.packets, 6n);
    assert.equal(h.bytes, BigInt(a.length) * 6n);
    assert.ok(h.elapsedNs < 3600n * SEC);
    send(dp, a, 50);
    r = hitsFrom(dp, start.hits);
    assert.equal(r.hits.length, 1, 'once per window');
    assert.equal(r.next, start.hits + 1n);
    assert.equal(r.lost, 0);

    // Another port, TCP, another source below the limit: not reported.
    send(dp, l4Frame('198.51.100.8', DST, 'udp', 53), 20);
    send(dp, l4Frame('198.51.100.8', DST, 'tcp', 9), 20);
    send(dp, ipFrame('198.51.100.9', DST), 5);
    assert.equal(hitsFrom(dp, r.next).hits.length, 0, 'other ports, protocols and sources below the limit');
    // Every counted packet is in the cells (the agent's N: 56 of 198.51.100.7, 5 of .9).
    dp.policies.refreshMargins();
    assert.equal(dp.policies.policyStats().windowPackets, 61n);
  }));

test('groups of /24 and /64, SYN only, port ranges, bytes, and the egress direction', () =>
  withDatapath('pol-groups', {}, (dp) => {
    const from = dp.policies.policyStats().hits;
    dp.policies.writePolicies([
      policy({ id: 1, v4Len: 24, v6Len: 64, limitPackets: 9n }),
      policy({
        id: 2,
        protocol: 'tcp',
        synOnly: true,
        ports: [
          [20, 25],
          [443, 443],
        ],
        limitPackets: 3n,
      }),
      policy({ id: 3, protocol: 'any', ports: [], limitPackets: 0n, limitBytes: 1000n, direction: 'egress' }),
    ]);
    // Ten sources of one /24, one packet each: the /24 crosses 9.
    for (let i = 1; i <= 10; i++) send(dp, ipFrame(`203.0.113.${i}`, DST));
    // IPv6: two addresses of one /64.
    for (let i = 0; i < 10; i++) send(dp, ipFrame(`2001:db8:1:2::${(i % 2) + 1}`, '2001:db8::1'));
    // SYN only: ACKs and SYN+ACKs are not counted, SYNs to 22 and 443 are.
    send(dp, l4Frame('198.51.100.20', DST, 'tcp', 22, 0x10), 10);
    send(dp, l4Frame('198.51.100.20', DST, 'tcp', 22, 0x12), 10);
    send(dp, l4Frame('198.51.100.21', DST, 'tcp', 26, 0x02), 10);
    assert.equal(hitsFrom(dp, from).hits.length, 2, 'only the /24 and the /64 so far');
    send(dp, l4Frame('198.51.100.20', DST, 'tcp', 22, 0x02), 2);
    send(dp, l4Frame('198.51.100.20', DST, 'tcp', 443, 0x02), 2);
    // Egress by destination, bytes: the XDP program never counts it for policy 3 (policy 1 counts it: UDP to 9).
    send(dp, ipFrame('198.51.100.30', DST, { length: 500 }), 10);
    const tc = ipFrame('192.0.2.50', '198.51.100.31', { length: 400 });
    for (let i = 0; i < 3; i++) dp.testRun('tc', tc);
    const hits = hitsFrom(dp, from).hits.map((h) => `${h.policy} ${formatAddress({ family: h.family, bytes: h.addr })} ${h.packets}`);
    assert.deepEqual(hits, ['1 203.0.113.0 10', '1 2001:db8:1:2:: 10', '2 198.51.100.20 4', '1 198.51.100.0 10', '3 198.51.100.31 3']);
  }));

test('packets a deny drops are not counted; a policy change restarts the counts (new id)', () =>
  withDatapath('pol-drop', {}, async (dp) => {
    const from = dp.policies.policyStats().hits;
    await applyOps(dp, [
      {
        kind: 'entry.upsert',
        entry: { direction: 'ingress', prefix: parseCidr('198.51.100.0/24'), action: 'deny', mode: 'enforce', slot: 1 },
      },
    ]);
    dp.policies.writePolicies([policy({ id: 5, limitPackets: 2n })]);
    assert.equal(send(dp, ipFrame('198.51.100.7', DST), 10), XDP_DROP);
    assert.equal(hitsFrom(dp, from).hits.length, 0, 'dropped packets are not counted');
    send(dp, ipFrame('203.0.113.7', DST), 2);
    dp.policies.writePolicies([policy({ id: 6, limitPackets: 2n })]);
    send(dp, ipFrame('203.0.113.7', DST), 2);
    assert.equal(hitsFrom(dp, from).hits.length, 0, 'counts of the old id do not carry over');
    send(dp, ipFrame('203.0.113.7', DST));
    assert.deepEqual(
      hitsFrom(dp, from).hits.map((h) => [h.policy, h.packets]),
      [[6, 3n]],
    );
  }));

test('a flood of 100k random sources: the sketch counts them all, the margin follows, nobody below the limit is reported, a heavy hitter among them is', () =>
  withDatapath('pol-flood', {}, (dp) => {
    const from = dp.policies.policyStats();
    dp.policies.writePolicies([policy({ id: 9, limitPackets: 3n })]);
    const f = ipFrame('10.0.0.1', DST);
    const N = 100_000;
    let x = 0x12345678;
    const flood = (n: number, each?: (i: number) => void) => {
      for (let i = 0; i < n; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        f.writeUInt32BE(x, 14 + 12);
        dp.testRun('xdp', f);
        each?.(i);
        // The responder refreshes the margins at each poll; here every 1,000 packets.
        if (i % 1000 === 999) dp.policies.refreshMargins();
      }
    };
    // Two sources at the limit (3 packets) inside the flood: below it, never reported.
    const atLimit = [ipFrame('198.51.100.50', DST), ipFrame('198.51.100.51', DST)];
    flood(N, (i) => {
      if (i % 40_000 === 0) for (const a of atLimit) send(dp, a);
    });
    dp.policies.refreshMargins();
    const st = dp.policies.policyStats();
    // Every packet is in the window (or, if it began during the flood, at least half in one of the two).
    assert.ok(st.windowPackets >= BigInt(N / 2) && st.windowPackets <= BigInt(N + 6), `counted ${st.windowPackets}`);
    assert.ok(st.marginPackets >= 3n, `a margin of ${st.marginPackets} over the limit under this flood`);
    assert.equal(st.hits, from.hits, 'one packet each, or at the limit: nobody reported');
    // A real heavy hitter among the flood is still reported (the limit plus the margin: it sends 60).
    const h = ipFrame('198.51.100.77', DST);
    flood(30_000, (i) => {
      if (i % 500 === 0) dp.testRun('xdp', h);
    });
    const r = hitsFrom(dp, from.hits).hits.map((y) => formatAddress({ family: 4, bytes: y.addr }));
    assert.deepEqual(r, ['198.51.100.77']);
  }));

/** ipFrame with another IP protocol number (IPv4: the header's protocol; IPv6: the first next header). */
function protoFrame(src: string, dst: string, proto: number, vlan?: number): Buffer {
  const f = ipFrame(src, dst, vlan === undefined ? {} : { vlan });
  const ip = vlan === undefined ? 14 : 18;
  f[src.includes(':') ? ip + 6 : ip + 9] = proto;
  return f;
}

test("a policy's protocol decides what it counts: any counts every protocol, icmp counts ICMPv6 on IPv6, tcp never UDP; a protocol no policy counts creates no group", () =>
  withDatapath('pol-proto', {}, (dp) => {
    const from = dp.policies.policyStats();
    const every = { ports: [] as [number, number][], limitPackets: 2n };
    dp.policies.writePolicies([
      policy({ id: 1, protocol: 'tcp', ...every }),
      policy({ id: 2, protocol: 'icmp', ...every }),
      policy({ id: 3, protocol: 'any', ...every, direction: 'egress' }),
    ]);
    // Ingress: UDP, GRE (47) and ESP (50) match no policy of the direction: not even a group is made.
    send(dp, ipFrame('198.51.100.1', DST), 5);
    send(dp, protoFrame('198.51.100.2', DST, 47), 5);
    send(dp, protoFrame('2001:db8::2', '2001:db8::1', 50, 7), 5);
    dp.policies.refreshMargins();
    assert.equal(dp.policies.policyStats().windowPackets, 0n, 'nothing counted for packets no policy of their direction counts');
    // TCP (with a VLAN tag), ICMP and ICMPv6: counted by policies 1 and 2.
    send(dp, l4Frame('198.51.100.3', DST, 'tcp', 80, 0x10), 3);
    send(dp, protoFrame('198.51.100.4', DST, 1, 7), 3);
    send(dp, protoFrame('2001:db8::4', '2001:db8::1', 58), 3);
    // Egress, any protocol: UDP, GRE and ICMPv6 by destination.
    for (let i = 0; i < 3; i++) {
      dp.testRun('tc', ipFrame(DST, '198.51.100.5'));
      dp.testRun('tc', protoFrame(DST, '198.51.100.6', 47));
      dp.testRun('tc', protoFrame('2001:db8::1', '2001:db8::6', 58, 9));
    }
    const hits = hitsFrom(dp, from.hits)
      .hits.map((h) => `${h.policy} ${formatAddress({ family: h.family, bytes: h.addr })}`)
      .sort();
    assert.deepEqual(hits, ['1 198.51.100.3', '2 198.51.100.4', '2 2001:db8::4', '3 198.51.100.5', '3 198.51.100.6', '3 2001:db8::6']);
  }));

/** An IPv4 frame's later fragment (fragment offset 1: no L4 header, whatever follows the IP header). */
function laterFragment(f: Buffer): Buffer {
  f.writeUInt16BE(1, 14 + 6);
  return f;
}

test('eight policies classified by their slots (ABI 13): overlapping port ranges, SYN only, no ports, later fragments without a port, ICMP per family, direction', () =>
  withDatapath('pol-slots', {}, (dp) => {
    const from = dp.policies.policyStats();
    const p = (id: number, protocol: KernelPolicy['protocol'], ports: [number, number][], more: Partial<KernelPolicy> = {}) =>
      policy({ id, protocol, ports, limitPackets: 2n, ...more });
    dp.policies.writePolicies([
      p(1, 'udp', [
        [50, 60],
        [100, 100],
      ]),
      p(2, 'udp', [[55, 100]]),
      p(3, 'tcp', [], { synOnly: true }),
      p(4, 'tcp', [[80, 80]]),
      p(5, 'udp', []),
      p(6, 'icmp', []),
      p(7, 'any', [[53, 53]]),
      p(8, 'udp', [[9, 9]], { direction: 'egress' }),
    ]);
    const src = (n: number) => `198.51.100.${n}`;
    const frames: Buffer[] = [
      l4Frame(src(1), DST, 'udp', 55), // 1, 2, 5
      l4Frame(src(2), DST, 'udp', 100), // 1, 2, 5
      l4Frame(src(3), DST, 'udp', 101), // 5
      l4Frame(src(4), DST, 'udp', 53), // 1 (50-60), 5, 7
      l4Frame(src(5), DST, 'tcp', 80, 0x02), // 3, 4
      l4Frame(src(6), DST, 'tcp', 80, 0x10), // 4 (not a SYN)
      l4Frame(src(7), DST, 'tcp', 22, 0x02), // 3
      laterFragment(l4Frame(src(8), DST, 'udp', 55)), // 5 only: no port
      laterFragment(l4Frame(src(9), DST, 'tcp', 80, 0x02)), // none: no port, no SYN seen
      protoFrame(src(10), DST, 58), // none: ICMPv6's number on IPv4 is not ICMP
      protoFrame(src(11), DST, 1), // 6
      protoFrame('2001:db8::12', '2001:db8::1', 58), // 6
      protoFrame('2001:db8::13', '2001:db8::1', 1), // none: ICMP's number on IPv6 is not ICMPv6
      ipFrame(src(14), DST), // 5 (UDP to 9: policy 8 counts egress only)
    ];
    for (const f of frames) assert.equal(send(dp, f, 3), XDP_PASS);
    for (let i = 0; i < 3; i++) dp.testRun('tc', ipFrame(DST, src(15))); // 8
    const hits = hitsFrom(dp, from.hits)
      .hits.map((h) => `${h.policy} ${formatAddress({ family: h.family, bytes: h.addr })}`)
      .sort();
    const want = [
      [1, 1],
      [1, 2],
      [1, 4],
      [2, 1],
      [2, 2],
      [3, 5],
      [3, 7],
      [4, 5],
      [4, 6],
      [5, 1],
      [5, 2],
      [5, 3],
      [5, 4],
      [5, 8],
      [5, 14],
      [6, 11],
      [7, 4],
      [8, 15],
    ].map(([id, n]) => `${id} ${src(n!)}`);
    assert.deepEqual(hits, [...want, '6 2001:db8::12'].sort());
  }));
