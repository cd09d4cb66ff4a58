// bench:dataplane, paced rates:
//

// 4. mpps_paced.*: after each flood window above, the same sink with the
//    generator paced (xdp_gen spins on ktime to one frame per gap): the most
//    the receiver took over a golden-section search of offered rates from 0.8x
//    to 2.5x the flood's received rate (--paced-trials, default 10 trials of
//    250 ms; the flood counts as a candidate). The flood overloads
//    veth (the generator keeps meeting a full ring, the test-run page pool
//    churns pages) and that costs the receiver more the slower the sink is;
//    paced, it does not. Counters for the trials come from /proc/PID/net/dev
//    of the generator (no process start inside a window). During the
//    drop-rate phase this process and its children run on CPU0 (the
//    receiver's CPU1 is left to the NAPI thread) and idle CPUs poll instead of
//    halting (/dev/cpu_dma_latency held at 0; --no-idle-poll turns it off).
//    Each paced figure carries receiver_busy (rate x the NAPI thread's CPU
//    time per packet at the best trial: below 1, the generator set the rate,
//    not the sink) and capacity_x_bare (bare's CPU time per packet over the
//    sink's, per round: what each would drop with a CPU of its own).
//    --no-paced skips the search; --cases REGEX runs only the matching sinks
//    (the ratio bases always run). --compare-live OBJ[,OBJ...] adds sinks on
//    the fleetwall 100k maps, attached the same way: this build's XDP program
//    (mpps.fleetwall_100k_a_drop) and each OBJ's (mpps.fleetwall_100k_b_drop,
//    _c_, ...), each with x_a (its per-round ratio to A): A/B of program
//    changes under live traffic.

import { PACED_MAX, PACED_SETTLE_MS, PACED_TRIAL_MS, PACED_TRIALS } from './options.js';
import { setRate } from './generator.js';
import { cpuTimeNs, progStats, senderCounters } from './receiver.js';
import { sleep } from '../lib/interrupt.js';

/** One paced trial: the rate asked for, the rate received and offered, the receiver's and the program's ns per packet. */
export type Trial = { target: number; mpps: number; offered: number; cpuNs: number; progNs: number };

/** The paced search for the generator pinned at srcPin (process genPid, sending on ifa). */
export function pacer(srcPin: string, genPid: number, ifa: string) {
  /** One paced window: the rate the generator offered and the rate the receiver took. */
  const trial = async (target: number, pids: string[]): Promise<Trial> => {
    setRate(srcPin, target);
    await sleep(PACED_SETTLE_MS);
    const ps0 = progStats();
    const cpu0 = cpuTimeNs(pids);
    const c0 = senderCounters(genPid, ifa);
    await sleep(PACED_TRIAL_MS);
    const c1 = senderCounters(genPid, ifa);
    const cpu1 = cpuTimeNs(pids);
    const ps1 = progStats();
    const secs = Number(c1.at - c0.at) / 1e9;
    const rx = c1.rx - c0.rx;
    const lost = c1.lost - c0.lost;
    return {
      target,
      mpps: rx / secs / 1e6,
      offered: (rx + lost) / secs / 1e6,
      cpuNs: (cpu1 - cpu0) / Math.max(1, rx),
      progNs: (ps1.ns - ps0.ns) / Math.max(1, ps1.cnt - ps0.cnt),
    };
  };
  /**
   * The paced rate: the most the receiver takes when the generator is paced
   * instead of flooding. The received rate rises with the offered rate up to
   * what the sink can take, then falls (overload: the generator keeps hitting
   * the full veth ring, the page pool churns), so its peak is found by a
   * golden-section search over the offered rate from 0.8x the flood's
   * received rate to 2.5x it (or the flood's offered rate, if higher). The unpaced window counts
   * as a candidate (a sink faster than the generator peaks there).
   * Not a zero-loss rate: this VM stalls a CPU for 50-250 us several
   * times a second, and the 256-frame veth ring then loses 0.1-2% at any
   * rate above ~1.5 Mpps, even into a bare drop.
   */
  const pacedRate = async (
    unpaced: { mpps: number; offered: number },
    pids: string[],
  ): Promise<{ paced: number; best?: Trial; trials: Trial[] }> => {
    const trials: Trial[] = [];
    const g = (Math.sqrt(5) - 1) / 2;
    // The flood's offered rate can be below the sink's peak (the full ring slows the
    // generator): search up to 2.5x what the flood delivered, at most PACED_MAX.
    let a = unpaced.mpps * 0.8;
    let b = Math.min(PACED_MAX, Math.max(unpaced.offered, unpaced.mpps * 2.5));
    const at = async (x: number) => {
      const t = await trial(x, pids);
      trials.push(t);
      return t.mpps;
    };
    try {
      let x1 = b - g * (b - a);
      let x2 = a + g * (b - a);
      let f1 = await at(x1);
      let f2 = await at(x2);
      for (let i = 2; i < PACED_TRIALS; i++) {
        if (f1 >= f2) {
          b = x2;
          x2 = x1;
          f2 = f1;
          x1 = b - g * (b - a);
          f1 = await at(x1);
        } else {
          a = x1;
          x1 = x2;
          f1 = f2;
          x2 = a + g * (b - a);
          f2 = await at(x2);
        }
      }
    } finally {
      setRate(srcPin, 0);
    }
    const best = trials.reduce((m, t) => (t.mpps > m.mpps ? t : m));
    return { paced: Math.max(unpaced.mpps, best.mpps), best: best.mpps > unpaced.mpps ? best : undefined, trials };
  };
  return { pacedRate };
}
