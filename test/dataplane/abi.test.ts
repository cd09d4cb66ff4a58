// The TypeScript mirror (node-agent/src/datapath/abi.ts) against the C side:
// compiles a probe against bpf/include/fleetwall_abi.h that prints every
// sizeof/offsetof/enum/map name, and reads the map key/value sizes out of the
// compiled objects in bpf/obj. Any drift fails here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ABI_ENUMS, ABI_MAP_MACROS, ABI_PROG_MACROS, FW_ABI_VERSION, LAYOUT, MAP, TABLES } from '../../node-agent/src/datapath/abi.js';
import { MAX_STORE_ID_BYTES } from '../../node-agent/src/datapath/datapath.js';
import { raw } from '../../node-agent/src/datapath/libbpf.js';

const root = resolve(import.meta.dirname, '../..');

function probeC(): Record<string, number | string> {
  const lines: string[] = [];
  for (const [s, l] of Object.entries(LAYOUT)) {
    lines.push(`  printf("\\"sizeof ${s}\\": %zu,\\n", sizeof(struct ${s}));`);
    for (const f of Object.keys(l.fields)) {
      lines.push(`  printf("\\"${s}.${f}\\": %zu,\\n", offsetof(struct ${s}, ${f}));`);
    }
  }
  for (const e of Object.keys(ABI_ENUMS)) lines.push(`  printf("\\"${e}\\": %ld,\\n", (long)(${e}));`);
  for (const m of [...Object.keys(ABI_MAP_MACROS), ...Object.keys(ABI_PROG_MACROS)]) {
    lines.push(`  printf("\\"${m}\\": \\"%s\\",\\n", ${m});`);
  }
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include "fleetwall_abi.h"\nint main(void) {\n  printf("{\\n");\n${lines.join('\n')}\n  printf("\\"end\\": 0}\\n");\n  return 0;\n}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'fw-abi-'));
  try {
    writeFileSync(join(dir, 'probe.c'), src);
    execFileSync('cc', ['-Wall', '-Werror', `-I${join(root, 'bpf/include')}`, '-o', join(dir, 'probe'), join(dir, 'probe.c')]);
    return JSON.parse(execFileSync(join(dir, 'probe'), { encoding: 'utf8' })) as Record<string, number | string>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('abi.ts sizes, offsets, enums and names match fleetwall_abi.h', () => {
  const c = probeC();
  for (const [s, l] of Object.entries(LAYOUT)) {
    assert.equal(l.size, c[`sizeof ${s}`], `sizeof(struct ${s})`);
    for (const [f, off] of Object.entries(l.fields)) assert.equal(off, c[`${s}.${f}`], `offsetof(struct ${s}, ${f})`);
  }
  for (const [e, v] of Object.entries(ABI_ENUMS)) assert.equal(v, c[e], e);
  for (const [m, v] of Object.entries({ ...ABI_MAP_MACROS, ...ABI_PROG_MACROS })) assert.equal(v, c[m], m);
  // The Datapath interface promises what the pinned meta holds.
  assert.equal(MAX_STORE_ID_BYTES, c.FW_STORE_ID_MAX, 'datapath.ts MAX_STORE_ID_BYTES == FW_STORE_ID_MAX');
  assert.equal(FW_ABI_VERSION, 5);
});

test('the compiled objects declare every map with the ABI key and value sizes', () => {
  const expected: Record<string, [number, number]> = {
    [MAP.TBLCFG]: [4, LAYOUT.fw_table_cfg.size],
    [MAP.RULE_CNT]: [4, LAYOUT.fw_counter.size],
    [MAP.IF_CNT]: [4, LAYOUT.fw_if_slot.size],
    [MAP.IF_CNTX]: [LAYOUT.fw_if_key.size, LAYOUT.fw_verdict_cnt.size],
    [MAP.JOURNAL]: [8, LAYOUT.fw_journal_rule.size],
    [MAP.META]: [4, LAYOUT.fw_meta.size],
    [MAP.LENSTAT]: [4, LAYOUT.fw_lenstat.size],
  };
  for (const t of TABLES) {
    const key = t.family === 4 ? LAYOUT.fw_key4.size : LAYOUT.fw_key6.size;
    expected[t.tab] = [4, t.family === 4 ? LAYOUT.fw_bucket4.size : LAYOUT.fw_bucket6.size];
    expected[t.spill] = [key, LAYOUT.fw_entry.size];
    expected[t.trie] = [key, LAYOUT.fw_entry.size];
    if (t.d24) expected[t.d24] = [4, LAYOUT.fw_d24_block.size];
  }
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
      }
      assert.deepEqual([...seen].sort(), Object.keys(expected).sort(), `${objName} declares every ABI map`);
    } finally {
      raw.bpf_object__close(obj);
    }
  }
});
