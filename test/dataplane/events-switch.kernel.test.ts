// The program pair chosen at load by the events setting (bpf/README.md, "The
// programs"): a datapath opened with events off runs fw_xdp_noev /
// fw_tc_noev on its links (no event code at all), one opened with events on
// runs fw_xdp_ingress / fw_tc_egress, through generation swaps too. A
// restart with the other setting puts the other pair on the pinned links at
// open, before events are configured; under traffic the whole time:
// off -> on delivers events, whose weights carry only drops counted after
// the open began; on -> off stops them; every drop is counted once across
// both switches, and nothing blocked passes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../common/src/cidr.js';
import { PROG } from '../../node-agent/src/datapath/abi.js';
import { type BpfDatapath, openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import type { EventRing } from '../../node-agent/src/datapath/event-ring.js';
import { type EventRecord, type EventSettings, decodeEventRecord } from '../../node-agent/src/datapath/events-abi.js';
import { progInfo } from '../../node-agent/src/datapath/links.js';
import { loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { DEFAULT_OBJ_DIR } from '../../node-agent/src/datapath/objects.js';
import { join } from 'node:path';
import { runChild } from '../support/dataplane-child.js';
import { interfacePrograms, linkPrograms } from '../support/link-programs.js';
import { type NetnsPair, withNetnsPair } from '../support/netns.js';
import { applyOps, readRuleCounters } from '../support/object-forms.js';
import { cleanupPins, uniquePinDir, withDatapath } from '../support/pin-dirs.js';
import { StreamTraffic } from '../support/stream-traffic.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Events on, budgets far above the traffic: every drop writes an event of weight 1 once the marks are set. */
const ON: EventSettings = { enabled: true, ratePerSecond: 1_000_000, burst: 1_000_000, snapLen: 0, nodeRatePerSecond: 10_000_000 };
const OFF: EventSettings = { ...ON, enabled: false };
const SLOT = 1;

/** The bed's interface runs the pair named (XDP ingress and TC egress both attached). */
function assertPair(pinDir: string, bed: NetnsPair, xdp: string, tc: string, what: string): void {
  assert.deepEqual(interfacePrograms(pinDir, bed.b.ifname), { xdp, tc }, `${what}: ${JSON.stringify(linkPrograms(pinDir))}`);
}

function drain(ring: EventRing): EventRecord[] {
  const out: EventRecord[] = [];
  ring.drain((buf, off, len) => out.push(decodeEventRecord(buf, off, len)));
  return out;
}

function pending(dp: BpfDatapath): number {
  const out = { lost: new Uint32Array(SLOT + 1), pending: new Uint32Array(SLOT + 1), defaultLost: 0, defaultPending: 0 };
  dp.events().readBudgets(0, out);
  assert.equal(out.lost[SLOT], 0, 'no event lost (the ring has room)');
  return out.pending[SLOT]!;
}

const counted = (dp: BpfDatapath) => readRuleCounters(dp, SLOT + 1).packets[SLOT]!;

/**
 * A traffic run stopped: every packet of the blocked source counted once (the rule's count, less what it
 * held before the run, is what was sent), not one passed, every unlisted packet arrived (or the socket dropped it).
 */
function assertTraffic(
  r: Awaited<ReturnType<StreamTraffic['stop']>>,
  [blocked, unlisted]: [string, string],
  countedNow: bigint,
  countedBefore: bigint,
  what: string,
): void {
  assert.equal(countedNow - countedBefore, BigInt(r.sent[blocked]!), `every packet of the blocked source counted once, ${what}`);
  assert.equal(r.received[blocked] ?? 0, 0, `not one blocked packet passed, ${what}`);
  assert.equal(r.sent[unlisted]! - (r.received[unlisted] ?? 0), r.rcvbufErrors, `every unlisted packet arrived, ${what}`);
}

test('events off: the noev pair on the links, through a generation swap; a restart with events on (traffic running) puts the event pair on them at open and delivers events carrying only drops since; a restart with events off stops them; every drop counted once', async () => {
  await withNetnsPair(async (bed) => {
    const pinDir = uniquePinDir('ev-switch');
    const [BLOCKED, UNLISTED] = bed.a.v4Extra as [string, string];
    const wire = [{ upsert: { direction: 'ingress', cidr: `${BLOCKED}/32`, action: 'deny', slot: SLOT } }];
    let traffic: StreamTraffic | null = null;
    let sentBefore = 0n;
    try {
      // 1. The agent with events off: attaches the noev pair; a generation swap (3,000 /32s need a larger hash) keeps it.
      const first = await runChild(bed, 'b', [
        { open: { pinDir, capacity: { prefixesPerTable: 65_536, counterSlots: 65_536 }, events: OFF } },
        { attach: { ifname: bed.b.ifname } },
        { apply: wire },
        { fill: { base: '10.0.0.0', count: 3000, len: 32, firstSlot: 2000 } },
        { close: true },
      ]);
      assert.ok(
        first.every((r) => r.ok),
        JSON.stringify(first),
      );
      assert.ok((first[3]!.result as { n: number }).n > 1, `a generation swap happened: ${JSON.stringify(first[3]!.result)}`);
      assertPair(pinDir, bed, PROG.XDP_NOEV, PROG.TC_NOEV, 'events off, after a swap');
      // The agent with events off, running (this process: the links on its noev pair, no attach needed), traffic starts.
      let dp = openDatapath({ pinDir, events: OFF });
      assertPair(pinDir, bed, PROG.XDP_NOEV, PROG.TC_NOEV, 'events off, reopened');
      traffic = await StreamTraffic.start(bed, [BLOCKED, UNLISTED], bed.b.v4, 2);
      await sleep(400);

      // 2. Restart with events on: the open itself takes the links over (no attach), then sets the marks.
      const beforeOpen = counted(dp);
      dp.close();
      assert.ok(beforeOpen > 20n, `drops counted while events were off: ${beforeOpen}`);
      dp = openDatapath({ pinDir, events: ON });
      let afterOpen: bigint;
      let events: EventRecord[];
      try {
        afterOpen = counted(dp);
        assertPair(pinDir, bed, PROG.XDP, PROG.TC, 'events on, right after open (before any attach)');
        const ring = dp.events().openRing();
        try {
          await sleep(600);
          events = drain(ring);
          assert.ok(events.length > 20, `events delivered after the switch: ${events.length}`);
          assert.ok(
            events.every((e) => e.slot === SLOT && e.weight >= 1),
            'events of the blocked source’s rule',
          );
          // A weight carries only drops counted since the marks, set once the links ran the event pair:
          // none from the events-off time (hundreds), at most those counted during the open itself.
          const maxWeight = Math.max(...events.map((e) => e.weight));
          assert.ok(
            maxWeight <= Number(afterOpen - beforeOpen) + 1,
            `max weight ${maxWeight}, drops during the open ${afterOpen - beforeOpen}`,
          );
          // Weights + pending = the drops since the marks (set during the open), read with the traffic stopped.
          const r = await traffic.stop();
          traffic = null;
          events.push(...drain(ring));
          const end = counted(dp);
          const carried = BigInt(events.reduce((s, e) => s + e.weight, 0) + pending(dp));
          assert.ok(
            carried >= end - afterOpen && carried <= end - beforeOpen,
            `weights + pending ${carried} between ${end - afterOpen} and ${end - beforeOpen}`,
          );
          // Every drop counted once across the switch, nothing blocked passed, every unlisted packet arrived (or the socket dropped it).
          assertTraffic(r, [BLOCKED, UNLISTED], end, 0n, 'across the switch on');
          sentBefore = end;
        } finally {
          await ring.close();
        }
      } finally {
        dp.close();
      }

      // 3. Restart with events off, traffic running again: the noev pair at open, no event after it, counts exact.
      traffic = await StreamTraffic.start(bed, [BLOCKED, UNLISTED], bed.b.v4, 2);
      await sleep(300);
      dp = openDatapath({ pinDir, events: OFF });
      try {
        assertPair(pinDir, bed, PROG.XDP_NOEV, PROG.TC_NOEV, 'events off again, right after open');
        const start = counted(dp);
        const ring = dp.events().openRing();
        try {
          drain(ring); // what the event pair wrote before the open
          await sleep(500);
          const r = await traffic.stop();
          traffic = null;
          assert.ok(counted(dp) - start > 20n, `drops after the switch: ${counted(dp) - start}`);
          assert.equal(drain(ring).length, 0, 'no event once the noev pair runs');
          assertTraffic(r, [BLOCKED, UNLISTED], counted(dp), sentBefore, 'over both runs');
        } finally {
          await ring.close();
        }
      } finally {
        dp.close();
      }
    } finally {
      traffic?.kill();
      cleanupPins(pinDir);
    }
  });
});

test('a datapath opened with events off refuses to turn them on (its programs have no event code); one opened with them unset loads the event pair', async () => {
  await withDatapath('ev-noev', { events: OFF }, async (dp) => {
    assert.equal(dp.eventCode, false);
    assert.equal(progInfo(dp.programFd('xdp'), 'xdp').name, PROG.XDP_NOEV);
    assert.throws(() => dp.events().configure(ON), { code: 'EINVAL' });
    dp.events().configure({ ...OFF, ratePerSecond: 5 }); // settings with events off are taken
    await applyOps(dp, [
      {
        kind: 'entry.upsert',
        entry: { direction: 'ingress', prefix: parseCidr('192.0.2.9/32'), action: 'deny', mode: 'enforce', slot: SLOT },
      },
    ]);
  });
  await withDatapath('ev-unset', {}, async (dp) => {
    assert.equal(dp.eventCode, true);
    assert.equal(progInfo(dp.programFd('tc'), 'tc').name, PROG.TC);
    dp.events().configure(ON);
  });
});

test('only the programs asked for are loaded (the others never reach the verifier); asking for one the object lacks is ENOENT', () => {
  const obj = loadObject(join(DEFAULT_OBJ_DIR, 'xdp_ingress.bpf.o'), { programs: [PROG.XDP_NOEV] });
  try {
    assert.equal(progInfo(obj.progFd(PROG.XDP_NOEV), 'noev').name, PROG.XDP_NOEV);
    assert.throws(() => obj.progFd(PROG.XDP), /program fd/, 'the event program was not loaded');
  } finally {
    obj.close();
  }
  assert.throws(() => loadObject(join(DEFAULT_OBJ_DIR, 'xdp_ingress.bpf.o'), { programs: [PROG.TC] }), { code: 'ENOENT' });
});
