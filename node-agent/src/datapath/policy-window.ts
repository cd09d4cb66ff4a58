// A detection policy's counting window in the kernel's clock (ABI 14,
// bpf/include/fw_policy_abi.h): the programs number windows by jiffies,
// epoch = (jiffies * mul) >> shift, mul the reciprocal of the window's
// length in jiffies (window_ns * HZ / 1e9, not always whole) scaled so that
// it lies in [2^23, 2^24]. Pure: the agent's side of the same arithmetic
// (the epoch whose cells a margin reads) and the kernel's numbers.

/** The kernel's numbers for one window length (fw_policy.window_mul, window_shift). */
export interface WindowRecip {
  readonly mul: number;
  readonly shift: number;
}

const MUL_MIN = 1n << 23n;
const U64 = (1n << 64n) - 1n;
/** The least shift the kernel takes (fw_pol_report keeps 16 bits of a window's fraction). */
const SHIFT_MIN = 16;

/**
 * mul = round(2^shift * 1e9 / (windowNs * hz)), with the least shift that
 * puts it at 2^23 or above (so at most 2^24, and within 2^-24 of the exact
 * reciprocal: a window lasts floor(w') or ceil(w') jiffies, w' = 2^shift /
 * mul, |w' / w - 1| <= 2^-24). A window under 2^-7 jiffy is refused.
 */
export function windowRecip(windowNs: bigint, hz: number): WindowRecip {
  if (windowNs <= 0n) throw new RangeError(`window ${windowNs} ns`);
  if (!Number.isInteger(hz) || hz <= 0) throw new RangeError(`HZ ${hz}`);
  const den = windowNs * BigInt(hz);
  for (let shift = 0; shift < 64; shift++) {
    const mul = ((1_000_000_000n << BigInt(shift)) * 2n + den) / (2n * den);
    if (mul < MUL_MIN) continue;
    if (shift < SHIFT_MIN) break;
    return { mul: Number(mul), shift };
  }
  throw new RangeError(`window ${windowNs} ns at HZ ${hz}: out of the kernel's range`);
}

/** The window the kernel counts jiffies `jiffies` in (the u64 product, as the program computes it). */
export function windowEpoch(jiffies: bigint, r: WindowRecip): bigint {
  return ((jiffies * BigInt(r.mul)) & U64) >> BigInt(r.shift);
}
