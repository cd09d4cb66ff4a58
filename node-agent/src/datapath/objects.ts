// fleetwall's two BPF objects (xdp_ingress.bpf.o, tc_egress.bpf.o) loaded
// with their fw_* maps pinned by name: a pinned map is reused (never
// recreated or flushed), a new one is created with the size asked for and
// pinned. Both objects declare the same maps, so they share one set. The
// maps of a generation are pinned under its folder (generation.ts), the
// others at the top of the pin dir; the programs' global (.bss: the table
// configs) is pinned as the generation's fw_tblcfg. Each object holds two
// programs (with the sampled drop events, and without any event code): only
// the pair asked for is loaded (abi.ts programNames), so a load verifies two
// programs, not four.

import { constants as osConstants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GEN_MAPS, MAP, type MapName, programNames } from './abi.js';
import { BpfMap, mapInfoByFd } from './bpf-map.js';
import { type LoadedObject, loadObject, loadObjectAsync } from './bpf-object.js';
import { DatapathError } from './errors.js';
import { progInfo } from './links.js';
import type { Owned } from './owned.js';

export const DEFAULT_OBJ_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bpf/obj');

/** The loaded programs: fds, and ids (to tell ours from others on an interface). */
export interface Programs {
  /** The pair with the event code (fw_xdp_ingress, fw_tc_egress) or without it (the _noev pair). */
  readonly events: boolean;
  readonly xdpFd: number;
  readonly tcFd: number;
  readonly xdpProgId: number;
  readonly tcProgId: number;
}

export interface LoadedObjects {
  readonly maps: ReadonlyMap<MapName, BpfMap>;
  readonly progs: Programs;
}

/** libbpf's name of an object's .bss map ("<object name>.bss", cut to 15 characters). */
const BSS = '.bss';

function bssOf(o: LoadedObject): string {
  const name = o.mapNames().find((n) => n.endsWith(BSS));
  if (!name) throw new DatapathError('find map', `.bss (the table configs) in ${o.path}`, osConstants.errno.ENOENT);
  return name;
}

/** Where a map of ours is pinned: the generation's under genDir, the others under pinDir; the .bss as fw_tblcfg. */
function pinPathOf(pinDir: string, genDir: string): (name: string) => string | null {
  // The table configs are the programs' global (their .bss map): both objects' pinned as the generation's fw_tblcfg.
  return (name) =>
    name.endsWith(BSS)
      ? join(genDir, MAP.TBLCFG)
      : !name.startsWith('fw_')
        ? null
        : join(GEN_MAPS.has(name as MapName) ? genDir : pinDir, name);
}

/**
 * Loads both objects (owned: closed with their generation, or when the open
 * fails) with the maps of a generation pinned under genDir and the others
 * under pinDir.
 */
export function loadObjects(
  objDir: string,
  pinDir: string,
  genDir: string,
  sizes: ReadonlyMap<string, number>,
  owned: Owned,
  events: boolean,
): LoadedObjects {
  const pinPath = pinPathOf(pinDir, genDir);
  const names = programNames(events);
  const xdp = owned.add(loadObject(join(objDir, 'xdp_ingress.bpf.o'), { pinPath, sizes, programs: [names.xdp] }));
  const tc = owned.add(loadObject(join(objDir, 'tc_egress.bpf.o'), { pinPath, sizes, programs: [names.tc] }));
  return assemble(xdp, tc, events);
}

/** loadObjects() with each load on a worker thread, one after the other (bpf-object.ts loadObjectAsync). */
export async function loadObjectsAsync(
  objDir: string,
  pinDir: string,
  genDir: string,
  sizes: ReadonlyMap<string, number>,
  owned: Owned,
  events: boolean,
): Promise<LoadedObjects> {
  const pinPath = pinPathOf(pinDir, genDir);
  const names = programNames(events);
  const xdp = owned.add(await loadObjectAsync(join(objDir, 'xdp_ingress.bpf.o'), { pinPath, sizes, programs: [names.xdp] }));
  const tc = owned.add(await loadObjectAsync(join(objDir, 'tc_egress.bpf.o'), { pinPath, sizes, programs: [names.tc] }));
  return assemble(xdp, tc, events);
}

function assemble(xdp: LoadedObject, tc: LoadedObject, events: boolean): LoadedObjects {
  const maps = new Map<MapName, BpfMap>();
  for (const name of Object.values(MAP)) {
    const fd = xdp.mapFd(name === MAP.TBLCFG ? bssOf(xdp) : name);
    maps.set(name, new BpfMap(name, fd, mapInfoByFd(fd, name), false));
  }
  const names = programNames(events);
  const xdpFd = xdp.progFd(names.xdp);
  const tcFd = tc.progFd(names.tc);
  return {
    maps,
    progs: { events, xdpFd, tcFd, xdpProgId: progInfo(xdpFd, names.xdp).id, tcProgId: progInfo(tcFd, names.tc).id },
  };
}
