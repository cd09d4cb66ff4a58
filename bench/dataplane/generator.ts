// Steering the live generator (bench/lib/xdp-gen.ts) through its pinned
// maps while it runs: traffic mode, pacing, the source table, and the count
// of frames it has stamped.
import { check, closeFd, possibleCpus, raw } from '../../node-agent/src/datapath/libbpf.js';
import { TX_SHIFT, type Traffic } from './options.js';

/** The generator's control word (struct gen_cfg): traffic mode and pacing. */
let stampGen = 0;
const gen = { stamp: 0, gapPs: 0 };
function writeGenCtl(pin: string): void {
  const fd = check(raw.bpf_obj_get(`${pin}_ctl`) as number, 'open pinned map', `${pin}_ctl`);
  try {
    const val = Buffer.alloc(16);
    val.writeUInt32LE(TX_SHIFT, 0);
    val.writeUInt32LE(gen.stamp, 4);
    val.writeUInt32LE(gen.gapPs, 8);
    check(raw.bpf_map_update_elem(fd, Buffer.alloc(4), val, 0n) as number, 'set', `${pin}_ctl`);
  } finally {
    closeFd(fd);
  }
}

/** Sets the traffic mode (unpaced); stamped mode gets a new generation so every page is stamped again. */
export function setTraffic(pin: string, mode: Traffic): void {
  gen.stamp = mode === 'rewrite' ? 0 : ++stampGen;
  gen.gapPs = 0;
  writeGenCtl(pin);
}

/** Paces the generator at rate Mpps (0: as fast as it can). */
export function setRate(pin: string, mpps: number): void {
  gen.gapPs = mpps > 0 ? Math.round(1e6 / mpps) : 0;
  writeGenCtl(pin);
}

/** Frames the generator has stamped so far (all CPUs). */
export function stamps(pin: string): number {
  const fd = check(raw.bpf_obj_get(`${pin}_stamps`) as number, 'open pinned map', `${pin}_stamps`);
  try {
    const val = Buffer.alloc(8 * possibleCpus());
    check(raw.bpf_map_lookup_elem(fd, Buffer.alloc(4), val) as number, 'read', `${pin}_stamps`);
    let n = 0n;
    for (let i = 0; i < val.length; i += 8) n += val.readBigUInt64LE(i);
    return Number(n);
  } finally {
    closeFd(fd);
  }
}

export function writeSources(pin: string, sources: Uint8Array[]): void {
  const fd = check(raw.bpf_obj_get(pin) as number, 'open pinned map', pin);
  try {
    const key = Buffer.alloc(4);
    const val = Buffer.alloc(20);
    sources.forEach((a, i) => {
      key.writeUInt32LE(i, 0);
      val.fill(0);
      val.set(a, 0);
      check(raw.bpf_map_update_elem(fd, key, val, 0n) as number, 'fill', pin);
    });
  } finally {
    closeFd(fd);
  }
}
