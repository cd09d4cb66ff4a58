// Opens and loads one compiled BPF object with its maps pinned by name under
// a pin directory: a map already pinned there is reused (never recreated or
// flushed), a new one is created with the requested size and pinned. The
// load runs on the calling thread (loadObject) or on a worker thread, off the
// event loop (loadObjectAsync: a generation swap's load).

import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { DatapathError } from './errors.js';
import { mapInfoByFd } from './bpf-map.js';
import { type BpfObjectPtr, check, closeFd, libbpfLogMark, libbpfLogSince, loadObjectOnWorker, raw } from './libbpf.js';

const E = osConstants.errno;

export interface LoadedObject {
  readonly path: string;
  progFd(name: string): number;
  mapFd(name: string): number;
  mapNames(): string[];
  close(): void;
}

export interface LoadObjectOptions {
  /** Maps whose name matches are pinned (and reused) under pinDir. */
  readonly pinDir?: string;
  readonly pinFilter?: (mapName: string) => boolean;
  /** Where each map is pinned (and reused from), or null: not pinned. Takes the place of pinDir and pinFilter. */
  readonly pinPath?: (mapName: string) => string | null;
  /** max_entries for maps created by this load. */
  readonly sizes?: ReadonlyMap<string, number>;
  /** The programs to load (each must be in the object); the others are not loaded. Default: all. */
  readonly programs?: readonly string[];
}

export function loadObject(path: string, o: LoadObjectOptions = {}): LoadedObject {
  // The verifier gives up with EAGAIN when a signal is pending (profilers,
  // timers); an object cannot be loaded twice, so open it again.
  for (let attempt = 0; ; attempt++) {
    const mark = libbpfLogMark();
    const obj = openSized(path, o, mark);
    try {
      return loaded(obj, path, raw.bpf_object__load(obj) as number, mark);
    } catch (e) {
      if (!retryable(e, attempt)) throw e;
    }
  }
}

/**
 * loadObject() with the load (the maps' creation, the verifier) on a worker
 * thread (libbpf.ts loadObjectOnWorker): the event loop runs meanwhile. The
 * object is touched by nothing else until the load settles; loads are
 * serialized.
 */
export async function loadObjectAsync(path: string, o: LoadObjectOptions = {}): Promise<LoadedObject> {
  for (let attempt = 0; ; attempt++) {
    const mark = libbpfLogMark();
    const obj = openSized(path, o, mark);
    let r: number;
    try {
      r = await loadObjectOnWorker(obj);
    } catch (e) {
      raw.bpf_object__close(obj);
      throw e;
    }
    try {
      return loaded(obj, path, r, mark);
    } catch (e) {
      if (!retryable(e, attempt)) throw e;
    }
  }
}

function retryable(e: unknown, attempt: number): boolean {
  return e instanceof DatapathError && e.errno === E.EAGAIN && attempt < 3;
}

/** Opens the object and sets each map's pin path and size (closed again if that fails). */
function openSized(path: string, o: LoadObjectOptions, mark: number): BpfObjectPtr {
  if (!existsSync(path)) {
    throw new DatapathError('open object', path, E.ENOENT, 'no such file (run npm run build:bpf)');
  }
  const obj = raw.bpf_object__open_file(path, null) as BpfObjectPtr;
  if (!obj) throw new DatapathError('open object', path, koffi.errno() || E.EINVAL, lastLog(mark) ?? 'libbpf could not parse the object');
  let ok = false;
  try {
    for (let m = raw.bpf_object__next_map(obj, null); m; m = raw.bpf_object__next_map(obj, m)) {
      const name = raw.bpf_map__name(m) as string;
      const pinned = o.pinPath ? o.pinPath(name) : o.pinDir && (o.pinFilter?.(name) ?? true) ? join(o.pinDir, name) : null;
      let size = o.sizes?.get(name);
      // A map the object marks LIBBPF_PIN_BY_NAME would otherwise be pinned
      // (and reused) under libbpf's default root, /sys/fs/bpf: not pinned
      // means no pin path at all.
      if (!pinned) check(raw.bpf_map__set_pin_path(m, null) as number, 'clear pin path of map', name);
      else {
        check(raw.bpf_map__set_pin_path(m, pinned) as number, 'set pin path of map', name);
        if (existsSync(pinned)) {
          // Reuse keeps the pinned size: libbpf refuses a mismatch.
          const fd = check(raw.bpf_obj_get(pinned) as number, 'open pinned map', pinned);
          try {
            size = mapInfoByFd(fd, name).maxEntries;
          } finally {
            closeFd(fd);
          }
        }
      }
      if (size !== undefined && size !== (raw.bpf_map__max_entries(m) as number))
        check(raw.bpf_map__set_max_entries(m, size) as number, 'size map', name);
    }
    if (o.programs) chooseProgramsOf(obj, path, o.programs);
    ok = true;
    return obj;
  } finally {
    if (!ok) raw.bpf_object__close(obj);
  }
}

/** Only `names` load (autoload off for the others: no verifier run, no fd); ENOENT if one is not in the object. */
function chooseProgramsOf(obj: BpfObjectPtr, path: string, names: readonly string[]): void {
  const seen = new Set<string>();
  for (let p = raw.bpf_object__next_program(obj, null); p; p = raw.bpf_object__next_program(obj, p)) {
    const name = raw.bpf_program__name(p) as string;
    const load = names.includes(name);
    if (load) seen.add(name);
    check(raw.bpf_program__set_autoload(p, load) as number, 'set autoload of program', name);
  }
  const missing = names.filter((n) => !seen.has(n));
  if (missing.length > 0)
    throw new DatapathError('find program', `${missing.join(', ')} in ${path}`, E.ENOENT, 'rebuild the objects (npm run build:bpf)');
}

/** The loaded object, or (closed) the error of a load that returned `r` < 0 (quoting libbpf's lines since `mark`). */
function loaded(obj: BpfObjectPtr, path: string, r: number, mark: number): LoadedObject {
  if (r < 0) {
    raw.bpf_object__close(obj);
    const errno = -r;
    throw new DatapathError('load object', path, errno, loadFailureDetail(errno, mark));
  }
  let closed = false;
  return {
    path,
    progFd(name: string): number {
      const p = raw.bpf_object__find_program_by_name(obj, name);
      if (!p) throw new DatapathError('find program', `${name} in ${path}`, E.ENOENT);
      return check(raw.bpf_program__fd(p) as number, 'program fd', name);
    },
    mapFd(name: string): number {
      const m = raw.bpf_object__find_map_by_name(obj, name);
      if (!m) throw new DatapathError('find map', `${name} in ${path}`, E.ENOENT);
      return check(raw.bpf_map__fd(m) as number, 'map fd', name);
    },
    mapNames(): string[] {
      const out: string[] = [];
      for (let m = raw.bpf_object__next_map(obj, null); m; m = raw.bpf_object__next_map(obj, m)) {
        out.push(raw.bpf_map__name(m) as string);
      }
      return out;
    },
    close(): void {
      if (closed) return;
      closed = true;
      raw.bpf_object__close(obj);
    },
  };
}

function lastLog(mark: number): string | undefined {
  const lines = libbpfLogSince(mark).filter((l) => l.trim() !== '');
  return lines.length
    ? lines
        .slice(-3)
        .join(' | ')
        .replace(/^libbpf: /, '')
    : undefined;
}

function loadFailureDetail(errno: number, mark: number): string | undefined {
  const lines = libbpfLogSince(mark).filter((l) => l.trim() !== '');
  const reuse = lines.find((l) => /reuse pinned map|parameter mismatch/.test(l));
  if (reuse) return `a pinned map does not match this object (${reuse.replace(/^libbpf: /, '').trim()}); uninstall or use another pin dir`;
  if (lines.length === 0) return undefined;
  // The verifier log ends with the reason; keep the tail short.
  let tail = lines.slice(-6).join(' | ');
  if (tail.length > 800) tail = `...${tail.slice(-800)}`;
  return `${errno === E.EACCES ? 'verifier rejected the program' : 'load failed'}: ${tail}`;
}
