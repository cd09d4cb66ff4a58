// 1,000,000 prefixes (500k /32 + 500k /24) in one table, loaded by batch,
// checked by sampled lookups and by packets, then removed by batch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Prefix } from '../../common/src/cidr.js';
import type { KernelEntry, MapOp } from '../../node-agent/src/datapath/datapath.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { applyOps, readRuleCounters } from '../support/object-forms.js';

const N = 1_000_000;

function u32ToBytes(v: number): Uint8Array {
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}
const dotted = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff].join('.');
const BASE32 = 0x0b000000; // 11.0.0.0 + i
const BASE24 = 0x0c000000; // 12.0.0.0 + i*256

function entryFor(i: number): KernelEntry {
  const half = i < N / 2;
  const j = half ? i : i - N / 2;
  const prefix: Prefix = half
    ? { family: 4, bytes: u32ToBytes(BASE32 + j), len: 32 }
    : { family: 4, bytes: u32ToBytes(BASE24 + j * 256), len: 24 };
  return {
    direction: 'ingress',
    prefix,
    action: i % 7 === 0 ? 'allow' : 'deny',
    mode: i % 11 === 0 ? 'monitor' : 'enforce',
    slot: i % 1000,
  };
}

test('1,000,000 prefixes: batch load, sampled lookups, packets, batch delete', async () => {
  await withDatapath('million', { capacity: { prefixesPerTable: 1_048_576, counterSlots: 1024 } }, async (dp) => {
    const ops: MapOp[] = new Array(N);
    for (let i = 0; i < N; i++) ops[i] = { kind: 'entry.upsert', entry: entryFor(i) };
    const t0 = process.hrtime.bigint();
    await applyOps(dp, ops);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    process.stderr.write(`# loaded ${N} prefixes in ${ms.toFixed(0)} ms\n`);
    const u = dp.usage().find((x) => x.direction === 'ingress' && x.family === 4)!;
    assert.equal(u.entries, N);
    assert.deepEqual(dp.layout().find((x) => x.direction === 'ingress' && x.family === 4)!.hashLens, [32, 24]);
    // The tables are kernel memory: this process keeps none of their pages mapped at rest.
    assert.equal(dp.mappedPages(), 0, 'no table page mapped after the apply');

    // Sampled lookups: every sampled prefix is stored with its action, mode and slot.
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) % N;
    for (let k = 0; k < 2000; k++) {
      const want = entryFor(rnd());
      const got = dp.lookupEntry('ingress', want.prefix);
      assert.ok(got, `entry ${dotted(Buffer.from(want.prefix.bytes).readUInt32BE(0))}/${want.prefix.len} present`);
      assert.deepEqual(
        { ...got, prefix: { ...got.prefix, bytes: [...got.prefix.bytes] } },
        { ...want, prefix: { ...want.prefix, bytes: [...want.prefix.bytes] } },
      );
    }
    assert.equal(dp.lookupEntry('ingress', { family: 4, bytes: u32ToBytes(BASE32 + N), len: 32 }), null, 'one past the end is absent');
    readRuleCounters(dp, 1024);
    assert.equal(dp.mappedPages(), 0, 'no page mapped after lookups and a counter read');

    // Packets: sources inside /32s, inside /24s (any host), and outside every rule.
    for (let k = 0; k < 1500; k++) {
      const i = rnd();
      const e = entryFor(i);
      const base = Buffer.from(e.prefix.bytes).readUInt32BE(0);
      const src = e.prefix.len === 32 ? base : base + ((k * 37) & 0xff);
      const expect = e.action === 'deny' && e.mode === 'enforce' ? XDP_DROP : XDP_PASS;
      assert.equal(dp.testRun('xdp', ipFrame(dotted(src), '192.0.2.254')).retval, expect, `${dotted(src)} (rule ${i})`);
    }
    for (const outside of ['10.0.0.1', dotted(BASE32 + N / 2), dotted(BASE24 + (N / 2) * 256 + 5), '200.1.2.3']) {
      assert.equal(dp.testRun('xdp', ipFrame(outside, '192.0.2.254')).retval, XDP_PASS, outside);
    }

    // Remove them all by batch.
    const dels: MapOp[] = new Array(N);
    for (let i = 0; i < N; i++) dels[i] = { kind: 'entry.delete', direction: 'ingress', prefix: entryFor(i).prefix };
    await applyOps(dp, dels);
    assert.equal(dp.usage().find((x) => x.direction === 'ingress' && x.family === 4)!.entries, 0);
    assert.deepEqual(dp.layout().find((x) => x.direction === 'ingress' && x.family === 4)!.hashLens, []);
    assert.equal(dp.testRun('xdp', ipFrame(dotted(BASE32 + 1), '192.0.2.254')).retval, XDP_PASS);
  });
});
