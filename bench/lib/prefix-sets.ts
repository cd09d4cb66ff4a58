// Deterministic prefix sets for the data-plane benchmark: mixed /32 + /24
// (IPv4) and /128 + /48 (IPv6), spread out (not contiguous) so interval sets
// and tries see realistic shapes, plus source addresses that hit or miss them.

import type { Prefix } from '../../common/src/cidr.js';
import type { KernelEntry } from '../../node-agent/src/datapath/datapath.js';

export function v4Bytes(v: number): Uint8Array {
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

export function dotted(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

const BASE32 = 0x0b000000; // 11.0.0.0, every 3rd address
const BASE24 = 0x10000000; // 16.0.0.0, every other /24

/** i-th prefix of an IPv4 set of n: the first half /32s, the second half /24s. */
export function v4Prefix(i: number, n: number): Prefix {
  const half = Math.floor(n / 2);
  if (i < half) return { family: 4, bytes: v4Bytes(BASE32 + i * 3), len: 32 };
  return { family: 4, bytes: v4Bytes((BASE24 + (i - half) * 512) >>> 0), len: 24 };
}

/** i-th prefix of an IPv6 set of n (n/2 <= 65536): /128s under 2001:db9::/32, /48s under 2001:db8::/32. */
export function v6Prefix(i: number, n: number): Prefix {
  const half = Math.floor(n / 2);
  const b = new Uint8Array(16);
  b.set([0x20, 0x01, 0x0d, 0xb8]);
  if (i < half) {
    b[3] = 0xb9;
    const v = (i * 5) >>> 0;
    b.set([0xaa, 0, 0, 0, 0, 0, 0, 0, v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff], 4);
    return { family: 6, bytes: b, len: 128 };
  }
  const j = i - half;
  b[4] = (j >>> 8) & 0xff;
  b[5] = j & 0xff;
  return { family: 6, bytes: b, len: 48 };
}

/** A deterministic u32 sequence (the Numerical Recipes LCG): the same sets on every run. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
}

/**
 * `draws` picks from `sources` in a random order that never repeats a short cycle: unlike a rotation
 * through the sources, a branch predictor cannot learn which path each packet takes.
 */
export function randomOrder(sources: Uint8Array[], draws: number): Uint8Array[] {
  const rnd = lcg(777);
  const out: Uint8Array[] = [];
  for (let i = 0; i < draws; i++) out.push(sources[(rnd() >>> 8) % sources.length]!);
  return out;
}

export function entries(family: 4 | 6, n: number): KernelEntry[] {
  const out: KernelEntry[] = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = {
      direction: 'ingress',
      prefix: family === 4 ? v4Prefix(i, n) : v6Prefix(i, n),
      action: 'deny',
      mode: 'enforce',
      slot: i % 1024,
    };
  }
  return out;
}

/** `count` source addresses inside the set (half from /32 or /128 entries, half inside the shorter ones). */
export function hitSources(family: 4 | 6, n: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const rnd = lcg(0x9e3779b9);
  const half = Math.floor(n / 2);
  for (let k = 0; k < count; k++) {
    const long = k % 2 === 0;
    const i = long ? rnd() % half : half + (rnd() % (n - half));
    const p = family === 4 ? v4Prefix(i, n) : v6Prefix(i, n);
    const a = new Uint8Array(p.bytes);
    if (!long) {
      if (family === 4) a[3] = rnd() & 0xff;
      else for (let b = 6; b < 16; b++) a[b] = rnd() & 0xff;
    }
    out.push(a);
  }
  return out;
}

/**
 * `count` IPv4 sources that match no entry of the set of n but lie next to
 * its entries (the same /16 and the lengths of that /16 populated, as in a
 * large real blocklist): half beside a /32 (inside a /24 that holds /32s:
 * every length is probed), half in the unlisted /24 between two listed ones.
 */
export function nearMissSources(n: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const rnd = lcg(0x85ebca6b);
  const half = Math.floor(n / 2);
  for (let k = 0; k < count; k++) {
    const v = k % 2 === 0 ? BASE32 + (rnd() % half) * 3 + 1 + (rnd() & 1) : BASE24 + (rnd() % (n - half)) * 512 + 256 + (rnd() & 0xff);
    out.push(v4Bytes(v >>> 0));
  }
  return out;
}

/** `count` IPv4 sources outside every set above (100.64.0.0/10). */
export function missSources(count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let k = 0; k < count; k++) out.push(v4Bytes((0x64400000 + k * 7919) >>> 0));
  return out;
}
