// The arithmetic of side-by-side measurement (pure): which side goes first
// in each round, how a total is split into rounds, percentiles and medians.
// The plaintext and TLS control planes are measured in alternating rounds
// (ABBA: plain,tls | tls,plain | plain,tls ...) so that a change in machine
// load falls on both alike, and compared by the median of per-round ratios.

export type SideName = 'plain' | 'tls';

/** The order of the sides in round `round` (0-based): ABBA, so neither always goes first. */
export function roundOrder<T>(sides: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...sides] : [...sides].reverse();
}

/** `total` split into `rounds` parts differing by at most one (the larger first); no empty part. */
export function splitEven(total: number, rounds: number): number[] {
  const n = Math.max(1, Math.min(rounds, total));
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}

/** The nearest-rank percentile of ascending `sorted` (NaN when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Per round a / b, and their median: the side-by-side figure. */
export function roundRatios(a: readonly number[], b: readonly number[]): { perRound: number[]; median: number } {
  const perRound = a.map((x, i) => x / b[i]!);
  return { perRound, median: median(perRound) };
}
