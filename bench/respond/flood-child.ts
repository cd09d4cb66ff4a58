// bench:respond's spoofed flood, in a child process (a real flood is the
// kernel's work, not the agent's: the bench's own process, which hosts the
// nodes and the control plane, must not spend its time sending it). Runs
// the node's pinned XDP program on `sources` random sources, each sent
// `limit + 1` times (every one over the threshold), and prints "done".
import { raw } from '../../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../../node-agent/src/datapath/test-run.js';
import { ipFrame } from '../../test/support/frames.js';

const [progPath, sourcesText, limitText] = process.argv.slice(2);
const fd = raw.bpf_obj_get(progPath!) as number;
if (fd < 0) throw new Error(`cannot open ${progPath}`);
const f = ipFrame('10.0.0.1', '192.0.2.1');
const sources = Number(sourcesText);
const per = Number(limitText) + 1;
for (let s = 0; s < sources; s++) {
  f.writeUInt32BE((0x0a000000 + ((s * 2654435761) >>> 8)) >>> 0, 14 + 12);
  for (let k = 0; k < per; k++) progTestRun(fd, f);
}
process.stdout.write('done\n');
