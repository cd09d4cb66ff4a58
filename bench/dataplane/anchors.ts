// The anchors a fleetwall sink is compared with, built from the same
// prefixes: the plain LPM trie of the bench's trie_drop program, the
// xdp-filter-style kernel HASH of exact /32 keys, and an nftables netdev
// ingress interval set; and the hit counts the XDP anchors keep.
import { writeFileSync } from 'node:fs';
import { batchOpts, check, closeFd, raw } from '../../node-agent/src/datapath/libbpf.js';
import type { NetnsPair } from '../../test/support/netns.js';
import { dotted, entries, v4Prefix } from '../lib/prefix-sets.js';
import { sh } from './receiver.js';

/** Fills the plain trie of the bench (trie4_srcs / trie6_srcs, pinned in pinDir or given by fd) with the n prefixes of a set. */
export function fillTrie(where: string | number, family: 4 | 6, n: number): void {
  const name = family === 4 ? 'trie4_srcs' : 'trie6_srcs';
  const fd = typeof where === 'number' ? where : check(raw.bpf_obj_get(`${where}/${name}`) as number, 'open pinned map', name);
  try {
    const ks = family === 4 ? 8 : 20;
    const es = entries(family, n);
    const CH = 65536;
    const k = Buffer.alloc(CH * ks);
    const v = Buffer.alloc(CH * 8);
    for (let off = 0; off < es.length; off += CH) {
      const m = Math.min(CH, es.length - off);
      for (let i = 0; i < m; i++) {
        const p = es[off + i]!.prefix;
        k.writeUInt32LE(p.len, i * ks);
        k.set(p.bytes, i * ks + 4);
      }
      const count = new Uint32Array([m]);
      check(raw.bpf_map_update_batch(fd, k, v, count, batchOpts(0n)) as number, 'fill', name);
      if (count[0] !== m) throw new Error(`${name}: ${count[0]} of ${m} prefixes written`);
    }
  } finally {
    if (typeof where !== 'number') closeFd(fd);
  }
}

/**
 * The keys of the xdp-filter-style sink: the n prefixes as exact addresses
 * (the /32s as they are; one address inside each /24: the generator's
 * source where it sends from that /24, else the /24's first address).
 * Every generated packet hits, as with fleetwall.
 */
export function hash32Keys(n: number, sources: Uint8Array[]): number[] {
  const keys = new Set<number>();
  const half = Math.floor(n / 2);
  for (let i = 0; i < half; i++) keys.add(Buffer.from(v4Prefix(i, n).bytes).readUInt32BE(0));
  const covered = new Set<number>();
  for (const s of sources) {
    const a = Buffer.from(s).readUInt32BE(0);
    if (keys.has(a)) continue;
    keys.add(a);
    covered.add(a >>> 8);
  }
  for (let i = half; i < n && keys.size < n; i++) {
    const a = Buffer.from(v4Prefix(i, n).bytes).readUInt32BE(0);
    if (!covered.has(a >>> 8)) keys.add(a);
  }
  for (const s of sources) if (!keys.has(Buffer.from(s).readUInt32BE(0))) throw new Error('a generator source is not a hash32 key');
  return [...keys];
}

export function fillHash32(fd: number, keys: number[]): void {
  const k = Buffer.alloc(keys.length * 4);
  keys.forEach((a, i) => k.writeUInt32BE(a >>> 0, i * 4)); // the address bytes as in the packet
  const v = Buffer.alloc(keys.length * 8);
  const count = new Uint32Array([keys.length]);
  check(raw.bpf_map_update_batch(fd, k, v, count, batchOpts(0n)) as number, 'fill', 'hash32_srcs');
  if (count[0] !== keys.length) throw new Error(`hash32_srcs: ${count[0]} of ${keys.length} keys written`);
}

/** Sum of the u64 hit counts of an anchor's map (hash32_srcs: 4-byte keys, trie4_srcs: 8). */
export function sumHits(fd: number, keySize: number): bigint {
  const key = Buffer.alloc(keySize);
  const next = Buffer.alloc(keySize);
  const val = Buffer.alloc(8);
  let sum = 0n;
  let prev: Buffer | null = null;
  while ((raw.bpf_map_get_next_key(fd, prev, next) as number) === 0) {
    next.copy(key);
    if ((raw.bpf_map_lookup_elem(fd, key, val) as number) === 0) sum += val.readBigUInt64LE(0);
    prev = key;
  }
  return sum;
}

/** Loads table netdev fwbench in namespace b: its ingress hook on ifb drops the sources in an interval set of the n prefixes (file: nftFile). */
export function loadNftSet(bed: NetnsPair, ifb: string, nftFile: string, N: number): void {
  const elems: string[] = [];
  for (let i = 0; i < N; i++) {
    const p = v4Prefix(i, N);
    const v = Buffer.from(p.bytes).readUInt32BE(0);
    elems.push(p.len === 32 ? dotted(v) : `${dotted(v)}/24`);
  }
  writeFileSync(
    nftFile,
    [
      'table netdev fwbench {',
      '  set blk {',
      '    type ipv4_addr',
      '    flags interval',
      `    elements = { ${elems.join(', ')} }`,
      '  }',
      '  chain ingress {',
      `    type filter hook ingress device "${ifb}" priority -500; policy accept;`,
      '    ip saddr @blk counter drop',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const t0 = Date.now();
  sh(bed, 'b', `nft -f ${nftFile}`);
  process.stderr.write(
    `# nft set of ${N} loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s (its hook sees only what XDP passes: nothing, in the XDP cases)\n`,
  );
}
