// npm run bench:dataplane [-- --rounds N] [--no-mpps] [--no-pps] [--traffic rewrite,stamped,one]
//                          [--prog-stats] [--compare OBJ[,OBJ...]] [--compare-pinned OBJ@DIR[,OBJ@DIR...]]
//                          [--gen-batch N] [--tx-shift k]
//                          [--no-paced] [--paced-trials N] [--cases REGEX] [--no-idle-poll]
//                          [--compare-live OBJ[,OBJ...]] [--variants] [--variant-kinds K[,K...]]
//                          [--pps-cases REGEX]
//
// Prints one JSON object per line: {"metric": ..., "value": ..., ...context}.
//
// 1. ns_per_packet.*: BPF_PROG_TEST_RUN per packet over rotating sources (dataplane/per-packet.ts);
//    with --variants, noise.*: the A/A control's spread beside each variant's ratios
// 2. seconds.load_1m_prefixes: 1,000,000 prefixes into a fresh table (dataplane/load-time.ts)
// 3. mpps.*, mpps_cpu.*, anchor_fit.*: drop rate into a veth peer, fleetwall beside bare XDP and the
//    anchors (dataplane/drop-rates.ts: sinks.ts, anchors.ts, xdp-filter.ts, generator.ts, receiver.ts)
// 4. mpps_paced.*: the same sinks with the generator paced (dataplane/paced.ts)
// Flags: dataplane/options.ts; the figures: dataplane/report.ts. SIGINT, SIGTERM
// or SIGHUP: pins, namespaces, children are cleaned up, then it ends by that
// signal (lib/interrupt.ts).

import { execFileSync } from 'node:child_process';
import { removePins } from '../node-agent/src/datapath/bpf-datapath.js';
import { dropRates } from './dataplane/drop-rates.js';
import { loadTime } from './dataplane/load-time.js';
import { DO_MPPS, DO_PPS, ROUNDS } from './dataplane/options.js';
import { perPacket } from './dataplane/per-packet.js';
import { emit, load } from './dataplane/report.js';
import { datapaths, objects, pinDirs } from './dataplane/sets.js';
import { runBench } from './lib/interrupt.js';

async function main(): Promise<void> {
  emit('bench.context', 0, {
    cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    loadavg: load(),
    rounds: ROUNDS,
  });
  try {
    if (DO_PPS) {
      await perPacket();
      await loadTime();
    }
    if (DO_MPPS) await dropRates();
  } finally {
    for (const o of objects.splice(0)) o.close();
    for (const dp of datapaths.splice(0)) dp.close();
    for (const d of pinDirs.splice(0)) removePins(d);
  }
  emit('bench.done', 0, { loadavg: load() });
}

runBench('bench:dataplane', main);
