// Sampled drop events through BPF_PROG_TEST_RUN: the record's fields for
// ingress (XDP) and egress (TC) drops, would-drops and default drops; passes
// and unmatched traffic write nothing; the budget per rule and CPU row (a
// flood of one rule cannot use another's tokens); the weights of a rule add
// up to its drop counter with what is pending; events the ring had no room
// for are counted per rule (a rule retries on every 128th drop once 4 failed); packet bytes when a snap length is set; the node
// budget (checked first) bounds a flood over many rules, and what it refused
// rides on each rule's next event.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../common/src/cidr.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { LAYOUT, MAP, type MapName } from '../../node-agent/src/datapath/abi.js';
import { BpfMap, mapInfoByFd } from '../../node-agent/src/datapath/bpf-map.js';
import type { EventRing } from '../../node-agent/src/datapath/event-ring.js';
import {
  EV_LAYOUT,
  type EventRecord,
  type EventSettings,
  FW_EV_CLOCK_EVERY,
  FW_EV_CLOCK_QUIET,
  FW_EV_KIND_DROP,
  FW_EV_NO_SLOT,
  decodeEventRecord,
} from '../../node-agent/src/datapath/events-abi.js';
import { onlineCpuRows } from '../../node-agent/src/datapath/libbpf.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { ipv4Frame, ipv6Frame } from '../support/frames.js';
import { applyOps, readRuleCounters } from '../support/object-forms.js';
import { withDatapath } from '../support/pin-dirs.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
const ON: EventSettings = { enabled: true, ratePerSecond: 1, burst: 4, snapLen: 0 };

function deny(direction: 'ingress' | 'egress', cidr: string, slot: number, mode: 'enforce' | 'monitor' = 'enforce') {
  return { kind: 'entry.upsert' as const, entry: { direction, prefix: parseCidr(cidr), action: 'deny' as const, mode, slot } };
}

function drain(ring: EventRing): EventRecord[] {
  const out: EventRecord[] = [];
  ring.drain((buf, off, len) => out.push(decodeEventRecord(buf, off, len)));
  return out;
}

function budgets(dp: BpfDatapath, n: number) {
  const out = { lost: new Uint32Array(n), pending: new Uint32Array(n), defaultLost: 0, defaultPending: 0 };
  dp.events().readBudgets(0, out);
  return out;
}

const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));

/**
 * The budget state of `slot` in every CPU row ({last, tokens, weight, lost}, from the rows the programs
 * write) and the CPU rows of the generation: what an assertion on lost events prints when it fails, so
 * that a failure says which path the drops took (a ring without room, or a budget without tokens).
 */
function rowStates(dp: BpfDatapath, slot: number): string {
  const borrow = (name: MapName) => new BpfMap(name, dp.mapFd(name), mapInfoByFd(dp.mapFd(name), name), false);
  const F = LAYOUT.fw_table_cfg.fields;
  const cfg = borrow(MAP.TBLCFG).lookupU32(0)!;
  const slots = cfg.readUInt32LE(F.rule_slots);
  const rows = cfg.readUInt32LE(F.cpu_rows);
  const cnt = borrow(MAP.RULE_CNT);
  const E = EV_LAYOUT.fw_ev_state.fields;
  const at = EV_LAYOUT.fw_rule_row.fields.ev;
  const states = Array.from({ length: rows }, (_, r) => {
    const v = cnt.lookupU32(r * slots + slot)!;
    return `row ${r}: last ${v.readUInt32LE(at + E.last)} tokens ${v.readUInt32LE(at + E.tokens)} mark ${v.readUInt32LE(at + E.mark)} lost ${v.readUInt32LE(at + E.lost)}`;
  });
  return `cpu rows ${rows}, slots ${slots}; ${states.join('; ')}`;
}

test('drop events: fields, directions, budget per rule, weights add up to the counter, nothing for passes', async () => {
  await withDatapath('ev', {}, async (dp) => {
    await applyOps(dp, [
      deny('ingress', '192.0.2.0/24', 1),
      deny('ingress', '198.51.100.9/32', 2, 'monitor'),
      deny('egress', '203.0.113.7/32', 3),
      deny('ingress', '2001:db8:bad::/48', 4),
    ]);
    const ring = dp.events().openRing();
    try {
      // Events are off until configured: a drop writes nothing.
      assert.equal(dp.testRun('xdp', ipv4Frame('192.0.2.5', '10.0.0.1')).retval, XDP_DROP);
      assert.equal(drain(ring).length, 0, 'no event while events are off');

      dp.events().configure(ON);
      const before = readRuleCounters(dp, 8).packets;
      // A flood of rule 1 (one CPU: test runs run on this one): at most the burst of a row.
      assert.equal(dp.testRun('xdp', ipv4Frame('192.0.2.5', '10.0.0.1'), { repeat: 5000 }).retval, XDP_DROP);
      // Rule 2 (monitor: would-drop, passes), rule 3 (egress), rule 4 (IPv6), and traffic that passes.
      assert.equal(dp.testRun('xdp', ipv4Frame('198.51.100.9', '10.0.0.1')).retval, XDP_PASS);
      assert.equal(dp.testRun('tc', ipv4Frame('10.0.0.1', '203.0.113.7')).retval, TC_ACT_SHOT);
      assert.equal(dp.testRun('xdp', ipv6Frame('2001:db8:bad::1', '2001:db8::1')).retval, XDP_DROP);
      assert.equal(dp.testRun('xdp', ipv4Frame('10.9.9.9', '10.0.0.1'), { repeat: 100 }).retval, XDP_PASS);
      assert.equal(dp.testRun('tc', ipv4Frame('10.0.0.1', '10.9.9.9'), { repeat: 100 }).retval, TC_ACT_UNSPEC);

      const ev = drain(ring);
      const bySlot = (s: number) => ev.filter((e) => e.slot === s);
      const rows = onlineCpuRows();
      const burstPerRow = Math.max(1, Math.round(ON.burst / rows));
      const e1 = bySlot(1);
      assert.ok(e1.length >= 1 && e1.length <= burstPerRow + 1, `rule 1: ${e1.length} events for 5000 drops (burst ${burstPerRow} a row)`);
      assert.equal(e1[0]!.kind, FW_EV_KIND_DROP);
      assert.equal(e1[0]!.verdict, 1, 'drop');
      assert.equal(e1[0]!.direction, 0, 'ingress');
      assert.equal(e1[0]!.family, 4);
      assert.equal(e1[0]!.ipProto, 17);
      assert.deepEqual([e1[0]!.sport, e1[0]!.dport], [40000, 9]);
      assert.deepEqual(e1[0]!.saddr, ip4('192.0.2.5'));
      assert.deepEqual(e1[0]!.daddr, ip4('10.0.0.1'));
      assert.equal(e1[0]!.pktLen, ipv4Frame('192.0.2.5', '10.0.0.1').length);
      assert.equal(e1[0]!.packet.length, 0, 'no packet bytes with snap length 0');

      const counters = readRuleCounters(dp, 8).packets;
      const b = budgets(dp, 8);
      const weights = e1.reduce((s, e) => s + e.weight, 0);
      assert.equal(
        BigInt(weights + b.pending[1]!),
        counters[1]! - before[1]!,
        'weights + pending = the drops counted since events were on',
      );
      assert.equal(b.lost[1], 0);

      const e2 = bySlot(2);
      assert.equal(e2.length, 1);
      assert.equal(e2[0]!.verdict, 2, 'would-drop');
      assert.equal(e2[0]!.weight, 1);
      const e3 = bySlot(3);
      assert.equal(e3.length, 1);
      assert.equal(e3[0]!.direction, 1, 'egress');
      assert.deepEqual(e3[0]!.daddr, ip4('203.0.113.7'));
      const e4 = bySlot(4);
      assert.equal(e4.length, 1);
      assert.equal(e4[0]!.family, 6);
      assert.equal(e4[0]!.saddr.length, 16);
      assert.equal(ev.length, e1.length + 3, 'passes wrote nothing');
      assert.ok(ev.every((e) => e.slot !== FW_EV_NO_SLOT));

      // Packet bytes when a snap length is set.
      dp.events().configure({ ...ON, ratePerSecond: 1000, burst: 1000, snapLen: 64 });
      // A new budget refills a row at its next drop after the coarse clock has moved (it moves at the tick:
      // 4 ms at HZ 250, 10 ms at HZ 100). Rule 3's row may have spent ON's burst moments ago (its tokens are
      // not reset by a reconfigure), so without a tick in between the two drops below could find it empty
      // and write one event or none: wait for the clock first.
      await new Promise((r) => setTimeout(r, 25));
      const f = ipv4Frame('10.0.0.1', '203.0.113.7', { length: 100 });
      assert.equal(dp.testRun('tc', f).retval, TC_ACT_SHOT);
      const snap = drain(ring);
      assert.equal(snap.length, 1);
      assert.deepEqual(snap[0]!.packet, f.subarray(0, 64), 'the first 64 bytes of the packet');
      // A short packet: all of it.
      const g = ipv4Frame('10.0.0.1', '203.0.113.7');
      dp.testRun('tc', g);
      assert.deepEqual(drain(ring)[0]!.packet, g);
    } finally {
      await ring.close();
    }
  });
});

test('drop events: the ring full counts lost events per rule; their drops stay pending; default drops have their own budget', async () => {
  await withDatapath('evlost', { eventRingBytes: 4096, defaultAction: 'drop' }, async (dp) => {
    await applyOps(dp, [deny('ingress', '192.0.2.0/24', 1)]);
    dp.events().configure({ enabled: true, ratePerSecond: 100_000, burst: 100_000, snapLen: 0 });
    const ring = dp.events().openRing();
    try {
      // 4096 bytes hold 51 records of 80 bytes: 200 drops find no room for most.
      dp.testRun('xdp', ipv4Frame('192.0.2.5', '10.0.0.1'), { repeat: 200 });
      const b = budgets(dp, 4);
      const ev = drain(ring);
      assert.ok(ev.length > 0 && ev.length < 200, `${ev.length} events written`);
      // Every write the ring refused is counted for its rule; after FW_EV_CLOCK_QUIET refusals in a row the
      // rule tries again only on every FW_EV_CLOCK_EVERY-th drop (a full ring is not hammered per drop).
      const refused = 200 - ev.length;
      const tries = Math.min(refused, FW_EV_CLOCK_QUIET) + Math.floor(refused / FW_EV_CLOCK_EVERY);
      assert.ok(
        b.lost[1]! >= 1 && b.lost[1]! <= tries * onlineCpuRows(),
        `${b.lost[1]} lost for ${refused} drops the ring had no room for (${tries} tries on one CPU row; ${rowStates(dp, 1)})`,
      );
      const weights = ev.reduce((s, e) => s + e.weight, 0);
      assert.equal(weights + b.pending[1]!, 200, `weights + pending = drops (${rowStates(dp, 1)})`);
      // After the ring drained, the rule's next try (within FW_EV_CLOCK_EVERY drops) carries the pending drops.
      let sent = 0;
      let next: EventRecord[] = [];
      while (next.length === 0 && sent < 2 * FW_EV_CLOCK_EVERY) {
        dp.testRun('xdp', ipv4Frame('192.0.2.5', '10.0.0.1'));
        sent++;
        next = drain(ring);
      }
      assert.equal(next.length, 1, `an event after ${sent} drops`);
      assert.ok(sent <= FW_EV_CLOCK_EVERY, `${sent} drops before the next try`);
      const after = budgets(dp, 4).pending[1]!;
      assert.equal(next[0]!.weight + after, b.pending[1]! + sent, 'every drop carried or pending');
      // (Unless a run landed on the other CPU: that row's first drop has its own event, weight 1.)
      if (next[0]!.weight !== 1) assert.equal(next[0]!.weight, b.pending[1]! + sent, 'the pending drops ride on the next event');
      // Unmatched traffic dropped by the default: slot FW_EV_NO_SLOT, its own budget.
      assert.equal(dp.testRun('xdp', ipv4Frame('10.9.9.9', '10.0.0.1')).retval, XDP_DROP);
      const d = drain(ring);
      assert.equal(d.length, 1);
      assert.equal(d[0]!.slot, FW_EV_NO_SLOT);
      assert.equal(budgets(dp, 4).defaultLost, 0);
    } finally {
      await ring.close();
    }
  });
});

test('drop events: the node budget bounds the events of a flood over many rules; the drops it refused ride on each rule’s next event', async () => {
  await withDatapath('evnode', {}, async (dp) => {
    const RULES = 64;
    await applyOps(
      dp,
      Array.from({ length: RULES }, (_, i) => deny('ingress', `198.18.${i}.1/32`, i + 1)),
    );
    // Each rule could write 100 events at once; the node only 8 (split over the CPU rows) and ~1 a second.
    dp.events().configure({ enabled: true, ratePerSecond: 100_000, burst: 100, snapLen: 0, nodeRatePerSecond: 1, nodeBurst: 8 });
    const ring = dp.events().openRing();
    try {
      const before = readRuleCounters(dp, RULES + 1).packets;
      const t0 = performance.now();
      for (let i = 0; i < RULES; i++) dp.testRun('xdp', ipv4Frame(`198.18.${i}.1`, '10.0.0.1'), { repeat: 50 });
      const seconds = (performance.now() - t0) / 1000;
      const ev = drain(ring);
      const rows = onlineCpuRows();
      // The runs may move between CPUs: at most every row's burst, plus each row's refill (~1/s) meanwhile.
      const bound = rows * Math.max(1, Math.round(8 / rows)) + rows * Math.ceil(seconds + 1);
      assert.ok(
        ev.length >= 1 && ev.length <= bound,
        `${ev.length} events for ${RULES} rules in ${seconds.toFixed(2)} s (at most ${bound})`,
      );
      const counters = readRuleCounters(dp, RULES + 1).packets;
      const b = budgets(dp, RULES + 1);
      for (let s = 1; s <= RULES; s++) {
        const w = ev.filter((e) => e.slot === s).reduce((t, e) => t + e.weight, 0);
        assert.equal(counters[s]! - before[s]!, 50n, `rule ${s} counted every drop`);
        assert.equal(BigInt(w + b.pending[s]!), 50n, `rule ${s}: weights + pending = drops`);
      }
      // A rule the node budget refused every time: once the node has tokens again (the next tick's refill,
      // seen when the clock is read: on 1 of this rule's drops in 32), its next event carries all its drops.
      const quiet = [...Array(RULES).keys()].map((i) => i + 1).find((s) => !ev.some((e) => e.slot === s))!;
      assert.ok(quiet, 'some rule got no event');
      dp.events().configure({ enabled: true, ratePerSecond: 100_000, burst: 100, snapLen: 0, nodeRatePerSecond: 100_000 });
      let sent = 0;
      let next: EventRecord[] = [];
      while (next.length === 0 && sent < 10_000) {
        dp.testRun('xdp', ipv4Frame(`198.18.${quiet - 1}.1`, '10.0.0.1'));
        sent++;
        next = drain(ring);
        if (next.length === 0 && sent % 32 === 0) await new Promise((r) => setTimeout(r, 2));
      }
      assert.equal(next.length, 1, `an event after ${sent} drops`);
      assert.equal(next[0]!.slot, quiet);
      // Its weight: the drops pending on its CPU row (all 50 + those since, unless the runs moved between
      // CPUs: then the other row keeps its share pending for that row's next event).
      const left = budgets(dp, RULES + 1).pending[quiet]!;
      assert.equal(next[0]!.weight + left, 50 + sent, 'the 50 refused drops and those since: on this event or still pending');
    } finally {
      await ring.close();
    }
  });
});

test('drop events: a weight counts only the drops since events were turned on; a slot given to another rule starts afresh; a rule turned from allow to deny carries no pass', async () => {
  await withDatapath('evmark', {}, async (dp) => {
    const SLOT = 5;
    const a = ipv4Frame('192.0.2.5', '10.0.0.1');
    await applyOps(dp, [deny('ingress', '192.0.2.0/24', SLOT)]);
    const ring = dp.events().openRing();
    const tight: EventSettings = { enabled: true, ratePerSecond: 1, burst: 1, snapLen: 0 };
    try {
      // Drops while events are off: counted, and not pending once events are on (the marks follow the counters).
      assert.equal(dp.testRun('xdp', a, { repeat: 300 }).retval, XDP_DROP);
      dp.events().configure(tight);
      assert.equal(budgets(dp, 8).pending[SLOT], 0, 'the drops of the time events were off are not pending');
      dp.testRun('xdp', a);
      const first = drain(ring);
      assert.equal(first.length, 1);
      assert.equal(first[0]!.weight, 1, 'the first event stands for its own drop only');
      // A flood the budget refuses: its drops stay pending (on one row or both, if the runs moved).
      dp.testRun('xdp', a, { repeat: 500 });
      const flood = drain(ring);
      const pending = budgets(dp, 8).pending[SLOT]!;
      assert.ok(pending > 0, 'refused drops pending');
      assert.equal(flood.reduce((s, e) => s + e.weight, 0) + pending, 500, 'weights + pending = the flood');
      // Off and on again: what was pending then is not carried into the new run.
      dp.events().configure({ ...tight, enabled: false });
      dp.testRun('xdp', a, { repeat: 20 });
      assert.equal(drain(ring).length, 0);
      dp.events().configure(tight);
      assert.equal(budgets(dp, 8).pending[SLOT], 0, 'turned on again: nothing pending');
      // The slot goes to another rule (its counter row reset as the agent does for a reused slot): no
      // pending drops and no mark inherited; its first event stands for its own drop.
      await applyOps(dp, [
        { kind: 'entry.delete', direction: 'ingress', prefix: parseCidr('192.0.2.0/24') },
        { kind: 'counter.reset', slot: SLOT },
        deny('ingress', '198.51.100.0/24', SLOT),
      ]);
      assert.equal(budgets(dp, 8).pending[SLOT], 0, 'a reset slot has nothing pending');
      assert.equal(readRuleCounters(dp, 8).packets[SLOT], 0n);
      assert.equal(dp.testRun('xdp', ipv4Frame('198.51.100.7', '10.0.0.1')).retval, XDP_DROP);
      const b = drain(ring);
      assert.equal(b.length, 1, 'a fresh budget: the new rule gets its event');
      assert.deepEqual([b[0]!.slot, b[0]!.weight], [SLOT, 1]);
      // A rule that turns from allow to deny keeps its slot and counter: its first event carries no pass.
      const rule = (action: 'allow' | 'deny') => ({
        kind: 'journal.upsert' as const,
        rule: {
          id: 77n,
          direction: 'ingress' as const,
          prefix: parseCidr('203.0.113.0/24'),
          action,
          mode: 'enforce' as const,
          slot: 6,
          expireUnixMs: 0,
        },
      });
      const entry = (action: 'allow' | 'deny') => ({
        kind: 'entry.upsert' as const,
        entry: { direction: 'ingress' as const, prefix: parseCidr('203.0.113.0/24'), action, mode: 'enforce' as const, slot: 6 },
      });
      await applyOps(dp, [rule('allow'), entry('allow')]);
      assert.equal(dp.testRun('xdp', ipv4Frame('203.0.113.9', '10.0.0.1'), { repeat: 40 }).retval, XDP_PASS);
      await applyOps(dp, [rule('deny'), entry('deny')]);
      assert.equal(readRuleCounters(dp, 8).packets[6], 40n, 'the passes stay counted');
      assert.equal(budgets(dp, 8).pending[6], 0, 'but are not pending drops');
      assert.equal(dp.testRun('xdp', ipv4Frame('203.0.113.9', '10.0.0.1')).retval, XDP_DROP);
      const c = drain(ring);
      assert.deepEqual([c.length, c[0]?.slot, c[0]?.weight], [1, 6, 1]);
    } finally {
      await ring.close();
    }
  });
});
