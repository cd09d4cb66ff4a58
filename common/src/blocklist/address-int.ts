// Addresses as unsigned integers (bigint), for range arithmetic. Pure.
import { type Address, type Family, familyBits, type Prefix } from '../cidr.js';

export function addressToBigint(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigintToBytes(value: bigint, family: Family): Uint8Array {
  const out = new Uint8Array(family === 4 ? 4 : 16);
  let v = value;
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function addressFromBigint(value: bigint, family: Family): Address {
  return { family, bytes: bigintToBytes(value, family) };
}

/** First and last address of a prefix, as integers. */
export function prefixBounds(p: Prefix): { first: bigint; last: bigint } {
  const first = addressToBigint(p.bytes);
  const host = BigInt(familyBits(p.family) - p.len);
  return { first, last: first + (1n << host) - 1n };
}
