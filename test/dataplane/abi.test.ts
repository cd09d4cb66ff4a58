// The TypeScript mirrors against the C side. Each probe is a C program
// generated from the mirror, compiled and run; it prints every sizeof,
// offsetof and constant the mirror names, so any drift fails here:
//  - abi.ts (fleetwall's own ABI) against bpf/include/fleetwall_abi.h, and
//    the map key/value sizes inside the compiled objects in bpf/obj;
//  - uapi.ts: kernel types and enums against the running kernel's BTF
//    (bpftool dumps it as vmlinux.h), libbpf's opts structs and the #defines
//    against the installed headers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  ABI_ENUMS,
  ABI_MAP_MACROS,
  ABI_PROG_MACROS,
  FW_ABI_VERSION,
  FW_TABLE,
  FW_TABLE_COUNT,
  LAYOUT,
  MAP,
  PROG,
  TABLES,
  programNames,
  tableDirection,
  tableFamily,
  tableIndex,
} from '../../node-agent/src/datapath/abi.js';
import { MAX_COUNTER_SLOTS, MAX_STORE_ID_BYTES } from '../../node-agent/src/datapath/datapath.js';
import { raw } from '../../node-agent/src/datapath/libbpf.js';
import { FW_POL_CELLS, FW_POL_MAX } from '../../node-agent/src/datapath/policy-abi.js';
import { HEADER_CONSTS, KERNEL_ENUMS, KERNEL_LAYOUT, LIBBPF_LAYOUT, type UapiStruct } from '../../node-agent/src/datapath/uapi.js';

const root = resolve(import.meta.dirname, '../..');

interface Probe {
  /** #include lines (and defines) before main(). */
  readonly prelude: string;
  readonly includeDirs?: readonly string[];
  readonly structs?: Readonly<Record<string, UapiStruct>>;
  /** name -> C expression (printed as an unsigned 64-bit number). */
  readonly consts?: Readonly<Record<string, string>>;
  /** name -> C string expression. */
  readonly strings?: Readonly<Record<string, string>>;
}

/**
 * Compiles and runs a probe: `sizeof S`, `S.f` (offset), `sizeof S.f` (member
 * size), constants as decimal strings, strings as they are.
 */
function runProbe(p: Probe, files: Record<string, string> = {}): Record<string, string> {
  const lines: string[] = [];
  const out = (key: string, fmt: string, expr: string) => lines.push(`  printf("\\"${key}\\": \\"${fmt}\\",\\n", ${expr});`);
  for (const [s, l] of Object.entries(p.structs ?? {})) {
    out(`sizeof ${s}`, '%llu', `(unsigned long long)sizeof(struct ${s})`);
    for (const f of Object.keys(l.fields)) {
      out(`${s}.${f}`, '%llu', `(unsigned long long)__builtin_offsetof(struct ${s}, ${f})`);
      out(`sizeof ${s}.${f}`, '%llu', `(unsigned long long)sizeof(((struct ${s} *)0)->${f})`);
    }
  }
  for (const [k, expr] of Object.entries(p.consts ?? {})) out(k, '%llu', `(unsigned long long)(${expr})`);
  for (const [k, expr] of Object.entries(p.strings ?? {})) out(k, '%s', expr);
  const src = `${p.prelude}\nint printf(const char *, ...);\nint main(void) {\n  printf("{\\n");\n${lines.join('\n')}\n  printf("\\"end\\": \\"\\"}\\n");\n  return 0;\n}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'fw-abi-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    writeFileSync(join(dir, 'probe.c'), src);
    const inc = [dir, ...(p.includeDirs ?? [])].map((d) => `-I${d}`);
    execFileSync('cc', ['-Wall', '-Werror', ...inc, '-o', join(dir, 'probe'), join(dir, 'probe.c')]);
    return JSON.parse(execFileSync(join(dir, 'probe'), { encoding: 'utf8' })) as Record<string, string>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const num = (c: Record<string, string>, key: string): number => {
  assert.ok(key in c, `the probe printed ${key}`);
  return Number(c[key]);
};

/** Every field of a mirrored struct at its C offset, inside the bytes the mirror allocates. */
function checkStruct(c: Record<string, string>, name: string, l: UapiStruct): void {
  for (const [f, off] of Object.entries(l.fields)) {
    assert.equal(off, num(c, `${name}.${f}`), `offsetof(struct ${name}, ${f})`);
    assert.ok(off + num(c, `sizeof ${name}.${f}`) <= l.size, `struct ${name}: ${f} lies inside the ${l.size} bytes allocated`);
  }
}

test('abi.ts sizes, offsets, enums and names match fleetwall_abi.h', () => {
  const c = runProbe({
    prelude: '#include <stddef.h>\n#include "fleetwall_abi.h"',
    includeDirs: [join(root, 'bpf/include')],
    structs: LAYOUT,
    consts: Object.fromEntries(Object.keys(ABI_ENUMS).map((e) => [e, e])),
    strings: Object.fromEntries([...Object.keys(ABI_MAP_MACROS), ...Object.keys(ABI_PROG_MACROS)].map((m) => [m, m])),
  });
  for (const [s, l] of Object.entries(LAYOUT)) {
    assert.equal(l.size, num(c, `sizeof ${s}`), `sizeof(struct ${s})`);
    for (const [f, off] of Object.entries(l.fields)) assert.equal(off, num(c, `${s}.${f}`), `offsetof(struct ${s}, ${f})`);
  }
  for (const [e, v] of Object.entries(ABI_ENUMS)) assert.equal(BigInt(v), BigInt(c[e]!), e);
  for (const [m, v] of Object.entries({ ...ABI_MAP_MACROS, ...ABI_PROG_MACROS })) assert.equal(v, c[m], m);
  // The Datapath interface promises what the pinned meta holds.
  assert.equal(MAX_STORE_ID_BYTES, num(c, 'FW_STORE_ID_MAX'), 'datapath.ts MAX_STORE_ID_BYTES == FW_STORE_ID_MAX');
  assert.equal(MAX_COUNTER_SLOTS, num(c, 'FW_MAX_RULE_SLOTS'), 'datapath.ts MAX_COUNTER_SLOTS == FW_MAX_RULE_SLOTS');
  assert.equal(FW_ABI_VERSION, 15);
  // The table index (the OpBatch column) is enum fw_table_id, and TABLES is indexed by it.
  const tables = { 'ingress 4': FW_TABLE.IN4, 'ingress 6': FW_TABLE.IN6, 'egress 4': FW_TABLE.EG4, 'egress 6': FW_TABLE.EG6 };
  for (const [k, id] of Object.entries(tables)) {
    const [direction, family] = k.split(' ') as ['ingress' | 'egress', '4' | '6'];
    assert.equal(tableIndex(direction, Number(family) as 4 | 6), id, `tableIndex(${k})`);
    assert.deepEqual([tableDirection(id), tableFamily(id)], [direction, Number(family)]);
    assert.deepEqual([TABLES[id]!.id, TABLES[id]!.direction, TABLES[id]!.family], [id, direction, Number(family)], `TABLES[${id}]`);
  }
});

test('uapi.ts: kernel types and enums match the running kernel (BTF)', () => {
  assert.ok(existsSync('/sys/kernel/btf/vmlinux'), 'the kernel exposes its BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)');
  const vmlinux = execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', 'format', 'c'], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const c = runProbe(
    {
      // vmlinux.h is written for BPF programs: without CO-RE relocations here.
      prelude: '#define BPF_NO_PRESERVE_ACCESS_INDEX\n#include "vmlinux.h"',
      structs: KERNEL_LAYOUT,
      consts: Object.fromEntries(Object.keys(KERNEL_ENUMS).map((e) => [e, e])),
    },
    { 'vmlinux.h': vmlinux },
  );
  for (const [s, l] of Object.entries(KERNEL_LAYOUT)) checkStruct(c, s, l);
  for (const [e, v] of Object.entries(KERNEL_ENUMS)) assert.equal(BigInt(v), BigInt(c[e]!), e);
});

test('uapi.ts: libbpf opts structs and #defines match the installed headers', () => {
  const c = runProbe({
    prelude: [
      '#include <unistd.h>',
      '#include <stddef.h>',
      '#include <poll.h>',
      '#include <sys/mman.h>',
      '#include <sys/syscall.h>',
      '#include <linux/membarrier.h>',
      '#include <linux/if_link.h>',
      '#include <bpf/bpf.h>',
      '#include <bpf/libbpf.h>',
    ].join('\n'),
    structs: LIBBPF_LAYOUT,
    consts: Object.fromEntries(Object.entries(HEADER_CONSTS).map(([k, [, expr]]) => [k, expr])),
  });
  for (const [s, l] of Object.entries(LIBBPF_LAYOUT)) {
    checkStruct(c, s, l);
    // libbpf reads fields past `sz` as zero; a size beyond its own struct must be zero there (it is): keep to its size.
    assert.ok(l.size <= num(c, `sizeof ${s}`), `struct ${s}: ${l.size} bytes, libbpf's has ${num(c, `sizeof ${s}`)}`);
  }
  for (const [k, [v]] of Object.entries(HEADER_CONSTS)) assert.equal(v, num(c, k), `${k} (${HEADER_CONSTS[k]![1]})`);
});

test('the compiled objects declare every map with the ABI key and value sizes', () => {
  const expected: Record<string, [number, number]> = {
    [MAP.RULE_CNT]: [4, LAYOUT.fw_rule_row.size],
    [MAP.RULE_XCNT]: [4, LAYOUT.fw_counter.size],
    [MAP.IF_CNT]: [4, LAYOUT.fw_if_slot.size],
    [MAP.IF_CNTX]: [LAYOUT.fw_if_key.size, LAYOUT.fw_verdict_cnt.size],
    [MAP.JOURNAL]: [4, LAYOUT.fw_journal_rule.size],
    [MAP.META]: [4, LAYOUT.fw_meta.size],
    [MAP.LENSTAT]: [4, LAYOUT.fw_lenstat.size],
    [MAP.EVENTS]: [0, 0],
    [MAP.EV_CFG]: [4, LAYOUT.fw_ev_cfg.size],
    [MAP.EV_CPU]: [4, LAYOUT.fw_ev_cpu.size],
    [MAP.POL_CFG]: [4, LAYOUT.fw_policy_set.size],
    [MAP.POL_CMS]: [4, LAYOUT.fw_pol_sketch.size],
    [MAP.POL_HITS]: [4, LAYOUT.fw_pol_hit.size],
    [MAP.POL_STAT]: [4, LAYOUT.fw_pol_stat.size],
  };
  for (const t of TABLES) {
    const key = t.family === 4 ? LAYOUT.fw_key4.size : LAYOUT.fw_key6.size;
    expected[t.tab] = [4, t.family === 4 ? LAYOUT.fw_bucket4.size : LAYOUT.fw_bucket6.size];
    expected[t.spill] = [key, LAYOUT.fw_entry.size];
    expected[t.trie] = [key, LAYOUT.fw_entry.size];
    if (t.d24) expected[t.d24] = [4, LAYOUT.fw_d24_block.size];
  }
  const programs: Record<string, string[]> = {
    'xdp_ingress.bpf.o': [PROG.XDP, PROG.XDP_NOEV],
    'tc_egress.bpf.o': [PROG.TC, PROG.TC_NOEV],
  };
  for (const objName of ['xdp_ingress.bpf.o', 'tc_egress.bpf.o']) {
    const obj = raw.bpf_object__open_file(join(root, 'bpf/obj', objName), null);
    assert.ok(obj, `open ${objName}`);
    try {
      const seen = new Set<string>();
      for (let m = raw.bpf_object__next_map(obj, null); m; m = raw.bpf_object__next_map(obj, m)) {
        const name = raw.bpf_map__name(m) as string;
        if (!name.startsWith('fw_')) continue;
        seen.add(name);
        const want = expected[name];
        assert.ok(want, `${objName}: map ${name} is not in the ABI`);
        assert.deepEqual([raw.bpf_map__key_size(m), raw.bpf_map__value_size(m)], want, `${objName}: ${name} key/value size`);
        // The count-min sketch: every policy slot's rows, fixed at load (policy-maps.ts maps and reads them by this geometry).
        if (name === MAP.POL_CMS) {
          assert.equal(raw.bpf_map__max_entries(m), FW_POL_MAX, `${objName}: ${name} holds one sketch per policy slot`);
          assert.equal(
            FW_POL_MAX * LAYOUT.fw_pol_sketch.size,
            FW_POL_CELLS * LAYOUT.fw_pol_cell.size,
            `${objName}: ${name} holds FW_POL_CELLS cells`,
          );
        }
      }
      assert.deepEqual([...seen].sort(), Object.keys(expected).sort(), `${objName} declares every ABI map`);
      // Its two programs (abi.ts PROG): with the event code and without it, and no other.
      const progs: string[] = [];
      for (let p = raw.bpf_object__next_program(obj, null); p; p = raw.bpf_object__next_program(obj, p))
        progs.push(raw.bpf_program__name(p));
      assert.deepEqual(progs.sort(), [...programs[objName]!].sort(), `${objName}: its programs`);
      const names = [programNames(true), programNames(false)].map((n) => (objName.startsWith('xdp') ? n.xdp : n.tc));
      assert.deepEqual(names.sort(), [...programs[objName]!].sort(), `${objName}: programNames() names them`);
      // The table configs are the programs' global: the .bss, one value of the four configs.
      let bss = 0;
      for (let m = raw.bpf_object__next_map(obj, null); m; m = raw.bpf_object__next_map(obj, m)) {
        if ((raw.bpf_map__name(m) as string).endsWith('.bss')) bss = raw.bpf_map__value_size(m) as number;
      }
      assert.equal(
        bss,
        FW_TABLE_COUNT * LAYOUT.fw_table_cfg.size,
        `${objName}: .bss holds the ${FW_TABLE_COUNT} table configs (${MAP.TBLCFG})`,
      );
    } finally {
      raw.bpf_object__close(obj);
    }
  }
});
