// The programs fleetwall's pinned links run: for each pin under <pinDir>/links
// (an XDP or TCX link, or the clsact marker, which pins the program itself),
// the name of the program it runs (bpf_link_info.prog_id -> bpf_prog_info.name).
//
//   linkPrograms(pinDir)  // { 'veth0-xdp-native': 'fw_xdp_noev', 'veth0-egress-tcx': 'fw_tc_noev' }

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { closeFd, raw } from '../../node-agent/src/datapath/libbpf.js';
import { linkInfo, progInfo, progName } from '../../node-agent/src/datapath/links.js';

export function linkPrograms(pinDir: string): Record<string, string> {
  const dir = join(pinDir, 'links');
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    const fd = raw.bpf_obj_get(join(dir, name)) as number;
    if (fd < 0) throw new Error(`open pinned ${name}`);
    try {
      out[name] = name.endsWith('-egress-clsact') ? progInfo(fd, name).name : progName(linkInfo(fd, name).progId);
    } finally {
      closeFd(fd);
    }
  }
  return out;
}

/** The programs on `ifname`'s links: {xdp, tc} (undefined where that hook has none). */
export function interfacePrograms(pinDir: string, ifname: string): { xdp?: string; tc?: string } {
  const out: { xdp?: string; tc?: string } = {};
  for (const [pin, prog] of Object.entries(linkPrograms(pinDir))) {
    if (!pin.startsWith(`${ifname}-`)) continue;
    if (pin.includes('-xdp-')) out.xdp = prog;
    else out.tc = prog;
  }
  return out;
}
