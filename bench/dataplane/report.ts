// What bench:dataplane prints: one JSON object per line on stdout
// ({"metric": ..., "value": ..., ...context}), and the drop-rate figures of
// every sink and traffic (mpps.*, mpps_paced.*, mpps_cpu.*, anchor_fit.*)
// from the windows' samples, as medians and per-round ratios.
import { execFileSync } from 'node:child_process';
import { ANCHORS, DO_PACED, PACED_TRIAL_MS, PACED_TRIALS, PROG_STATS, TRAFFIC, type Traffic } from './options.js';
import type { Trial } from './paced.js';
import type { Case } from './sinks.js';

export function emit(metric: string, value: number, ctx: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: Math.round(value * 1000) / 1000, ...ctx })}\n`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The q-quantile (0..1) of xs, by linear interpolation between order statistics. */
export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const p = (s.length - 1) * q;
  const lo = Math.floor(p);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (p - lo);
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * One line per measured case: the A/A control's per-round ratios (this build loaded twice, `aa` over
 * `a`, round by round), their spread (value: p90 - p10; and min, max, median), and each variant's
 * per-round ratios to this build beside it (median, p10, p90, and the rounds in which the variant
 * was faster, slower or equal; in the A/A these count how often two identical programs differ).
 * A variant whose median ratio lies outside the A/A's p10..p90 moved by more than the noise of one
 * round; `ab.*.per_round` lets a reader apply any other test.
 */
export function noiseReport(metric: string, a: number[], aa: number[], variants: Array<[string, number[]]>): void {
  const ratios = (xs: number[]) => xs.map((x, i) => r3(x / a[i]!));
  const stats = (rs: number[]) => ({
    median: r3(median(rs)),
    p10: r3(quantile(rs, 0.1)),
    p90: r3(quantile(rs, 0.9)),
    min: Math.min(...rs),
    max: Math.max(...rs),
    faster: rs.filter((r) => r < 1).length,
    slower: rs.filter((r) => r > 1).length,
    equal: rs.filter((r) => r === 1).length,
  });
  const noise = ratios(aa);
  const n = stats(noise);
  emit(metric, n.p90 - n.p10, {
    what: 'spread (p90 - p10) of the A/A per-round ratios: this build loaded twice, interleaved',
    aa: { ...n, per_round: noise },
    ab: Object.fromEntries(
      variants.map(([name, xs]) => {
        const rs = ratios(xs);
        const st = stats(rs);
        return [name, { ...st, beyond_noise: st.median < n.p10 || st.median > n.p90, per_round: rs }];
      }),
    ),
  });
}

export function load(): string {
  try {
    return execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

/** One window of one sink and traffic: flooded, then (unless --no-paced) paced. */
export type Sample = {
  mpps: number;
  offered: number;
  loss: number;
  cpuNs: number;
  util: number;
  progNs: number;
  stamps: number;
  paced: number;
  pacedCpuNs: number;
  pacedProgNs: number;
  trials: Trial[];
};

/** Samples are kept per case and traffic mode. */
export const key = (metric: string, t: Traffic) => `${metric}@${t}`;

/** The drop-rate figures of the sinks that ran (`ran`), from their samples (by key(metric, traffic)). */
export function reportDropRates(samples: Map<string, Sample[]>, ran: Case[]): void {
  const of = (m: string) => samples.get(m)!;
  const ratio = (m: string, base: string, f: (s: Sample) => number, inv = false) =>
    Math.round(median(of(m).map((s, i) => (inv ? f(of(base)[i]!) / f(s) : f(s) / f(of(base)[i]!)))) * 100) / 100;
  const named = (metric: string, t: Traffic) => (t === 'rewrite' ? metric : `${metric}_${t}`);
  // Against the real xdp-filter, when it ran, and (--compare-live) against build A.
  const peers = (m: string, t: Traffic, f: (s: Sample) => number, inverse = false) => ({
    ...(samples.has(key('mpps.xdp_filter_10k_drop', t))
      ? { x_xdp_filter: ratio(key(m, t), key('mpps.xdp_filter_10k_drop', t), f, inverse) }
      : {}),
    // --compare-live: every other build against this one (A).
    ...(/^mpps\.fleetwall_100k_[b-z]_drop$/.test(m) ? { x_a: ratio(key(m, t), key('mpps.fleetwall_100k_a_drop', t), f, inverse) } : {}),
  });
  for (const t of TRAFFIC) {
    const k = (m: string) => key(m, t);
    for (const c of ran) {
      const xs = of(k(c.metric));
      emit(named(c.metric, t), median(xs.map((s) => s.mpps)), {
        ...c.ctx,
        traffic: t,
        x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.mpps),
        x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.mpps),
        x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.mpps),
        x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.mpps),
        ...peers(c.metric, t, (s) => s.mpps),
        offered_mpps: Math.round(median(xs.map((s) => s.offered)) * 100) / 100,
        receiver_busy: Math.round(median(xs.map((s) => s.util)) * 100) / 100,
        ...(t === 'rewrite' ? {} : { frames_stamped: Math.round(median(xs.map((s) => s.stamps))) }),
        rounds: xs.length,
        all: xs.map((s) => Math.round(s.mpps * 100) / 100),
      });
    }
    // The paced rate of each sink, ratios per round.
    if (DO_PACED) {
      for (const c of ran) {
        const xs = of(k(c.metric));
        emit(named(c.metric, t).replace(/^mpps\./, 'mpps_paced.'), median(xs.map((s) => s.paced)), {
          ...c.ctx,
          traffic: t,
          method: `the most the receiver took over paced offered rates (golden-section search, ${PACED_TRIALS} trials of ${PACED_TRIAL_MS} ms, and the flood)`,
          x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.paced),
          x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.paced),
          x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.paced),
          x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.paced),
          ...peers(c.metric, t, (s) => s.paced),
          over_flood: Math.round(median(xs.map((s) => s.paced / s.mpps)) * 100) / 100,
          // At the best trial: the receiving NAPI thread's CPU time per packet (and, --prog-stats, the sink's own).
          receiver_ns_per_packet: Math.round(median(xs.map((s) => s.pacedCpuNs))),
          // The share of CPU1 the NAPI thread used at that rate: below 1, the generator, not the sink, set it.
          receiver_busy: Math.round(median(xs.map((s) => (s.paced * s.pacedCpuNs) / 1000)) * 100) / 100,
          // The sink's capacity on one CPU against bare's (receiver ns per packet at the best trials, per round).
          capacity_x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.pacedCpuNs, true),
          ...(PROG_STATS && c.xdp ? { in_program_ns: Math.round(median(xs.map((s) => s.pacedProgNs))) } : {}),
          rounds: xs.length,
          all: xs.map((s) => Math.round(s.paced * 100) / 100),
        });
      }
    }
    // The same windows by the receiver's CPU time per packet: what one CPU that only ran
    // the receive path would drop (independent of how much of CPU1 the other tenants took).
    for (const c of ran) {
      const xs = of(k(c.metric));
      const ns = median(xs.map((s) => s.cpuNs));
      emit(named(c.metric, t).replace(/^mpps\./, 'mpps_cpu.'), 1000 / ns, {
        ...c.ctx,
        traffic: t,
        receiver_ns_per_packet: Math.round(ns),
        x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.cpuNs, true),
        x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.cpuNs, true),
        x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.cpuNs, true),
        x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.cpuNs, true),
        ...peers(c.metric, t, (s) => s.cpuNs, true),
        ...(PROG_STATS && c.xdp ? { in_program_ns: Math.round(median(xs.map((s) => s.progNs))) } : {}),
        rounds: xs.length,
        all_ns: xs.map((s) => Math.round(s.cpuNs)),
      });
    }
    // How closely this traffic reproduces the published anchors (the x bare figures for the
    // same kinds of sink): the mean distance of our ratios from theirs, and fleetwall beside them.
    const rate = (s: Sample) => (DO_PACED ? s.paced : s.mpps);
    const pairs = Object.entries(ANCHORS)
      .filter(([m]) => samples.has(k(m)))
      .map(([m, a]) => ({ sink: m, measured: ratio(k(m), k('mpps.xdp_bare_drop'), rate), anchor: a }));
    if (pairs.length && samples.has(k('mpps.fleetwall_100k_drop'))) {
      emit(`anchor_fit.${t}`, Math.round((pairs.reduce((x, p) => x + Math.abs(p.measured - p.anchor), 0) / pairs.length) * 1000) / 1000, {
        traffic: t,
        unit: 'mean |measured - anchor| of x bare (0 = this traffic reproduces the published figures)',
        rate: DO_PACED ? 'paced' : 'flooded',
        pairs,
        fleetwall_100k_x_bare: ratio(k('mpps.fleetwall_100k_drop'), k('mpps.xdp_bare_drop'), rate),
      });
    }
  }
}
