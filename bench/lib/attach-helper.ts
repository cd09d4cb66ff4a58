// Benchmark helper, run inside a namespace (nsenter --net): attaches an XDP
// program to an interface there and pins the link, then exits.
//   attach-helper.ts fleetwall <pinDir> <ifname>
//   attach-helper.ts prog <progPin> <ifname> <linkPin>

import { openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BPF_XDP, XDP_FLAGS_DRV_MODE, check, closeFd, raw } from '../../node-agent/src/datapath/libbpf.js';
import { linkCreate } from '../../node-agent/src/datapath/links.js';
import { DatapathError } from '../../node-agent/src/datapath/errors.js';

const [mode, a, ifname, linkPin] = process.argv.slice(2);
if (mode === 'fleetwall') {
  const dp = openDatapath({ pinDir: a! });
  const r = dp.attach(ifname!, { egress: false, xdpMode: 'native' });
  dp.close();
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else if (mode === 'prog') {
  const prog = check(raw.bpf_obj_get(a) as number, 'open pinned program', a!);
  const ifindex = raw.if_nametoindex(ifname) as number;
  const res = linkCreate(prog, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE);
  if (res.fd < 0) throw new DatapathError('attach xdp', ifname!, res.errno);
  check(raw.bpf_obj_pin(res.fd, linkPin) as number, 'pin link', linkPin!);
  closeFd(res.fd);
  closeFd(prog);
  process.stdout.write('{"ok":true}\n');
} else {
  throw new Error(`unknown mode ${mode}`);
}
