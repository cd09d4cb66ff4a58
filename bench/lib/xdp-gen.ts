// Live-frames traffic generator, run inside the sending namespace and pinned
// to a CPU by the caller (taskset): one long BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES of bpf/bench/xdp_gen.bpf.c, which gives frames
// source addresses from a table and transmits them (XDP_TX) into the veth
// peer. Runs until killed (a new call whenever one has sent its 2^31 frames).
//   xdp-gen.ts <json {ifname, srcMac, dstMac, dst, sources: hex[], srcPin?, txShift?}>
// srcPin: pins the source table there (bench_srcs entries are 20 bytes: v4
// address first), the traffic control at srcPin + '_ctl' (struct gen_cfg:
// u32 tx_shift, u32 stamp_gen, u32 gap_ps, u32 pad) and the stamp count at srcPin + '_stamps', so
// the caller can change sources and traffic mode while the generator runs.
// It starts in rewrite mode (stamp_gen 0: every frame gets the next source).

import { resolve } from 'node:path';
import { loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES, progTestRun, xdpMd } from '../../node-agent/src/datapath/test-run.js';
import { raw } from '../../node-agent/src/datapath/libbpf.js';

interface Args {
  ifname: string;
  srcMac: string;
  dstMac: string;
  dst: string;
  sources: string[]; // 4-byte hex, a power of two of them
  srcPin?: string;
  /** Transmit one frame in 2^txShift (the rest are dropped at the generator). */
  txShift?: number;
  /** Frames per test-run batch (1..256, default 64); the kernel sizes the page pool's ring to it. */
  batch?: number;
}
const args = JSON.parse(process.argv[2]!) as Args;
const obj = loadObject(resolve(import.meta.dirname, '../../bpf/bench/obj/xdp_gen.bpf.o'));
const srcs = obj.mapFd('bench_srcs');
const key = Buffer.alloc(4);
const val = Buffer.alloc(20);
args.sources.forEach((hex, i) => {
  key.writeUInt32LE(i, 0);
  val.fill(0);
  Buffer.from(hex, 'hex').copy(val, 0);
  raw.bpf_map_update_elem(srcs, key, val, 0n);
});
const ctl = Buffer.alloc(8);
ctl.writeUInt32LE(args.sources.length - 1, 0);
ctl.writeUInt32LE(1, 4); // fix the IPv4 checksum
key.writeUInt32LE(0, 0);
raw.bpf_map_update_elem(obj.mapFd('bench_ctl'), key, ctl, 0n);

// 64-byte IPv4/UDP frame (without FCS) to dst.
const f = Buffer.alloc(60);
Buffer.from(args.dstMac.replace(/:/g, ''), 'hex').copy(f, 0);
Buffer.from(args.srcMac.replace(/:/g, ''), 'hex').copy(f, 6);
f.writeUInt16BE(0x0800, 12);
f[14] = 0x45;
f.writeUInt16BE(46, 16);
f[22] = 64;
f[23] = 17;
Buffer.from(args.dst.split('.').map(Number)).copy(f, 30);
f.writeUInt16BE(40000, 34);
f.writeUInt16BE(9, 36);
f.writeUInt16BE(26, 38);

const cfg = Buffer.alloc(16);
cfg.writeUInt32LE(args.txShift ?? 0, 0);
key.writeUInt32LE(0, 0);
raw.bpf_map_update_elem(obj.mapFd('gen_ctl'), key, cfg, 0n);
if (args.srcPin) {
  raw.bpf_obj_pin(srcs, args.srcPin);
  raw.bpf_obj_pin(obj.mapFd('gen_ctl'), `${args.srcPin}_ctl`);
  raw.bpf_obj_pin(obj.mapFd('gen_stamps'), `${args.srcPin}_stamps`);
}
const ifindex = raw.if_nametoindex(args.ifname) as number;
process.stdout.write('ready\n');
// One call lasts 2^31 frames (3-4 minutes here); a longer bench gets another.
for (;;) {
  progTestRun(obj.progFd('xdp_gen'), f, {
    repeat: 2 ** 31 - 1,
    flags: BPF_F_TEST_XDP_LIVE_FRAMES,
    ctxIn: xdpMd(f.length, ifindex),
    batchSize: args.batch ?? 64,
  });
}
