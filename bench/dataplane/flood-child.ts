// The CPU-pinned side of bench:dataplane --variants' flood: runs each pinned
// program (argv: pins, rounds, start time) with BPF_PROG_TEST_RUN, one run
// per 40 ms step starting at the given time (so two such processes on two
// CPUs run the same program at the same moment), and prints the ns per
// packet of every run as JSON ([program][round]).
import { check, raw } from '../../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../../node-agent/src/datapath/test-run.js';

const STEP_MS = 40;
const REPEAT = 1_000_000;
const [pins, rounds, startAt] = process.argv.slice(2);
const fds = pins!.split(',').map((p) => check(raw.bpf_obj_get(p) as number, 'open pinned program', p));
const frame = Buffer.alloc(64);
frame.writeUInt16BE(0x0800, 12);
frame[14] = 0x45;
frame.writeUInt16BE(50, 16);
frame[22] = 64;
frame[23] = 17;
frame.set([192, 0, 2, 254], 30);
const out: number[][] = fds.map(() => []);
let step = 0;
for (let r = 0; r < Number(rounds); r++) {
  for (let v = 0; v < fds.length; v++, step++) {
    const t = Number(startAt) + step * STEP_MS;
    while (Date.now() < t) {
      /* wait for the step's start (both processes) */
    }
    out[v]!.push(progTestRun(fds[v]!, frame, { repeat: REPEAT }).durationNs);
  }
}
process.stdout.write(`${JSON.stringify(out)}\n`);
