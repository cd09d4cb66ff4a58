// The agent's view of the kernel's lost-event counts (EventPump.take()): per
// rule, as deltas of the kernel's u32 counts, and afresh when a counter slot
// is given to another rule (its budget, and so its count, was reset with the
// counter): the new rule must not be charged the old one's count, nor a
// wrapped difference.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { EventBudgets, EventSource } from '../../node-agent/src/datapath/datapath.js';
import type { EventRing } from '../../node-agent/src/datapath/event-ring.js';
import { EventPump } from '../../node-agent/src/events/event-pump.js';
import type { EventResolver } from '../../node-agent/src/events/event-queue.js';

/** A kernel's budgets: lost counts per slot, as the test sets them. */
class FakeSource implements EventSource {
  readonly settings = null;
  readonly ringBytes = 4096;
  readonly budgetsId = 1;
  readonly lost = new Uint32Array(8);
  configure(): void {}
  openRing(): EventRing {
    throw new Error('not used');
  }
  readBudgets(first: number, out: EventBudgets): number {
    const n = Math.max(0, Math.min(out.lost.length, this.lost.length - first));
    out.lost.set(this.lost.subarray(first, first + n));
    out.pending.fill(0, 0, n);
    out.defaultLost = 0;
    out.defaultPending = 0;
    return n;
  }
}

test('lost events per rule: deltas of the kernel counts; a slot given to another rule starts from 0', () => {
  const src = new FakeSource();
  const owner: (bigint | undefined)[] = [undefined, undefined, 42n, 43n];
  const resolver: EventResolver = { ruleOf: (s) => owner[s], ifname: (i) => `if${i}`, unixMicros: () => 0 };
  const pump = new EventPump(
    src,
    resolver,
    () => 4,
    { queueSize: 16, minIntervalMs: 0, batchSize: 16, lossEveryMs: 0 },
    pino({ level: 'silent' }),
  );
  const losses = () => (pump.take()?.kernelLost ?? []).map((l) => [l.ruleId, l.lost]);

  src.lost[2] = 5;
  src.lost[3] = 1;
  assert.deepEqual(losses(), [
    [42n, 5n],
    [43n, 1n],
  ]);
  src.lost[2] = 7;
  assert.deepEqual(losses(), [[42n, 2n]], 'a delta');
  assert.deepEqual(losses(), [], 'nothing new');
  // Rule 42 leaves slot 2; rule 44 takes it, its budget reset (count 0), then it loses 3.
  owner[2] = 44n;
  src.lost[2] = 0;
  assert.deepEqual(losses(), [], 'a reset slot has lost nothing');
  src.lost[2] = 3;
  assert.deepEqual(losses(), [[44n, 3n]], 'the new rule is charged its own 3, not 3 - 7 wrapped');
  // A count that wraps past 2^32 for the same rule is still a delta.
  src.lost[3] = 0xffffffff;
  assert.deepEqual(losses(), [[43n, 0xfffffffen]]);
  src.lost[3] = 1;
  assert.deepEqual(losses(), [[43n, 2n]], 'wrapped: 0xffffffff -> 1 is 2');
});
