// The benchmark objects (bpf/bench/obj/, built by scripts/build-bpf.sh) pass the verifier, and the variants
// of the XDP ingress program that `bench:dataplane --variants` measures beside this build's (ABI 5's lookup,
// `_flat`, and each half of it, `_cfg_map` and `_one_level`; this build's index read by address, `_direct`,
// with the pool a global of the program, `_global`,
// with the block path marked likely, `_expect`, with uniform blocks folded into their /16 words, `_collapse`,
// with blocks placed by a hash of the /16, `_hashed`;
// the shared and hybrid rule counters) decide and
// count like it on the same maps, through the bench's own loaders (bench/dataplane/sets.ts, variants.ts). A
// change to the programs, the maps or the ABI that breaks a variant fails here instead of at the next
// benchmark run (ABI 7's events left `_flat` refused by the verifier, found only when the A/B was next wanted).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAddress, parseCidr } from '../../common/src/cidr.js';
import { objects, variant } from '../../bench/dataplane/sets.js';
import { counterVariant, flatVariant } from '../../bench/dataplane/variants.js';
import { BpfMap, mapInfoByFd } from '../../node-agent/src/datapath/bpf-map.js';
import { loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { check, raw } from '../../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../../node-agent/src/datapath/test-run.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/uapi.js';
import { ipv4Frame } from '../support/frames.js';
import { applyOps, readRuleCounters } from '../support/object-forms.js';
import { withDatapath } from '../support/pin-dirs.js';

const root = join(import.meta.dirname, '../..');
const benchObj = join(root, 'bpf/bench/obj');

/** The objects the build script writes into bpf/bench/obj, by file name. */
function builtBenchObjects(): string[] {
  const script = readFileSync(join(root, 'scripts/build-bpf.sh'), 'utf8');
  return [...new Set([...script.matchAll(/bpf\/bench\/obj\/([\w-]+\.bpf\.o)/g)].map((m) => m[1]!))].sort();
}

test('every object the build script writes into bpf/bench/obj is committed, and each loads through the verifier', () => {
  const built = builtBenchObjects();
  assert.ok(built.includes('xdp_ingress_flat_vary.bpf.o') && built.length >= 9, `build-bpf.sh lists ${built.join(', ')}`);
  const committed = readdirSync(benchObj).filter((f) => f.endsWith('.bpf.o'));
  assert.deepEqual(committed.sort(), built, 'bpf/bench/obj holds what build-bpf.sh builds');
  const rootPins = () => readdirSync('/sys/fs/bpf').filter((n) => n.startsWith('fw_'));
  const before = rootPins();
  for (const f of built) {
    // Every program of the object is loaded (verified); its maps are its own, unpinned.
    const obj = loadObject(join(benchObj, f));
    obj.close();
  }
  // Unpinned means unpinned: not under libbpf's default root for maps the object marks pin-by-name
  // (a pin left there by one build is reused by, and refused to, the next).
  assert.deepEqual(rootPins(), before, 'no map pinned in /sys/fs/bpf by loading without a pin dir');
});

test('the ingress variants of bench:dataplane --variants decide like this build on the same maps', async () => {
  await withDatapath('bench-variants', { maxHashLengths: 6 }, async (dp, pinDir) => {
    const up = (cidr: string, action: 'deny' | 'allow', mode: 'enforce' | 'monitor', slot: number) => ({
      kind: 'entry.upsert' as const,
      entry: { direction: 'ingress' as const, prefix: parseCidr(cidr), action, mode, slot },
    });
    await applyOps(dp, [
      up('10.1.2.0/24', 'deny', 'enforce', 1),
      up('10.1.3.0/24', 'allow', 'enforce', 2),
      up('10.1.3.7/32', 'deny', 'enforce', 3), // a longer entry inside a /24: the index word says LONGER
      up('10.2.0.0/16', 'deny', 'monitor', 4), // no entry longer than /16 inside: no /24 block in the two-level index
      // Two halves of one /16 with one answer: a block of 256 equal words, which `_collapse` folds into the /16 word.
      up('10.4.0.0/17', 'deny', 'enforce', 5),
      up('10.4.128.0/17', 'deny', 'enforce', 5),
    ]);
    // source, XDP verdict, counter slot of the deciding rule (none: the default)
    const cases: Array<[string, number, number | null]> = [
      ['10.1.2.5', XDP_DROP, 1],
      ['10.1.3.8', XDP_PASS, 2],
      ['10.1.3.7', XDP_DROP, 3],
      ['10.2.3.4', XDP_PASS, 4],
      ['10.4.200.1', XDP_DROP, 5],
      ['10.9.9.9', XDP_PASS, null],
    ];
    const first = [parseAddress(cases[0]![0]).bytes];
    const productCounters = (): bigint[] => [...readRuleCounters(dp, 8).packets];
    const benchCounters = (): bigint[] => {
      const m = borrow('bench_cnt');
      return Array.from({ length: 8 }, (_, s) => m.lookupU32(s)!.readBigUInt64LE(0));
    };
    const borrow = (name: string): BpfMap => {
      const fd = objects[objects.length - 1]!.mapFd(name);
      return new BpfMap(name, fd, mapInfoByFd(fd, name), false);
    };
    const variants: Array<[string, () => number, () => bigint[]]> = [
      ['this build', () => variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', first, pinDir), productCounters],
      ['_flat', () => flatVariant(dp, pinDir, first), productCounters],
      ['_cfg_map', () => flatVariant(dp, pinDir, first, 'cfg_map'), productCounters],
      ['_one_level', () => flatVariant(dp, pinDir, first, 'one_level'), productCounters],
      ['_direct', () => flatVariant(dp, pinDir, first, 'direct'), productCounters],
      ['_global', () => flatVariant(dp, pinDir, first, 'global'), productCounters],
      ['_expect', () => flatVariant(dp, pinDir, first, 'expect'), productCounters],
      ['_collapse', () => flatVariant(dp, pinDir, first, 'collapse'), productCounters],
      ['_hashed', () => flatVariant(dp, pinDir, first, 'hashed'), productCounters],
      ['_cnt_shared', () => counterVariant('shared', pinDir, first), benchCounters],
      ['_cnt_hybrid', () => counterVariant('hybrid', pinDir, first), benchCounters],
    ];
    try {
      for (const [name, load, counters] of variants) {
        const fd = load();
        // One source in the rotation (mask 0): bench_srcs[0] is the source of every run.
        const srcs = objects[objects.length - 1]!.mapFd('bench_srcs');
        for (const [src, verdict, slot] of cases) {
          const key = Buffer.alloc(4);
          const val = Buffer.alloc(20);
          val.set(parseAddress(src).bytes, 0);
          check(raw.bpf_map_update_elem(srcs, key, val, 0n) as number, 'set source', 'bench_srcs');
          const before = counters();
          // The frame's own source is not listed: the verdict is the rotated source's.
          const r = progTestRun(fd, ipv4Frame('192.0.2.254', '192.0.2.1'));
          const after = counters();
          assert.equal(r.retval, verdict, `${name}: verdict for ${src}`);
          const moved = after.flatMap((p, s) => (p !== before[s] ? [s] : []));
          assert.deepEqual(moved, slot === null ? [] : [slot], `${name}: counter slots moved by ${src}`);
          if (slot !== null) assert.equal(after[slot]! - before[slot]!, 1n, `${name}: ${src} counted once`);
        }
      }
    } finally {
      for (const o of objects.splice(0)) o.close();
    }
  });
});
