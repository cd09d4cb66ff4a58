// Verdict tables through BPF_PROG_TEST_RUN: the XDP ingress program (source
// address) and the TC egress program (destination address) against decide(),
// the reference semantics, on rule sets that cover /32 /24 /0 /128 /48,
// allow inside deny, deny inside allow (pruned as the agent does), monitor
// mode, allowlist mode, VLAN tags, non-IP and truncated frames — with each
// prefix-length layout: a plain LPM trie (K=0), hash + trie (K=2) and the
// default (K=6); and each with both programs of each object: the pair with
// the sampled drop events' code (a datapath opened with events unset) and the
// pair without it (opened with events off).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Address, formatAddress, parseAddress, parseCidr, prefixContains } from '../../common/src/cidr.js';
import { type DefaultAction, type PolicyRule, type RuleDirection, decide } from '../../common/src/policy.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import type { KernelEntry, MapOp } from '../../node-agent/src/datapath/datapath.js';
import { arpFrame, ipFrame, lldpFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { applyOps, readRuleCounters } from '../support/object-forms.js';
import { PROG } from '../../node-agent/src/datapath/abi.js';
import { progInfo } from '../../node-agent/src/datapath/links.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;

type R = PolicyRule & { slot: number };
let nextId = 1n;
function rule(cidr: string, action: 'deny' | 'allow', mode: 'enforce' | 'monitor' = 'enforce'): Array<Omit<R, 'direction'>> {
  const id = nextId++;
  return [{ id, prefix: parseCidr(cidr), action, mode, slot: Number(id) }];
}

/** The same rules in both directions (egress rules get distinct ids/slots). */
function bothDirections(rs: Array<Omit<R, 'direction'>>): R[] {
  return rs.flatMap((r) => [
    { ...r, direction: 'ingress' as const },
    { ...r, id: r.id + 1000n, slot: r.slot + 1000, direction: 'egress' as const },
  ]);
}

/** What the agent does: leave out denies fully covered by an allow, one entry per prefix. */
function compile(rules: readonly R[]): KernelEntry[] {
  const kept = rules.filter(
    (r) =>
      r.action === 'allow' || !rules.some((a) => a.action === 'allow' && a.direction === r.direction && prefixContains(a.prefix, r.prefix)),
  );
  return kept.map((r) => ({ direction: r.direction, prefix: r.prefix, action: r.action, mode: r.mode, slot: r.slot }));
}

function addrAdd(a: Address, delta: bigint): Address | null {
  const bits = BigInt(a.bytes.length * 8);
  let v = 0n;
  for (const b of a.bytes) v = (v << 8n) | BigInt(b);
  v += delta;
  if (v < 0n || v >= 1n << bits) return null;
  const out = new Uint8Array(a.bytes.length);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return { family: a.family, bytes: out };
}

/** Network, last, one below and one above every rule prefix, plus extras. */
function probes(rules: readonly R[], extra: string[]): Address[] {
  const out = new Map<string, Address>();
  const put = (a: Address | null) => a && out.set(formatAddress(a), a);
  for (const r of rules) {
    const first: Address = { family: r.prefix.family, bytes: r.prefix.bytes };
    const size = 1n << BigInt(r.prefix.bytes.length * 8 - r.prefix.len);
    put(first);
    put(addrAdd(first, size - 1n));
    put(addrAdd(first, -1n));
    put(addrAdd(first, size));
    if (size > 4n) put(addrAdd(first, size / 2n + 1n));
  }
  for (const e of extra) put(parseAddress(e));
  return [...out.values()];
}

interface Scenario {
  name: string;
  defaultAction: DefaultAction;
  rules: R[];
  extra: string[];
}

const SCENARIOS: Scenario[] = [
  {
    name: 'denylist: /32 /24 /8 /10, allow inside deny, deny inside allow, monitor, /128 /48 /32',
    defaultAction: 'pass',
    rules: bothDirections([
      ...rule('203.0.113.0/24', 'deny'),
      ...rule('203.0.113.77/32', 'allow'),
      ...rule('198.51.100.0/24', 'allow'),
      ...rule('198.51.100.128/25', 'deny'), // inside an allow: allow wins
      ...rule('192.0.2.0/24', 'deny', 'monitor'),
      ...rule('192.0.2.10/32', 'deny'), // enforce inside monitor
      ...rule('100.64.0.0/10', 'deny'),
      ...rule('10.0.0.0/8', 'deny'),
      ...rule('10.1.0.0/16', 'allow'),
      ...rule('10.1.2.0/24', 'deny'), // inside an allow
      ...rule('10.1.2.3/32', 'allow'),
      ...rule('10.2.0.9/32', 'deny', 'monitor'),
      ...rule('2001:db8::/32', 'deny'),
      ...rule('2001:db8:1::/48', 'allow'),
      ...rule('2001:db8:1:2::1/128', 'deny'), // inside an allow
      ...rule('2001:db8:2::5/128', 'deny', 'monitor'),
      ...rule('2001:db8:3::/48', 'deny', 'monitor'),
      ...rule('2001:db8:3::8/128', 'deny'),
      ...rule('fd00:1:2:3::/64', 'deny'),
      ...rule('fd00:1:2:3::42/127', 'allow'),
    ]),
    extra: ['8.8.8.8', '0.0.0.0', '255.255.255.255', '2001:db9::1', '::1', 'fe80::1'],
  },
  {
    name: 'allowlist mode: unmatched traffic drops, allows pass, a monitor deny passes',
    defaultAction: 'drop',
    rules: bothDirections([
      ...rule('192.0.2.0/24', 'allow'),
      ...rule('192.0.2.66/32', 'deny'), // inside an allow: pruned, passes
      ...rule('198.51.100.7/32', 'deny'),
      ...rule('198.51.100.8/32', 'deny', 'monitor'),
      ...rule('2001:db8:1::/48', 'allow'),
      ...rule('2001:db8:9::1/128', 'allow'),
    ]),
    extra: ['8.8.8.8', '2001:db8:2::1'],
  },
  {
    name: '/0 rules: deny everything but an allowed /25 (v4), monitor everything but a /128 (v6)',
    defaultAction: 'pass',
    rules: bothDirections([
      ...rule('0.0.0.0/0', 'deny'),
      ...rule('192.0.2.128/25', 'allow'),
      ...rule('198.51.100.0/24', 'deny', 'monitor'),
      ...rule('::/0', 'deny', 'monitor'),
      ...rule('2001:db8::7/128', 'allow'),
      ...rule('2001:db8:5::/48', 'deny'),
    ]),
    extra: ['8.8.8.8', '255.255.255.255', '2001:db8::8', '::'],
  },
];

const PEER4 = '192.0.2.254';
const PEER6 = '2001:db8:ffff::fe';

function slotsChanged(before: BigUint64Array, after: BigUint64Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) out.push(i);
  return out;
}

function runTable(dp: BpfDatapath, sc: Scenario, direction: RuleDirection, vlan?: number): number {
  let checked = 0;
  const rules = sc.rules.filter((r) => r.direction === direction);
  for (const addr of probes(rules, sc.extra)) {
    const a = formatAddress(addr);
    const peer = addr.family === 4 ? PEER4 : PEER6;
    const frame = direction === 'ingress' ? ipFrame(a, peer, { vlan }) : ipFrame(peer, a, { vlan });
    const expected = decide(sc.rules, direction, addr, sc.defaultAction);
    const before = readRuleCounters(dp, 2100);
    let res: ReturnType<typeof dp.testRun>;
    try {
      res = dp.testRun(direction === 'ingress' ? 'xdp' : 'tc', frame);
    } catch (e) {
      throw new Error(`${direction} ${a} vlan ${vlan}: ${String(e)}`);
    }
    const after = readRuleCounters(dp, 2100);
    const what = `${sc.name} / ${direction} ${a}${vlan !== undefined ? ` vlan ${vlan}` : ''}: expected ${expected.verdict}`;
    const dropped = direction === 'ingress' ? res.retval === XDP_DROP : res.retval === TC_ACT_SHOT;
    assert.equal(res.retval, direction === 'ingress' ? (dropped ? XDP_DROP : XDP_PASS) : dropped ? TC_ACT_SHOT : TC_ACT_UNSPEC, what);
    assert.equal(dropped, expected.verdict === 'drop', what);
    const deciding = expected.deciding as R | undefined;
    assert.deepEqual(slotsChanged(before.packets, after.packets), deciding ? [deciding.slot] : [], `${what}: counted slot`);
    if (deciding) {
      assert.equal(after.bytes[deciding.slot]! - before.bytes[deciding.slot]!, BigInt(frame.length), `${what}: bytes`);
    }
    checked++;
  }
  return checked;
}

/** [name, frame, whether BPF_PROG_TEST_RUN builds an skb of it (it refuses a truncated IP header)] */
function noiseFrames(): Array<[string, Buffer, boolean]> {
  const v4 = ipFrame('203.0.113.5', PEER4);
  const v6 = ipFrame('2001:db8::5', PEER6);
  const vlan4 = ipFrame('203.0.113.5', PEER4, { vlan: 7 });
  return [
    ['ARP', arpFrame('203.0.113.5', PEER4), true],
    ['LLDP', lldpFrame(), true],
    ['Ethernet header only (IPv4 type)', v4.subarray(0, 14), false],
    ['IPv4 cut inside the header (source present)', v4.subarray(0, 30), false],
    ['IPv4 cut one byte short of the header', v4.subarray(0, 33), false],
    ['VLAN tag cut', vlan4.subarray(0, 16), true],
    ['VLAN + IPv4 cut (source present)', vlan4.subarray(0, 34), true],
    ['VLAN + IPv6 cut', ipFrame('2001:db8::5', PEER6, { vlan: 7 }).subarray(0, 50), true],
    ['IPv6 cut one byte short of the header', v6.subarray(0, 53), false],
    [
      'IPv4 ethertype with IPv6 version nibble',
      (() => {
        const b = Buffer.from(v4);
        b[14] = 0x65;
        return b;
      })(),
      true,
    ],
  ];
}

/** Events unset (the programs with the event code) or off (the _noev pair), and the programs each must run. */
const FLAVOURS = [
  { name: 'events', events: undefined, xdp: PROG.XDP, tc: PROG.TC },
  { name: 'noev', events: { enabled: false, ratePerSecond: 1, burst: 1, snapLen: 0 }, xdp: PROG.XDP_NOEV, tc: PROG.TC_NOEV },
] as const;

for (const k of [0, 2, 6]) {
  for (const sc of SCENARIOS) {
    for (const fl of FLAVOURS) {
      test(`verdict table, K=${k}, ${fl.name} programs: ${sc.name}`, async () => {
        const opts = { defaultAction: sc.defaultAction, maxHashLengths: k, ...(fl.events ? { events: fl.events } : {}) };
        await withDatapath(`verdict-k${k}-${fl.name}`, opts, async (dp) => {
          assert.equal(progInfo(dp.programFd('xdp'), 'xdp').name, fl.xdp, 'the XDP program of this flavour');
          assert.equal(progInfo(dp.programFd('tc'), 'tc').name, fl.tc, 'the TC program of this flavour');
          const ops: MapOp[] = compile(sc.rules).map((entry) => ({ kind: 'entry.upsert', entry }));
          await applyOps(dp, ops);
          const layout = dp.layout();
          if (k === 0)
            assert.ok(
              layout.every((t) => t.hashLens.length === 0),
              'K=0 keeps everything in the trie',
            );
          else
            assert.ok(
              layout.every((t) => t.hashLens.length <= k),
              `at most ${k} hash lengths`,
            );
          if (k === 2 && sc === SCENARIOS[0])
            assert.ok(
              layout.some((t) => t.trieLens.length > 0 && t.hashLens.length > 0),
              'K=2 uses both structures',
            );
          let n = 0;
          for (const dir of ['ingress', 'egress'] as const) {
            n += runTable(dp, sc, dir);
            n += runTable(dp, sc, dir, 42);
          }
          assert.ok(n > 40, `checked ${n} packets`);

          // Non-IP and truncated frames pass (even in allowlist mode), uncounted.
          for (const [name, frame, skbOk] of noiseFrames()) {
            const before = readRuleCounters(dp, 2100);
            assert.equal(dp.testRun('xdp', frame).retval, XDP_PASS, `xdp: ${name}`);
            if (skbOk) assert.equal(dp.testRun('tc', frame).retval, TC_ACT_UNSPEC, `tc: ${name}`);
            else assert.throws(() => dp.testRun('tc', frame), { code: 'EINVAL' }, `the kernel builds no skb of: ${name}`);
            assert.deepEqual(slotsChanged(before.packets, readRuleCounters(dp, 2100).packets), [], `${name} is not counted`);
          }
        });
      });
    }
  }
}

test('one rule set, rewritten rule by rule, keeps matching decide() (updates, deletes, length moves)', async () => {
  await withDatapath('verdict-churn', { maxHashLengths: 2 }, async (dp) => {
    const sc = SCENARIOS[0]!;
    const entries = compile(sc.rules);
    // Insert one by one (lengths get placed as they first appear), then delete half and re-add.
    for (const e of entries) await applyOps(dp, [{ kind: 'entry.upsert', entry: e }]);
    runTable(dp, sc, 'ingress');
    const half = entries.filter((_, i) => i % 2 === 0);
    await applyOps(
      dp,
      half.map((e) => ({ kind: 'entry.delete', direction: e.direction, prefix: e.prefix })),
    );
    // The reference holds what is loaded (pruned denies were never in the kernel).
    const loaded = new Set(entries.filter((e) => !half.includes(e)).map((e) => e.slot));
    const reduced: Scenario = { ...sc, rules: sc.rules.filter((r) => loaded.has(r.slot)) };
    runTable(dp, reduced, 'ingress');
    runTable(dp, reduced, 'egress');
    await applyOps(
      dp,
      half.map((entry) => ({ kind: 'entry.upsert', entry })),
    );
    runTable(dp, { ...sc, rules: sc.rules.filter((r) => entries.some((e) => e.slot === r.slot)) }, 'ingress');
    // Same prefix, new action: a replace in place.
    const flip = entries.find((e) => e.prefix.len === 24 && e.action === 'deny' && e.direction === 'ingress')!;
    await applyOps(dp, [{ kind: 'entry.upsert', entry: { ...flip, action: 'allow' } }]);
    const flipped = sc.rules.map((r) => (r.slot === flip.slot ? { ...r, action: 'allow' as const } : r));
    runTable(dp, { ...sc, rules: flipped.filter((r) => entries.some((e) => e.slot === r.slot)) }, 'ingress');
    assert.equal(
      dp.usage().reduce((s, u) => s + u.entries, 0),
      entries.length,
    );
  });
});
