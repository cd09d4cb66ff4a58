// The kernel's clocks as the detection policies count with them (ABI 14):
// the jiffies now and HZ, from bpf/obj/fw_clock.bpf.o run with
// BPF_PROG_TEST_RUN (bpf_jiffies64() and bpf_ktime_get_coarse_ns() written
// into the frame). The margins read the cells of the window the jiffies are
// in (policy-maps.ts); a window's length in jiffies needs HZ
// (policy-window.ts), which the kernel does not publish: it is measured once,
// the time between jiffies' edges, and taken to the nearest HZ a kernel is
// built with.

import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { type LoadedObject, loadObject } from './bpf-object.js';
import { DatapathError } from './errors.js';
import { progTestRun } from './test-run.js';

export const CLOCK_OBJECT = 'fw_clock.bpf.o';
export const CLOCK_PROG = 'fw_clock';

/** The kernel's HZ choices (Kconfig's CONFIG_HZ_100/250/300/1000). */
export const HZ_CHOICES = [100, 250, 300, 1000] as const;

/** One reading of the kernel's clocks. */
export interface KernelTime {
  readonly jiffies: bigint;
  /** CLOCK_MONOTONIC_COARSE, ns (the clock of a hit's at_ns). */
  readonly coarseNs: bigint;
}

/** The clock the policy maps count windows by. */
export interface KernelClock {
  now(): KernelTime;
  /** The kernel's HZ (measured at the first call, then kept). */
  hz(): number;
  close(): void;
}

/**
 * HZ from `ticks` jiffies and `ns` ns of the coarse clock between two
 * readings (each pair read in one run of the program): the coarse clock moves
 * at the tick, by one tick's ns (NTP's slew: under 0.05%), so the ratio is
 * HZ; the nearest of HZ_CHOICES if within 1% of it, else undefined (a pair
 * read between the jiffies' update and the clock's, or a tick whose clock
 * update came a tick late: read again).
 */
export function hzOf(ticks: bigint, ns: bigint): number | undefined {
  if (ticks <= 0n || ns <= 0n) return undefined;
  const est = (Number(ticks) * 1e9) / Number(ns);
  const best = HZ_CHOICES.reduce((a, b) => (Math.abs(b - est) < Math.abs(a - est) ? b : a));
  return Math.abs(est / best - 1) <= 0.01 ? best : undefined;
}

/** Jiffies between the two readings of a try; tries before giving up. */
const HZ_TICKS = 4n;
const TRIES = 10;

/** Blocks this thread for `ms` ms (the HZ measurement, once per process: a few ticks). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class BpfKernelClock implements KernelClock {
  private readonly frame = Buffer.alloc(64);
  private measured: number | undefined;

  private constructor(private readonly obj: LoadedObject) {}

  /** Loads fw_clock.bpf.o from objDir (its own object: no maps, attached nowhere). */
  static open(objDir: string): BpfKernelClock {
    return new BpfKernelClock(loadObject(join(objDir, CLOCK_OBJECT), { programs: [CLOCK_PROG] }));
  }

  now(): KernelTime {
    const r = progTestRun(this.obj.progFd(CLOCK_PROG), this.frame, { wantDataOut: true }, CLOCK_PROG);
    const out = r.dataOut!;
    return { jiffies: out.readBigUInt64LE(0), coarseNs: out.readBigUInt64LE(8) };
  }

  hz(): number {
    this.measured ??= this.measureHz();
    return this.measured;
  }

  close(): void {
    this.obj.close();
  }

  /** Two readings HZ_TICKS jiffies apart or more (16 ms at HZ 250, 40 ms at HZ 100), hzOf of them; tried again if it is none. */
  private measureHz(): number {
    for (let i = 0; i < TRIES; i++) {
      const a = this.now();
      let b = a;
      for (let waited = 0; b.jiffies - a.jiffies < HZ_TICKS && waited < 1000; waited += 5) {
        pause(5);
        b = this.now();
      }
      const hz = hzOf(b.jiffies - a.jiffies, b.coarseNs - a.coarseNs);
      if (hz) return hz;
    }
    throw new DatapathError('measure HZ', CLOCK_PROG, osConstants.errno.ETIMEDOUT, 'the jiffies did not tick at a known HZ');
  }
}
