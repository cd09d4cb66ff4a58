// The issue-time program's maps, for bench:dataplane --compare-pinned: run
// from a checkout of issue 20's issue-time tree (0b52cd3^, ABI 5; its
// objects built there with `npm run build:bpf`), it opens THAT tree's datapath
// (its agent code, its objects, its ABI 5 layout) at a pin dir of your
// choosing and applies the v4_1k and v4_1m sets exactly as that tree's bench
// did (bench/dataplane/sets.ts openSet: capacity max(n, 1024) + 1024 prefixes,
// 1024 counter slots, slot i % 1024, K = 6, one applyOps), one sub-directory
// each, and leaves the pins for this tree's bench to run the issue-time vary
// object on:
//
//   cd /path/to/0b52cd3^-checkout && npm run build:bpf
//   node --import tsx /path/to/this/tree/bench/dataplane/issue-time-pins.ts /sys/fs/bpf/fleetwall-abi5-$$
//   (then, in this tree) npm run bench:dataplane -- --no-mpps \
//     --compare-pinned /path/to/0b52cd3^-checkout/bpf/bench/obj/xdp_ingress_vary.bpf.o@/sys/fs/bpf/fleetwall-abi5-$$
//   node --import tsx /path/to/this/tree/bench/dataplane/issue-time-pins.ts /sys/fs/bpf/fleetwall-abi5-$$ --remove
//
// Every module of the datapath is imported from the checkout (the working
// directory), none from this tree; the sets are checked against this tree's
// bench/lib/prefix-sets.ts (entries, hit, miss and near-miss sources), and the
// script refuses to pin if they differ.
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as mine from '../lib/prefix-sets.js';

type Sets = typeof mine;
const argv = process.argv.slice(2);
const base = argv.find((a) => !a.startsWith('--'));
if (!base || !isAbsolute(base) || !base.startsWith('/sys/fs/bpf/'))
  throw new Error('usage: issue-time-pins.ts /sys/fs/bpf/<unique name> [--remove]   (run from the checkout of 0b52cd3^)');
const tree = process.cwd();
const from = async <T>(rel: string): Promise<T> => (await import(pathToFileURL(join(tree, rel)).href)) as T;

const SETS = [
  { name: 'v4_1k', n: 1000 },
  { name: 'v4_1m', n: 1_000_000 },
] as const;

async function main(): Promise<void> {
  const { removePins, openDatapath } = await from<{
    removePins(d: string): void;
    openDatapath(o: Record<string, unknown>): { close(): void; capacity: unknown };
  }>('node-agent/src/datapath/bpf-datapath.ts');
  if (argv.includes('--remove')) {
    for (const s of SETS) if (existsSync(join(base!, s.name))) removePins(join(base!, s.name));
    removePins(base!);
    process.stdout.write(`removed ${base}\n`);
    return;
  }
  if (!existsSync(join(tree, 'bpf/obj/xdp_ingress.bpf.o')) || !existsSync(join(tree, 'bpf/bench/obj/xdp_ingress_vary.bpf.o')))
    throw new Error(`${tree}: no objects; run npm run build:bpf there first`);
  const theirs = await from<Sets>('bench/lib/prefix-sets.ts');
  const { applyOps } = await from<{ applyOps(dp: unknown, ops: unknown[]): void | Promise<void> }>('test/support/object-forms.ts');
  const { FW_ABI_VERSION } = await from<{ FW_ABI_VERSION: number }>('node-agent/src/datapath/abi.ts');
  // The same prefixes, counter slots and sources as this tree's bench, or nothing is pinned.
  for (const s of SETS) {
    same(`${s.name} entries`, theirs.entries(4, s.n), mine.entries(4, s.n));
    same(`${s.name} hit sources`, theirs.hitSources(4, s.n, 1024), mine.hitSources(4, s.n, 1024));
    same(`${s.name} near-miss sources`, theirs.nearMissSources(s.n, 1024), mine.nearMissSources(s.n, 1024));
  }
  same('miss sources', theirs.missSources(1024), mine.missSources(1024));
  for (const s of SETS) {
    const pinDir = join(resolve(base!), s.name);
    if (existsSync(pinDir)) throw new Error(`${pinDir} exists: choose another name or --remove it`);
    const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: Math.max(s.n, 1024) + 1024, counterSlots: 1024 }, maxHashLengths: 6 });
    const t0 = process.hrtime.bigint();
    await applyOps(
      dp,
      theirs.entries(4, s.n).map((entry) => ({ kind: 'entry.upsert', entry })),
    );
    dp.close(); // the pins stay
    process.stdout.write(
      `${JSON.stringify({ pinDir, set: s.name, prefixes: s.n, abi: FW_ABI_VERSION, tree, seconds: Number(process.hrtime.bigint() - t0) / 1e9 })}\n`,
    );
  }
}

function same(what: string, a: unknown, b: unknown): void {
  const text = (x: unknown) => JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? [...v] : v));
  if (text(a) !== text(b)) throw new Error(`${what} differ between ${tree} and this tree`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
