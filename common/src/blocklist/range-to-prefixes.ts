// An address range [start, end] as the minimal exact set of CIDR prefixes:
// repeatedly take the largest aligned block that starts at `start` and does
// not pass `end`. At most 2 * (address bits) - 2 prefixes. Pure.
import { type Address, familyBits, type Prefix } from '../cidr.js';
import { addressToBigint, bigintToBytes } from './address-int.js';

function trailingZeros(v: bigint, max: number): number {
  if (v === 0n) return max;
  let n = 0;
  while (n < max && ((v >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

function floorLog2(v: bigint): number {
  return v.toString(2).length - 1;
}

/** Throws RangeError if the families differ or start is after end (callers check first). */
export function rangeToPrefixes(start: Address, end: Address): Prefix[] {
  if (start.family !== end.family) throw new RangeError('range endpoints are of different families');
  const family = start.family;
  const bits = familyBits(family);
  let s = addressToBigint(start.bytes);
  const e = addressToBigint(end.bytes);
  if (s > e) throw new RangeError('range start is after its end');
  const out: Prefix[] = [];
  while (s <= e) {
    const k = Math.min(trailingZeros(s, bits), floorLog2(e - s + 1n));
    out.push({ family, bytes: bigintToBytes(s, family), len: bits - k });
    s += 1n << BigInt(k);
  }
  return out;
}
