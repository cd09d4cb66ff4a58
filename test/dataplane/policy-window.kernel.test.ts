// The detection policies' windows in the kernel (ABI 14): the programs count
// in windows of jiffies (epoch = (jiffies * window_mul) >> window_shift), the
// agent reads the jiffies and HZ with fw_clock.bpf.o (kernel-clock.ts). Here:
// HZ as measured is the kernel's (CONFIG_HZ, where the kernel publishes its
// config); a packet's cells carry the tag of the window the agent computes
// for the jiffies around it (policy-window.ts), for windows of a whole number
// of jiffies and not (10 ms: 2.5 jiffies at HZ 250); a new window restarts the
// counts, so a source over its limit is reported again in it; the margin's
// reading finds the window's packets (the agent's window is the kernel's).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MAP } from '../../node-agent/src/datapath/abi.js';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import { BpfKernelClock, HZ_CHOICES } from '../../node-agent/src/datapath/kernel-clock.js';
import { DEFAULT_OBJ_DIR } from '../../node-agent/src/datapath/objects.js';
import { cellTag } from '../../node-agent/src/datapath/policy-maps.js';
import { FW_POL_WIDTH } from '../../node-agent/src/datapath/policy-abi.js';
import { windowEpoch, windowRecip } from '../../node-agent/src/datapath/policy-window.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { kernelPolicy } from '../support/policy-fixtures.js';

const MS = 1_000_000n;
const DST = '192.0.2.1';

/** CONFIG_HZ from /proc/config.gz, if this kernel publishes its config. */
function configHz(): number | undefined {
  if (!existsSync('/proc/config.gz')) return undefined;
  const m = /^CONFIG_HZ=(\d+)$/m.exec(gunzipSync(readFileSync('/proc/config.gz')).toString());
  return m ? Number(m[1]) : undefined;
}

/** Row 0's cells of slot 0 that hold packets: their tags. */
function row0Tags(pinDir: string): Set<number> {
  const cms = BpfMap.fromPin(join(pinDir, MAP.POL_CMS), MAP.POL_CMS);
  try {
    const v = cms.lookupU32(0)!;
    const tags = new Set<number>();
    for (let c = 0; c < FW_POL_WIDTH; c++) if (v.readUInt32LE(c * 16 + 4) !== 0) tags.add(v.readUInt32LE(c * 16));
    return tags;
  } finally {
    cms.close();
  }
}

/** Waits (spinning on the kernel's jiffies) until a window of `r` begins: the next packets are in one window. */
function atWindowStart(clock: BpfKernelClock, r: ReturnType<typeof windowRecip>): void {
  const e = windowEpoch(clock.now().jiffies, r);
  while (windowEpoch(clock.now().jiffies, r) === e);
}

test("the measured HZ is the kernel's; the jiffies advance with it", () => {
  const clock = BpfKernelClock.open(DEFAULT_OBJ_DIR);
  try {
    const hz = clock.hz();
    assert.ok((HZ_CHOICES as readonly number[]).includes(hz), `HZ ${hz}`);
    const cfg = configHz();
    if (cfg !== undefined) assert.equal(hz, cfg, 'CONFIG_HZ');
    const a = clock.now();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    const b = clock.now();
    const ticks = Number(b.jiffies - a.jiffies);
    // 50 ms of a sleep (and whatever the machine adds): at least 50 ms of ticks, and the coarse clock moved with them.
    assert.ok(ticks >= Math.floor((hz * 50) / 1000) - 1, `${ticks} ticks in 50 ms at HZ ${hz}`);
    assert.ok(b.coarseNs > a.coarseNs);
  } finally {
    clock.close();
  }
});

test("a counted packet's cells carry the agent's window for the jiffies around it, whole windows or not", () =>
  withDatapath('pol-win', {}, (dp, pinDir) => {
    const clock = BpfKernelClock.open(DEFAULT_OBJ_DIR);
    try {
      const hz = clock.hz();
      let id = 40;
      for (const windowNs of [10n * MS, 100n * MS, 1001n * MS, 3_600_000n * MS]) {
        const r = windowRecip(windowNs, hz);
        for (let k = 0; k < 5; k++) {
          id++;
          dp.policies.writePolicies([kernelPolicy({ id, windowNs, limitPackets: 1000n })]);
          const before = clock.now().jiffies;
          dp.testRun('xdp', ipFrame(`198.51.100.${k + 1}`, DST));
          const after = clock.now().jiffies;
          const want = new Set<number>();
          for (let j = before; j <= after; j++) want.add(cellTag(windowEpoch(j, r), id));
          const got = [...row0Tags(pinDir)].filter((t) => t !== 0);
          // The slot's cells of older ids are there too (no clearing): this id's tag is one of the window's.
          assert.ok(
            got.some((t) => want.has(t)),
            `${windowNs / MS} ms at HZ ${hz}: tags ${got.join(',')} against ${[...want].join(',')}`,
          );
        }
      }
    } finally {
      clock.close();
    }
  }));

test('a new window restarts the counts: a source over its limit is reported again; the margin reads the kernel window', () =>
  withDatapath('pol-win2', {}, (dp) => {
    const clock = BpfKernelClock.open(DEFAULT_OBJ_DIR);
    try {
      const start = dp.policies.policyStats().hits;
      const windowNs = 100n * MS;
      const r = windowRecip(windowNs, clock.hz());
      dp.policies.writePolicies([kernelPolicy({ id: 77, windowNs, limitPackets: 3n })]);
      const a = ipFrame('198.51.100.50', DST);
      atWindowStart(clock, r);
      for (let i = 0; i < 4; i++) dp.testRun('xdp', a);
      // The agent's window is the kernel's: its row holds this window's 4 packets (or the previous one's, just after a boundary).
      dp.policies.refreshMargins();
      assert.equal(dp.policies.policyStats().windowPackets, 4n);
      const first = dp.policies.readPolicyHits(start);
      assert.equal(first.hits.length, 1, 'the 4th packet is over 3');
      assert.ok(first.hits[0]!.elapsedNs < windowNs, `elapsed ${first.hits[0]!.elapsedNs}`);
      // The next window: the counts restart, so 4 more packets are reported again.
      atWindowStart(clock, r);
      for (let i = 0; i < 3; i++) dp.testRun('xdp', a);
      assert.equal(dp.policies.readPolicyHits(first.next).hits.length, 0, '3 packets of a new window: at the limit');
      dp.testRun('xdp', a);
      const again = dp.policies.readPolicyHits(first.next);
      assert.equal(again.hits.length, 1, 'reported again in a new window');
      assert.equal(again.hits[0]!.packets, 4n);
      assert.ok(again.hits[0]!.atNs > first.hits[0]!.atNs);
    } finally {
      clock.close();
    }
  }));
