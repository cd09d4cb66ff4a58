// A generation: the maps the programs are bound to that follow the rules'
// size (GEN_MAPS: the hashes and their spill hashes, the /24 block pools,
// fw_tblcfg, fw_rule_cnt, fw_rule_xcnt, fw_journal), pinned under <pinDir>/gen-<n>/, and a
// load of the two programs bound to them and to the maps pinned once at the
// top of the pin dir (tries, interface counters, meta, lenstat): the pair with
// the sampled drop events' code or the pair without (spec.events). A new
// generation pins the maps it keeps from the previous one under its own
// folder too (a map can have several pins), so each folder is a whole set.
// Opening a datapath loads on the calling thread (Generation.open); a swap
// loads on a worker thread, off the event loop (Generation.load).

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { GEN_MAPS, type MapName } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { check, raw } from './libbpf.js';
import { type LoadedObjects, type Programs, loadObjects, loadObjectsAsync } from './objects.js';
import { Owned } from './owned.js';
import { removePins } from './pins.js';
import type { GenSizes } from './sizing.js';

const E = osConstants.errno;

const GEN_RE = /^gen-(\d+)$/;

/** The folder of generation n. */
export function genDir(pinDir: string, n: number): string {
  return join(pinDir, `gen-${n}`);
}

/** The generations with a folder under pinDir. */
export function listGenerations(pinDir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(pinDir);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const n of names) {
    const m = GEN_RE.exec(n);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/** Unpins a generation's folder (its maps go once nothing else holds them). */
export function removeGeneration(pinDir: string, n: number): void {
  removePins(genDir(pinDir, n));
}

/** Creates the generation's folder and pins the kept maps there; returns the folder. */
function prepare(spec: GenerationSpec): string {
  const dir = genDir(spec.pinDir, spec.n);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).errno;
    throw new DatapathError('create generation folder', dir, errno ? -errno : E.EIO);
  }
  for (const [name, m] of spec.keep ?? []) {
    if (!GEN_MAPS.has(name)) continue;
    const path = join(dir, name);
    if (!existsSync(path)) check(raw.bpf_obj_pin(m.fd, path) as number, 'pin map', path);
  }
  return dir;
}

/** Where a generation is loaded: the objects, the pin dir, its number, sizes and the maps it keeps. */
export interface GenerationSpec {
  readonly objDir: string;
  readonly pinDir: string;
  readonly n: number;
  readonly sizes: GenSizes;
  /** max_entries by map name, for the maps it creates. */
  readonly mapSizes: ReadonlyMap<string, number>;
  /** Maps of the previous generation it keeps (pinned in its folder first). */
  readonly keep?: ReadonlyMap<MapName, BpfMap>;
  /** Which pair of programs: with the sampled drop events' code, or without it (the datapath's events off). */
  readonly events: boolean;
}

export class Generation {
  readonly dir: string;
  readonly n: number;
  readonly sizes: GenSizes;
  readonly maps: ReadonlyMap<MapName, BpfMap>;
  readonly progs: Programs;

  private constructor(
    spec: GenerationSpec,
    loaded: LoadedObjects,
    private readonly owned: Owned,
  ) {
    this.dir = genDir(spec.pinDir, spec.n);
    this.n = spec.n;
    this.sizes = spec.sizes;
    this.maps = loaded.maps;
    this.progs = loaded.progs;
  }

  /**
   * Loads the programs bound to generation n's maps, on this thread (opening
   * the datapath): those pinned in its folder are reused; `keep` (maps of the
   * previous generation) are pinned there first; the others are created at
   * `mapSizes`.
   */
  static open(spec: GenerationSpec): Generation {
    const owned = new Owned();
    try {
      return new Generation(spec, loadObjects(spec.objDir, spec.pinDir, prepare(spec), spec.mapSizes, owned, spec.events), owned);
    } catch (e) {
      owned.close();
      throw e;
    }
  }

  /** open() with the loads (the maps' creation, the verifier) on a worker thread: the event loop runs meanwhile (a swap). */
  static async load(spec: GenerationSpec): Promise<Generation> {
    const owned = new Owned();
    try {
      return new Generation(
        spec,
        await loadObjectsAsync(spec.objDir, spec.pinDir, prepare(spec), spec.mapSizes, owned, spec.events),
        owned,
      );
    } catch (e) {
      owned.close();
      throw e;
    }
  }

  map(name: MapName): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new DatapathError('find map', name, E.ENOENT);
    return m;
  }

  /** True if this generation and `other` share the map (the same kernel object). */
  shares(other: Generation, name: MapName): boolean {
    return this.map(name).info.id === other.map(name).info.id;
  }

  /** Closes the objects (the programs stay while a link holds them, the maps while pinned or used). */
  close(): void {
    this.owned.close();
  }
}
