import pino from 'pino';
import { openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { Reconciler } from '../../node-agent/src/reconcile/reconciler.js';
import { plan, planOps } from '../../node-agent/src/reconcile/plan.js';
import type { MapOp } from '../../node-agent/src/datapath/datapath.js';
const N = Number(process.argv[2] ?? 1_000_000);
const pin = `/sys/fs/bpf/fleetwall-scratch-${process.pid}`;
const dp = openDatapath({ pinDir: pin, capacity: { prefixesPerTable: 1 << 20, counterSlots: 1 << 20 } });
try {
  const rec = new Reconciler(dp, pino({ level: 'silent' }));
  rec.load();
  rec.table.beginSnapshot(N);
  for (let k = 0; k < N; k++) {
    const slash24 = k % 2 === 1;
    rec.table.upsert({ id: BigInt(k + 1), direction: 'ingress', prefix: { family: 4, bytes: slash24 ? new Uint8Array([100 + (k >> 17), (k >> 9) & 255, (k >> 1) & 255, 0]) : new Uint8Array([10 + (k >> 24), (k >> 16) & 255, (k >> 8) & 255, k & 255]), len: slash24 ? 24 : 32 }, action: 'deny', mode: 'enforce', expireUnixMs: 0 });
  }
  rec.table.endSnapshot();
  const pl = plan({ table: rec.table, slots: rec.slots, capacity: dp.capacity });
  let t = performance.now();
  const ops = [...planOps(rec.table, pl)];
  console.log('materialize ms', Math.round(performance.now() - t), 'rss', Math.round(process.memoryUsage().rss / 1e6));
  const j = ops.filter((o) => o.kind.startsWith('journal'));
  const e = ops.filter((o) => o.kind.startsWith('entry'));
  const C = Number(process.env.CHUNK ?? 65536);
  for (const [name, list] of [['journal', j], ['entries', e]] as const) {
    t = performance.now();
    for (let i = 0; i < list.length; i += C) dp.apply(list.slice(i, i + C));
    console.log(name, 'apply ms', Math.round(performance.now() - t), list.length);
  }
} finally { dp.close(); removePins(pin); }
