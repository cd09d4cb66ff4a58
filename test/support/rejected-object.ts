// A BPF object whose XDP programs the verifier rejects (each reads past the
// end of its context; fw_test_rejected first, then one under each name of
// the datapath's XDP programs, since a datapath loads only the one of its
// pair): a load the kernel refuses, for the tests of what follows one
// (libbpf's log through the print callback, a generation swap that fails and
// leaves the maps in force).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROG } from '../../node-agent/src/datapath/abi.js';

/** One rejected program per name: the test's own first, then the names of the datapath's XDP programs (it loads one of them only). */
const NAMES = ['fw_test_rejected', PROG.XDP, PROG.XDP_NOEV];
const REJECTED_C = `${NAMES.map(
  (n) => `__attribute__((section("xdp"), used)) int ${n}(void *ctx) { return *(volatile int *)((char *)ctx + 4096); }`,
).join('\n')}
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
