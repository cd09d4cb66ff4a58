// Benchmark helper, run inside a namespace (nsenter --net): attaches XDP
// programs to an interface there.
//   attach-helper.ts fleetwall <pinDir> <ifname>             attach, print the result, exit
//   attach-helper.ts prog <progPin> <ifname> <linkPin>       attach a pinned program (native), pin the link, exit
//   attach-helper.ts serve <ifname>                          JSON requests on stdin, one JSON reply line each:
//     {op:'fleetwall', pinDir} | {op:'unfleetwall', pinDir}  Datapath.attach(ifname, native, no egress) / detach
//     {op:'prog', pin, linkPin} | {op:'unprog', linkPin}     a pinned program by a native XDP link / detach it
//     {op:'mode'}                                            XDP attach mode now (bpf_xdp_query)
// Serving keeps the datapaths open, so a sink swap costs one attach, not a process start. The datapaths
// it serves are opened with events off: fleetwall's sink runs fw_xdp_noev, what an events-off node runs
// (bench:dataplane's live cases); `fleetwall` mode opens with events unset (the event pair; bench:inspect
// switches its link between the two).

import { createInterface } from 'node:readline';
import { unlinkSync } from 'node:fs';
import { type BpfDatapath, openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { BPF_XDP, XDP_FLAGS_DRV_MODE, check, closeFd, raw } from '../../node-agent/src/datapath/libbpf.js';
import { linkCreate, xdpQuery } from '../../node-agent/src/datapath/links.js';
import { DatapathError } from '../../node-agent/src/datapath/errors.js';
import { EVENTS_OFF } from './events-off.js';

const [mode, a, ifname, linkPin] = process.argv.slice(2);

function attachProg(progPin: string, ifn: string, pin: string): void {
  const prog = check(raw.bpf_obj_get(progPin) as number, 'open pinned program', progPin);
  try {
    const ifindex = raw.if_nametoindex(ifn) as number;
    const res = linkCreate(prog, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE);
    if (res.fd < 0) throw new DatapathError('attach xdp', ifn, res.errno);
    check(raw.bpf_obj_pin(res.fd, pin) as number, 'pin link', pin);
    closeFd(res.fd);
  } finally {
    closeFd(prog);
  }
}

function detachLink(pin: string): void {
  const fd = check(raw.bpf_obj_get(pin) as number, 'open pinned link', pin);
  try {
    check(raw.bpf_link_detach(fd) as number, 'detach link', pin);
  } finally {
    closeFd(fd);
  }
  unlinkSync(pin);
}

if (mode === 'fleetwall') {
  const dp = openDatapath({ pinDir: a! });
  const r = dp.attach(ifname!, { egress: false, xdpMode: 'native' });
  dp.close();
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else if (mode === 'prog') {
  attachProg(a!, ifname!, linkPin!);
  process.stdout.write('{"ok":true}\n');
} else if (mode === 'serve') {
  const ifn = a!;
  const dps = new Map<string, BpfDatapath>();
  const dpFor = (pinDir: string) => {
    let dp = dps.get(pinDir);
    if (!dp) dps.set(pinDir, (dp = openDatapath({ pinDir, events: EVENTS_OFF })));
    return dp;
  };
  process.stdout.write(`${JSON.stringify({ ok: true, ready: true })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const req = JSON.parse(line) as { op: string; pinDir?: string; pin?: string; linkPin?: string };
    try {
      let res: unknown = null;
      switch (req.op) {
        case 'fleetwall':
          res = dpFor(req.pinDir!).attach(ifn, { egress: false, xdpMode: 'native' });
          break;
        case 'unfleetwall':
          dpFor(req.pinDir!).detach(ifn);
          break;
        case 'prog':
          attachProg(req.pin!, ifn, req.linkPin!);
          break;
        case 'unprog':
          detachLink(req.linkPin!);
          break;
        case 'mode': {
          const q = xdpQuery(raw.if_nametoindex(ifn) as number, ifn);
          res = { mode: ['none', 'native', 'generic', 'hw', 'multi'][q.mode] ?? String(q.mode), progId: q.progId };
          break;
        }
        default:
          throw new Error(`unknown op ${req.op}`);
      }
      process.stdout.write(`${JSON.stringify({ ok: true, res })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
  }
  for (const dp of dps.values()) dp.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
