// BPF_PROG_TEST_RUN through libbpf: runs a loaded program on a packet
// (verdict tables in tests, per-packet cost and live-frames traffic in the bench).

import { BPF_F_TEST_XDP_LIVE_FRAMES, address, check, raw } from './libbpf.js';

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

/** struct bpf_test_run_opts of libbpf 1.1 (80 bytes). */
export function progTestRun(progFd: number, data: Buffer, o: TestRunOptions = {}, target = `prog fd ${progFd}`): TestRunResult {
  const opts = Buffer.alloc(80);
  const out = o.wantDataOut ? Buffer.alloc(data.length + 512) : null;
  opts.writeBigUInt64LE(80n, 0);
  opts.writeBigUInt64LE(address(data), 8);
  if (out) opts.writeBigUInt64LE(address(out), 16);
  opts.writeUInt32LE(data.length, 24);
  opts.writeUInt32LE(out ? out.length : 0, 28);
  if (o.ctxIn) {
    opts.writeBigUInt64LE(address(o.ctxIn), 32);
    opts.writeUInt32LE(o.ctxIn.length, 48);
  }
  opts.writeInt32LE(o.repeat ?? 1, 60);
  opts.writeUInt32LE(o.flags ?? 0, 68);
  opts.writeUInt32LE(o.cpu ?? 0, 72);
  opts.writeUInt32LE(o.batchSize ?? 0, 76);
  check(raw.bpf_prog_test_run_opts(progFd, opts) as number, 'test run', target);
  const res: TestRunResult = { retval: opts.readInt32LE(56), durationNs: opts.readUInt32LE(64) };
  if (out) res.dataOut = out.subarray(0, opts.readUInt32LE(28));
  // Keep the buffers alive until here (their addresses were handed to C).
  void data.length;
  return res;
}

/** struct xdp_md for test runs: ingress_ifindex set, data_end = frame length. */
export function xdpMd(frameLen: number, ingressIfindex: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0, 0); // data
  b.writeUInt32LE(frameLen, 4); // data_end
  b.writeUInt32LE(0, 8); // data_meta
  b.writeUInt32LE(ingressIfindex, 12);
  return b;
}

export { BPF_F_TEST_XDP_LIVE_FRAMES };
