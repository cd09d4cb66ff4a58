// Pure: the IPv4 direct /24 index (direct24.ts) as a table's entries call
// for it - the word of an entry of length <= 24, the counts of longer
// entries per /16 and per /24 (what says which /16s need a block and which
// /24s a LONGER bit), and the whole index computed from every entry, which
// Direct24.rebuild() then stores where it differs. No map is touched here:
// the entries come from a visitor over the table's maps.

import { FW_D16_WORDS, FW_D24_LEN_SHIFT, FW_D24_LONGER, FW_D24_VERDICT_SHIFT, LAYOUT } from './abi.js';

/** Words per block. */
export const BW = LAYOUT.fw_d24_block.size / 4;

/** An entry of length <= 24 as the index stores it (0: none). */
export function d24Word(len: number, slot: number, verdict: number): number {
  return (((len + 1) << FW_D24_LEN_SHIFT) | (verdict << FW_D24_VERDICT_SHIFT) | slot) >>> 0;
}

/** Visits every entry of a table: its length, masked address (host order), counter slot and verdict. */
export type ForEachEntry4 = (fn: (len: number, a: number, slot: number, verdict: number) => void) => void;

/** Counts derived from the entries, carried across generations. */
export interface LongerCounts {
  /** Entries longer than /16 per /16 (exact). */
  readonly deep: Uint32Array;
  /** Entries longer than /24 per /24 of the /16s that have any (saturating at 255: LONGER then stays). */
  readonly longer: Map<number, Uint8Array>;
}

/** No entry counted yet. */
function emptyCounts(): LongerCounts {
  return { deep: new Uint32Array(FW_D16_WORDS), longer: new Map() };
}

/** Counts the entry (len, a) if it is longer than /16 (and per /24 if longer than /24). */
function countEntry(c: LongerCounts, len: number, a: number): void {
  if (len <= 16) return;
  c.deep[a >>> 16]!++;
  if (len <= 24) return;
  let per = c.longer.get(a >>> 16);
  if (!per) c.longer.set(a >>> 16, (per = new Uint8Array(256)));
  if (per[(a >>> 8) & 255]! < 255) per[(a >>> 8) & 255]!++;
}

/** The entries longer than /16 per /16 and longer than /24 per /24 of a table. */
export function countLonger(forEachEntry: ForEachEntry4): LongerCounts {
  const c = emptyCounts();
  forEachEntry((len, a) => countEntry(c, len, a));
  return c;
}

/** The index an entry set calls for: the /16 words, the words of the /16s that need blocks, the counts. */
export interface IndexPlan {
  readonly top: Uint32Array;
  readonly blocks: Map<number, Uint32Array>;
  readonly counts: LongerCounts;
}

/** The index as the entries say it should be: /16 answers, the words of the /16s that need blocks, the counts. */
export function computeIndex(forEachEntry: ForEachEntry4): IndexPlan {
  const counts = emptyCounts();
  const short: Array<[number, number, number]> = [];
  forEachEntry((len, a, slot, verdict) => {
    if (len <= 24) short.push([len, a, d24Word(len, slot, verdict)]);
    countEntry(counts, len, a);
  });
  // Shortest first: a longer entry overwrites the part of a shorter one it covers.
  short.sort((p, q) => p[0] - q[0]);
  const top = new Uint32Array(FW_D16_WORDS);
  const blocks = new Map<number, Uint32Array>();
  for (const [len, a, w] of short) {
    if (len <= 16) top.fill(w, a >>> 16, (a >>> 16) + 2 ** (16 - len));
  }
  for (let x = 0; x < FW_D16_WORDS; x++) if (counts.deep[x]! > 0) blocks.set(x, new Uint32Array(BW).fill(top[x]!));
  for (const [len, a, w] of short) {
    const x = a >>> 16;
    const words = blocks.get(x);
    if (len <= 16) {
      // Already in the initial fill of every block in its range.
      continue;
    }
    if (!words) continue;
    words.fill(w, (a >>> 8) & 255, ((a >>> 8) & 255) + 2 ** (24 - len));
  }
  for (const [x, per] of counts.longer) {
    const words = blocks.get(x)!;
    for (let i = 0; i < BW; i++) if (per[i]) words[i] = (words[i]! | FW_D24_LONGER) >>> 0;
  }
  return { top, blocks, counts };
}
