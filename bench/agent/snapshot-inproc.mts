// Scratch: in-process 1M snapshot through decode -> table -> plan -> real datapath.
import pino from 'pino';
import { SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { Reconciler } from '../../node-agent/src/reconcile/reconciler.js';
import { ruleFromWire } from '../../node-agent/src/sync/wire.js';
const N = Number(process.argv[2] ?? 1_000_000), CH = 16000;
const bufs: Buffer[] = [];
for (let c = 0; c < N / CH; c++) {
  const rules = [];
  for (let i = 0; i < CH; i++) {
    const k = c * CH + i;
    const slash24 = k % 2 === 1;
    rules.push({ id: BigInt(k + 1), address: Buffer.from([10 + (k >> 22), (k >> 14) & 255, (k >> 6) & 255, slash24 ? 0 : (k & 63)]), prefixLength: slash24 ? 24 : 32, action: 1, direction: 1, mode: 1, expireTime: undefined });
  }
  bufs.push(Buffer.from(SyncResponse.encode({ msg: { $case: 'snapshotChunk', value: { revision: 5n, rules, last: false, totalRules: BigInt(N) } } }).finish()));
}
const pin = `/sys/fs/bpf/fleetwall-scratch-${process.pid}`;
const log = pino({ level: 'info' });
global.gc?.();
const rss0 = process.memoryUsage().rss;
const dp = openDatapath({ pinDir: pin, capacity: { prefixesPerTable: 1 << 20, counterSlots: 1 << 20 } });
try {
  const rec = new Reconciler(dp, log);
  rec.load();
  const t0 = performance.now();
  rec.table.beginSnapshot(N);
  let dec = 0;
  for (const b of bufs) {
    const td = performance.now();
    const m = SyncResponse.decode(b);
    dec += performance.now() - td;
    if (m.msg?.$case !== 'snapshotChunk') throw new Error();
    for (const r of m.msg.value.rules) { const w = ruleFromWire(r); if (w.ok) rec.table.upsert(w.spec); }
  }
  rec.table.endSnapshot();
  const t1 = performance.now();
  const res = await rec.reconcile({ revision: 5n, storeId: 'x' });
  const t2 = performance.now();
  global.gc?.();
  console.log(JSON.stringify({ ok: res.ok, decodeMs: Math.round(dec), tableMs: Math.round(t1 - t0 - dec), reconcileMs: Math.round(t2 - t1), totalMs: Math.round(t2 - t0), rssMB: Math.round(process.memoryUsage().rss / 1e6), rss0MB: Math.round(rss0 / 1e6), heapMB: Math.round(process.memoryUsage().heapUsed / 1e6) }));
  // a delta after
  rec.table.upsert({ id: 99999999n, direction: 'ingress', prefix: { family: 4, bytes: new Uint8Array([1, 2, 3, 4]), len: 32 }, action: 'deny', mode: 'enforce', expireUnixMs: 0 });
  const t3 = performance.now();
  await rec.reconcile({ revision: 6n, storeId: 'x' });
  console.log('delta ms', performance.now() - t3);
} finally {
  dp.close();
  removePins(pin);
}
