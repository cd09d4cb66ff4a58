// fleetwall's two BPF objects (xdp_ingress.bpf.o, tc_egress.bpf.o) loaded
// with their fw_* maps pinned by name under the pin dir: a pinned map is
// reused (never recreated or flushed), a new one is created with the size
// asked for. Both objects declare the same maps, so they share one set.

import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAP, type MapName, PROG } from './abi.js';
import { BpfMap, mapInfoByFd } from './bpf-map.js';
import { loadObject } from './bpf-object.js';
import { progInfo } from './links.js';
import type { Owned } from './owned.js';

export const DEFAULT_OBJ_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bpf/obj');

/** The loaded programs: fds, and ids (to tell ours from others on an interface). */
export interface Programs {
  readonly xdpFd: number;
  readonly tcFd: number;
  readonly xdpProgId: number;
  readonly tcProgId: number;
}

export interface LoadedObjects {
  readonly maps: ReadonlyMap<MapName, BpfMap>;
  readonly progs: Programs;
}

/** Loads both objects (owned: closed with the datapath, or when the open fails). */
export function loadObjects(objDir: string, pinDir: string, sizes: ReadonlyMap<string, number>, owned: Owned): LoadedObjects {
  const pinFilter = (name: string) => name.startsWith('fw_');
  const xdp = owned.add(loadObject(join(objDir, 'xdp_ingress.bpf.o'), { pinDir, pinFilter, sizes }));
  const tc = owned.add(loadObject(join(objDir, 'tc_egress.bpf.o'), { pinDir, pinFilter, sizes }));
  const maps = new Map<MapName, BpfMap>();
  for (const name of Object.values(MAP)) {
    const fd = xdp.mapFd(name);
    maps.set(name, new BpfMap(name, fd, mapInfoByFd(fd, name), false));
  }
  const xdpFd = xdp.progFd(PROG.XDP);
  const tcFd = tc.progFd(PROG.TC);
  return { maps, progs: { xdpFd, tcFd, xdpProgId: progInfo(xdpFd, PROG.XDP).id, tcProgId: progInfo(tcFd, PROG.TC).id } };
}
