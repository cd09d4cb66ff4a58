// BPF_PROG_TEST_RUN through libbpf: runs a loaded program on a packet
// (verdict tables in tests, per-packet cost and live-frames traffic in the bench).

import { address, check, raw } from './libbpf.js';
import { KERNEL_LAYOUT, LIBBPF_LAYOUT, libbpfOpts } from './uapi.js';

export { BPF_F_TEST_XDP_LIVE_FRAMES } from './uapi.js';

export interface TestRunOptions {
  repeat?: number;
  /** xdp_md / __sk_buff context to pass in. */
  ctxIn?: Buffer;
  flags?: number;
  cpu?: number;
  batchSize?: number;
  /** Capture the (possibly modified) packet. */
  wantDataOut?: boolean;
}

export interface TestRunResult {
  /** The program's return value (signed: TC_ACT_UNSPEC is -1). */
  retval: number;
  /** Average ns per repetition, as the kernel measured it. */
  durationNs: number;
  dataOut?: Buffer;
}

/** Runs the program once (or `repeat` times) on `data`, through struct bpf_test_run_opts. */
export function progTestRun(progFd: number, data: Buffer, o: TestRunOptions = {}, target = `prog fd ${progFd}`): TestRunResult {
  const F = LIBBPF_LAYOUT.bpf_test_run_opts.fields;
  const opts = libbpfOpts(LIBBPF_LAYOUT.bpf_test_run_opts);
  const out = o.wantDataOut ? Buffer.alloc(data.length + 512) : null;
  opts.writeBigUInt64LE(address(data), F.data_in);
  if (out) opts.writeBigUInt64LE(address(out), F.data_out);
  opts.writeUInt32LE(data.length, F.data_size_in);
  opts.writeUInt32LE(out ? out.length : 0, F.data_size_out);
  if (o.ctxIn) {
    opts.writeBigUInt64LE(address(o.ctxIn), F.ctx_in);
    opts.writeUInt32LE(o.ctxIn.length, F.ctx_size_in);
  }
  opts.writeInt32LE(o.repeat ?? 1, F.repeat);
  opts.writeUInt32LE(o.flags ?? 0, F.flags);
  opts.writeUInt32LE(o.cpu ?? 0, F.cpu);
  opts.writeUInt32LE(o.batchSize ?? 0, F.batch_size);
  check(raw.bpf_prog_test_run_opts(progFd, opts) as number, 'test run', target);
  const res: TestRunResult = { retval: opts.readInt32LE(F.retval), durationNs: opts.readUInt32LE(F.duration) };
  if (out) res.dataOut = out.subarray(0, opts.readUInt32LE(F.data_size_out));
  // Keep the buffers alive until here (their addresses were handed to C).
  void data.length;
  return res;
}

/** struct xdp_md for test runs: ingress_ifindex set, data_end = frame length. */
export function xdpMd(frameLen: number, ingressIfindex: number): Buffer {
  const L = KERNEL_LAYOUT.xdp_md;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(0, L.fields.data);
  b.writeUInt32LE(frameLen, L.fields.data_end);
  b.writeUInt32LE(0, L.fields.data_meta);
  b.writeUInt32LE(ingressIfindex, L.fields.ingress_ifindex);
  return b;
}
