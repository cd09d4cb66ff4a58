// The count-min margin of one policy's sketch (bpf/include/fw_policy_abi.h),
// pure: from the first row of its cells (as mapped: tag, FW_POL_REPORTED |
// packets, bytes lo, bytes hi per cell, u32 each) and the tags of the current and previous
// window, the traffic N the window holds and the margin a group's estimate
// must pass over the limit to be reported.
//
//   'quantile' (what the agent writes): the least m such that at most
//       width / MARGIN_TAIL cells of the row hold more than m. The hash
//       seeds are secret and independent per row, so a group's cell in each
//       row is a random one: its estimate exceeds its own count by more than
//       m with probability <= MARGIN_TAIL^-rows (64^-4 = 6e-8) per window,
//       whatever the shape of the traffic. The larger of the current and the
//       previous window's (a window that just began holds little yet).
//   'count-min': the textbook bound, floor(e * N / width): the estimate
//       exceeds the true count by more than it with probability <= e^-rows
//       (1.8%) per group. Kept to compare (bench/respond/flood-compare.ts).

/** At most 1 cell in MARGIN_TAIL of a row may exceed the quantile margin. */
export const MARGIN_TAIL = 64;

export type MarginRule = 'quantile' | 'count-min';

export interface RowMargin {
  /** Packets (bytes) the window holds: every packet adds to one cell of each row. */
  readonly packets: number;
  readonly bytes: number;
  readonly marginPackets: number;
  readonly marginBytes: number;
}

const HIST = 256;
/** fw_pol_cell.packets without FW_POL_REPORTED. */
const PACKETS = 0x7fffffff;

/**
 * The least m with at most `tail` cells above it (rounded up to a histogram
 * bucket's upper edge: never below the exact value).
 */
function quantile(row: Uint32Array, tag: number, field: 1 | 2, max: number, tail: number): number {
  if (max === 0) return 0;
  const hist = new Uint32Array(HIST);
  const scale = HIST / (max + 1);
  for (let j = 0; j < row.length; j += 4) {
    if (row[j] !== tag) continue;
    const v = field === 1 ? row[j + 1]! & PACKETS : row[j + 2]! + row[j + 3]! * 2 ** 32;
    hist[Math.floor(v * scale)]!++;
  }
  let above = 0;
  for (let b = HIST - 1; b >= 0; b--) {
    if (above + hist[b]! > tail) return Math.ceil((b + 1) / scale) - 1;
    above += hist[b]!;
  }
  return 0;
}

/** One window's sums and largest cells (packets, bytes). */
function scan(row: Uint32Array, tag: number): [number, number, number, number] {
  let p = 0;
  let b = 0;
  let mp = 0;
  let mb = 0;
  for (let j = 0; j < row.length; j += 4) {
    if (row[j] !== tag) continue;
    const cp = row[j + 1]! & PACKETS;
    const cb = row[j + 2]! + row[j + 3]! * 2 ** 32;
    p += cp;
    b += cb;
    if (cp > mp) mp = cp;
    if (cb > mb) mb = cb;
  }
  return [p, b, mp, mb];
}

export function rowMargin(row: Uint32Array, cur: number, prev: number, rule: MarginRule, wantBytes: boolean): RowMargin {
  const width = row.length / 4;
  const windows = [cur, prev].map((tag) => ({ tag, s: scan(row, tag) }));
  const packets = Math.max(windows[0]!.s[0], windows[1]!.s[0]);
  const bytes = Math.max(windows[0]!.s[1], windows[1]!.s[1]);
  if (rule === 'count-min') {
    return {
      packets,
      bytes,
      marginPackets: Math.floor((Math.E * packets) / width),
      marginBytes: Math.floor((Math.E * bytes) / width),
    };
  }
  const tail = Math.floor(width / MARGIN_TAIL);
  let mp = 0;
  let mb = 0;
  for (const { tag, s } of windows) {
    mp = Math.max(mp, quantile(row, tag, 1, s[2], tail));
    if (wantBytes) mb = Math.max(mb, quantile(row, tag, 2, s[3], tail));
  }
  return { packets, bytes, marginPackets: mp, marginBytes: mb };
}
