// The reconciler on the real datapath (real maps in a test pin dir): a plan
// the datapath refuses part-way is repaired to the last good state by
// reading the real kernel tables and journal back; a restart reads the real
// pins and applies nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { formatPrefix, parseCidr } from '../../common/src/cidr.js';
import { type Datapath, DatapathError, type OpBatch, type SyncMeta } from '../../node-agent/src/datapath/datapath.js';
import { openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { Reconciler } from '../../node-agent/src/reconcile/reconciler.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { applyOps, batchOps, readEntries, readJournal } from '../support/object-forms.js';

const log = pino({ level: 'silent' });

function rule(id: number, cidr: string, action: 'deny' | 'allow' = 'deny', direction: 'ingress' | 'egress' = 'ingress'): RuleSpec {
  return { id: BigInt(id), prefix: parseCidr(cidr), action, mode: 'enforce', direction, expireUnixMs: 0 };
}

/** The real datapath, with a switch that makes the n-th applyBatch call fail after the previous ones went in. */
function failing(dp: Datapath): { dp: Datapath; failAtCall: (n: number) => void } {
  let countdown = -1;
  const wrapped = Object.create(dp) as Datapath;
  wrapped.applyBatch = async (b: OpBatch, meta?: SyncMeta) => {
    if (countdown >= 0 && countdown-- === 0) {
      // Half of this call reaches the kernel, then the "kernel" refuses.
      await applyOps(dp, batchOps(b).slice(0, Math.floor(b.length / 2)));
      throw new DatapathError('update map', 'injected', 12 /* ENOMEM */);
    }
    await dp.applyBatch(b, meta);
  };
  return { dp: wrapped, failAtCall: (n) => (countdown = n) };
}

const dumpEntries = (dp: Datapath): string[] =>
  readEntries(dp)
    .map((e) => `${e.direction} ${formatPrefix(e.prefix)} ${e.action} ${e.slot}`)
    .sort();
const dumpJournal = (dp: Datapath): string[] =>
  readJournal(dp)
    .map((j) => `${j.id} ${j.direction} ${formatPrefix(j.prefix)} ${j.action} ${j.slot}`)
    .sort();

test('real datapath: a refusal part-way is repaired to the last good state; the next attempt applies everything', async () => {
  const pinDir = `/sys/fs/bpf/fleetwall-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const real = openDatapath({ pinDir, capacity: { prefixesPerTable: 1024, counterSlots: 1024 } });
  try {
    const f = failing(real);
    const rec = await Reconciler.open(f.dp, log, { chunkOps: 3 }); // several apply() calls per plan
    const t = rec.table;
    for (let i = 1; i <= 6; i++) t.upsert(rule(i, `10.20.${i}.0/24`));
    t.upsert(rule(7, '10.20.0.0/16', 'allow', 'egress'));
    assert.ok((await rec.reconcile({ revision: 1n, storeId: 's' })).ok);
    const goodEntries = dumpEntries(real);
    const goodJournal = dumpJournal(real);
    assert.equal(goodEntries.length, 7);
    // A change touching journal, entries and deletes, failing in its 4th apply() call.
    for (let i = 1; i <= 3; i++) t.remove(BigInt(i));
    for (let i = 8; i <= 12; i++) t.upsert(rule(i, `10.21.${i}.0/24`));
    t.upsert(rule(13, '10.20.4.0/24', 'allow'));
    f.failAtCall(3);
    const res = await rec.reconcile({ revision: 2n, storeId: 's' });
    assert.equal(res.ok, false);
    if (!res.ok) assert.equal(res.partial, true);
    assert.deepEqual(dumpEntries(real), goodEntries, 'kernel entries back at the last good state');
    assert.deepEqual(dumpJournal(real), goodJournal, 'journal back at the last good state');
    assert.equal(real.readMeta().revision, 1n);
    // Next attempt: the whole desired set.
    const ok = await rec.reconcile({ revision: 3n, storeId: 's' });
    assert.ok(ok.ok);
    assert.deepEqual(
      readEntries(real)
        .map((e) => `${e.direction} ${formatPrefix(e.prefix)} ${e.action}`)
        .sort(),
      [
        'egress 10.20.0.0/16 allow',
        'ingress 10.20.4.0/24 allow',
        'ingress 10.20.5.0/24 deny',
        'ingress 10.20.6.0/24 deny',
        ...[8, 9, 10, 11, 12].map((i) => `ingress 10.21.${i}.0/24 deny`),
      ].sort(),
    );
    assert.equal(readJournal(real).length, 10, 'rules 4-13 (4 and 13 share one kernel entry)');
    assert.equal(real.readMeta().revision, 3n);
    // A restart on the same pins reads everything back and applies nothing.
    const again = openDatapath({ pinDir });
    try {
      const rec2 = await Reconciler.open(again, log);
      assert.equal(rec2.loaded.journalRules, 10);
      assert.equal(rec2.loaded.meta.revision, 3n);
      const r2 = await rec2.reconcile();
      assert.ok(r2.ok && r2.opCount === 0, 'nothing to apply after a restart');
    } finally {
      again.close();
    }
  } finally {
    real.close();
    removePins(pinDir);
  }
});
