// Addresses as unsigned integers (bigint), for range arithmetic. Pure.
import type { Family } from '../cidr.js';

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
