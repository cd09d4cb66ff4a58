// A BPF object whose one XDP program the verifier rejects (it reads past the
// end of its context): a load the kernel refuses, for the tests of what
// follows one (libbpf's log through the print callback, a generation swap
// that fails and leaves the maps in force).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const REJECTED_C = `
__attribute__((section("xdp"), used)) int fw_test_rejected(void *ctx) { return *(volatile int *)((char *)ctx + 4096); }
char _license[] __attribute__((section("license"), used)) = "GPL";
`;

/** Compiles the object into dir (clang); returns its path. The verifier's complaint: `invalid bpf_context access off=4096`. */
export function compileRejectedObject(dir: string, name = 'rejected.bpf.o'): string {
  const src = join(dir, 'rejected.bpf.c');
  const out = join(dir, name);
  writeFileSync(src, REJECTED_C);
  const cc = spawnSync('clang', ['-O2', '-g0', '-target', 'bpf', '-c', src, '-o', out], { encoding: 'utf8' });
  assert.equal(cc.status, 0, `clang: ${cc.stderr}`);
  return out;
}
