// koffi declarations for libbpf.so.1 (1.1.x) and the few libc calls the data
// plane needs. This file and its siblings under datapath/ are the only code
// that touches the FFI. Structs are passed as Buffers laid out by hand, from
// the sizes and offsets in uapi.ts (checked against the C headers and the
// running kernel by test/dataplane/abi.test.ts).

import koffi, { type LibraryHandle } from 'koffi';
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { DatapathError, errnoOf } from './errors.js';
import {
  LIBBPF_LAYOUT,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MEMBARRIER_CMD_GLOBAL,
  PAGE_SIZE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  SYS_MEMBARRIER,
  libbpfOpts,
} from './uapi.js';

// Bench call sites import these from here.
export { BPF_XDP, XDP_DROP, XDP_FLAGS_DRV_MODE, XDP_PASS } from './uapi.js';

const E = osConstants.errno;

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

koffi.opaque('bpf_object');
koffi.opaque('bpf_map');
koffi.opaque('bpf_program');

// Opaque handle (a koffi External object).
export type BpfObjectPtr = unknown;

// biome-ignore lint/suspicious/noExplicitAny: koffi functions take and return what their C declaration says
type Fn = (...args: any[]) => any;
const f = (l: LibraryHandle, decl: string): Fn => l.func(decl) as Fn;

export const raw = {
  // objects
  bpf_object__open_file: f(lib, 'bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
  bpf_object__load: f(lib, 'int bpf_object__load(bpf_object *obj)'),
  bpf_object__close: f(lib, 'void bpf_object__close(bpf_object *obj)'),
  bpf_object__next_map: f(lib, 'bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)'),
  bpf_object__find_map_by_name: f(lib, 'bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)'),
  bpf_object__find_program_by_name: f(lib, 'bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)'),
  bpf_map__name: f(lib, 'const char *bpf_map__name(const bpf_map *map)'),
  bpf_map__fd: f(lib, 'int bpf_map__fd(const bpf_map *map)'),
  bpf_map__key_size: f(lib, 'uint32_t bpf_map__key_size(const bpf_map *map)'),
  bpf_map__value_size: f(lib, 'uint32_t bpf_map__value_size(const bpf_map *map)'),
  bpf_map__set_max_entries: f(lib, 'int bpf_map__set_max_entries(bpf_map *map, uint32_t n)'),
  bpf_map__max_entries: f(lib, 'uint32_t bpf_map__max_entries(const bpf_map *map)'),
  bpf_map__set_pin_path: f(lib, 'int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
  bpf_program__fd: f(lib, 'int bpf_program__fd(const bpf_program *prog)'),
  bpf_object__next_program: f(lib, 'bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)'),
  bpf_program__name: f(lib, 'const char *bpf_program__name(const bpf_program *prog)'),
  /** Before bpf_object__load: a program set false is not loaded (nor verified). */
  bpf_program__set_autoload: f(lib, 'int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
  // fds and pins
  bpf_obj_pin: f(lib, 'int bpf_obj_pin(int fd, const char *path)'),
  bpf_obj_get: f(lib, 'int bpf_obj_get(const char *path)'),
  bpf_obj_get_info_by_fd: f(lib, 'int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
  // maps
  bpf_map_update_elem: f(lib, 'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  bpf_map_lookup_elem: f(lib, 'int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  bpf_map_delete_elem: f(lib, 'int bpf_map_delete_elem(int fd, const void *key)'),
  bpf_map_get_next_key: f(lib, 'int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  bpf_map_update_batch: f(lib, 'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)'),
  bpf_map_lookup_batch: f(
    lib,
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)',
  ),
  bpf_map_delete_batch: f(lib, 'int bpf_map_delete_batch(int fd, const void *keys, void *count, const void *opts)'),
  bpf_map_create: f(
    lib,
    'int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)',
  ),
  // programs, links, attach
  bpf_prog_test_run_opts: f(lib, 'int bpf_prog_test_run_opts(int prog_fd, void *opts)'),
  bpf_prog_get_fd_by_id: f(lib, 'int bpf_prog_get_fd_by_id(uint32_t id)'),
  bpf_link_create: f(lib, 'int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
  bpf_link_detach: f(lib, 'int bpf_link_detach(int link_fd)'),
  bpf_link_update: f(lib, 'int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
  bpf_link_get_next_id: f(lib, 'int bpf_link_get_next_id(uint32_t start_id, void *next_id)'),
  bpf_link_get_fd_by_id: f(lib, 'int bpf_link_get_fd_by_id(uint32_t id)'),
  bpf_xdp_query: f(lib, 'int bpf_xdp_query(int ifindex, int flags, void *opts)'),
  bpf_xdp_detach: f(lib, 'int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)'),
  bpf_xdp_attach: f(lib, 'int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts)'),
  bpf_tc_hook_create: f(lib, 'int bpf_tc_hook_create(void *hook)'),
  bpf_tc_attach: f(lib, 'int bpf_tc_attach(const void *hook, void *opts)'),
  bpf_tc_detach: f(lib, 'int bpf_tc_detach(const void *hook, const void *opts)'),
  bpf_tc_query: f(lib, 'int bpf_tc_query(const void *hook, void *opts)'),
  libbpf_num_possible_cpus: f(lib, 'int libbpf_num_possible_cpus(void)'),
  // libc
  close: f(libc, 'int close(int fd)'),
  if_nametoindex: f(libc, 'uint32_t if_nametoindex(const char *name)'),
  vsnprintf: f(libc, 'int vsnprintf(void *buf, size_t size, const char *fmt, void *ap)'),
  mmap: f(libc, 'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  /** mmap with the address as a number (MAP_FIXED windows). */
  mmapAt: f(libc, 'void *mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: f(libc, 'int munmap(void *addr, size_t len)'),
  /** poll(2): the event ring's reader waits with it on a libuv worker (koffi's .async), never on the event loop. */
  poll: f(libc, 'int poll(void *fds, unsigned long nfds, int timeout)'),
  // syscall(2) is variadic; every argument here is an integer, passed in registers either way.
  syscall3: f(libc, 'long syscall(long number, long a, long b, long c)'),
};

// ---- libbpf's log: routed into a ring the errors can quote, and to a sink.

const PrintFn = koffi.proto('int fw_libbpf_print_fn(int level, const char *fmt, void *ap)');
const libbpf_set_print = f(lib, 'void *libbpf_set_print(fw_libbpf_print_fn *fn)');

export type LibbpfLogLevel = 'warn' | 'info' | 'debug';
const LEVELS: LibbpfLogLevel[] = ['warn', 'info', 'debug'];
/** The last 64 warn/info lines, numbered (a load quotes the lines since it began, whatever else logged meanwhile). */
const recent: { seq: number; text: string }[] = [];
let logSeq = 0;
let sink: ((level: LibbpfLogLevel, line: string) => void) | null = null;
const printBuf = Buffer.alloc(8192);

const printCb = koffi.register((level: number, fmt: string, ap: unknown) => {
  const n = raw.vsnprintf(printBuf, printBuf.length, fmt, ap) as number;
  const text = printBuf
    .subarray(0, Math.max(0, Math.min(n, printBuf.length - 1)))
    .toString('utf8')
    .trimEnd();
  const lvl = LEVELS[level] ?? 'debug';
  if (lvl !== 'debug') {
    recent.push({ seq: ++logSeq, text });
    if (recent.length > 64) recent.shift();
  }
  sink?.(lvl, text);
  return 0;
}, koffi.pointer(PrintFn));
libbpf_set_print(printCb);

// ---- loads off the event loop

type AsyncCall = (...args: unknown[]) => void;
const loadOnWorker = (raw.bpf_object__load as unknown as { async: AsyncCall }).async.bind(raw.bpf_object__load);
/** The last load started: loads run one at a time (serialized), each after the one before settled. */
let loadChain: Promise<unknown> = Promise.resolve();

/**
 * bpf_object__load on a libuv worker thread (koffi's asynchronous call): the
 * maps' creation and the verifier (0.3-6 s for our programs under load) never
 * block the event loop. Resolves with what bpf_object__load returned (0 or
 * -errno). Loads are serialized. libbpf's print callback (printCb), called on
 * the worker during the load, is queued by koffi to the main thread while the
 * worker waits for it to return, so its va_list stays valid; nothing on the
 * main thread ever waits for the worker (no deadlock). The caller must not
 * touch `obj` until the promise settles.
 */
export function loadObjectOnWorker(obj: BpfObjectPtr): Promise<number> {
  const run = (): Promise<number> =>
    new Promise((resolve, reject) => {
      loadOnWorker(obj, (err: unknown, r: number) => (err ? reject(err) : resolve(r)));
    });
  const p = loadChain.then(run, run);
  loadChain = p.catch(() => undefined);
  return p;
}

/** Routes libbpf's own log lines (warnings, verifier log) to `fn`. */
export function setLibbpfLogSink(fn: ((level: LibbpfLogLevel, line: string) => void) | null): void {
  sink = fn;
}

/** A mark in libbpf's log: libbpfLogSince(mark) gives the lines logged after it. */
export function libbpfLogMark(): number {
  return logSeq;
}

/** libbpf's warn and info lines logged since `mark` (of the last 64; a sync load meanwhile does not take them away). */
export function libbpfLogSince(mark: number): string[] {
  return recent.filter((r) => r.seq > mark).map((r) => r.text);
}

// ---- helpers

/** Throws a DatapathError when `ret` is negative (libbpf convention: -errno). */
export function check(ret: number, op: string, target: string, detail?: (errno: number) => string | undefined): number {
  if (ret >= 0) return ret;
  const errno = errnoOf(ret, koffi.errno());
  throw new DatapathError(op, target, errno, detail?.(errno));
}

/** Positive errno of the last call that returned `ret`. */
export function lastErrno(ret: number): number {
  return errnoOf(ret, koffi.errno());
}

export function closeFd(fd: number): void {
  if (fd >= 0) raw.close(fd);
}

export function address(buf: Buffer | Uint8Array): bigint {
  return koffi.address(buf);
}

let ncpus = 0;
/** Possible CPUs (the per-CPU value stride of per-CPU maps). */
export function possibleCpus(): number {
  if (ncpus === 0) ncpus = check(raw.libbpf_num_possible_cpus() as number, 'count cpus', 'libbpf');
  return ncpus;
}

/**
 * Rows the rule counters need for the CPUs online now: the highest online
 * CPU number + 1 (from /sys/devices/system/cpu/online, e.g. "0-3,6"); the
 * possible CPUs if the file cannot be read.
 */
export function onlineCpuRows(): number {
  try {
    const text = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim();
    let max = -1;
    for (const part of text.split(',')) {
      const [a, b] = part.split('-');
      max = Math.max(max, Number(b ?? a));
    }
    if (Number.isInteger(max) && max >= 0) return Math.min(max + 1, possibleCpus());
  } catch {
    /* fall through */
  }
  return possibleCpus();
}

// ---- shared memory with the kernel

const MAP_FAILED = 2n ** 64n - 1n;

/** A BPF_F_MMAPABLE map's values mapped into this process (read-write). */
export interface Mapping {
  readonly buffer: ArrayBuffer;
  readonly length: number;
  unmap(): void;
}

/** mmaps `bytes` of an mmapable map's values. The buffer is unusable after unmap(). */
export function mmapMap(fd: number, bytes: number, target: string): Mapping {
  const length = Math.max(PAGE_SIZE, Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE);
  const p = raw.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n) as unknown;
  if (p === null || (typeof p === 'bigint' && p === MAP_FAILED) || (typeof p === 'number' && p === -1)) {
    throw new DatapathError('mmap map', target, koffi.errno() || E.EINVAL);
  }
  const buffer = koffi.view(p as never, length) as ArrayBuffer;
  let mapped = true;
  return {
    buffer,
    length,
    unmap(): void {
      if (!mapped) return;
      mapped = false;
      raw.munmap(p, length);
    },
  };
}

function failed(p: unknown): boolean {
  return (
    p === null ||
    (typeof p === 'bigint' && p === MAP_FAILED) ||
    (typeof p === 'number' && p === -1) ||
    koffi.address(p as never) === MAP_FAILED
  );
}

/**
 * An mmapable map's values, mapped into this process only while they are
 * used: the address range is reserved once (PROT_NONE, no memory), and
 * windows of it (page runs, or all of it) are mapped onto the map's pages
 * with MAP_FIXED on demand, then released together. The views over `buffer`
 * stay valid for the life of the region; touching a page outside a mapped
 * window faults (SIGSEGV), so every access goes through ensure() first.
 *
 * Why: pages of a mapped BPF array count in the process's RSS (they are
 * inserted into its page tables when mapped); the tables are kernel memory
 * whether or not the agent maps them, so at rest it keeps none mapped.
 * A window costs ~8 us (mmap + its share of the release); the whole of a
 * 16 MB table ~0.3 ms to map and ~0.3 ms to release.
 */
export class MapRegion {
  readonly buffer: ArrayBuffer;
  readonly length: number;
  private readonly ptr: unknown;
  private readonly base: bigint;
  /** 1 = page mapped onto the map. */
  private readonly pages: Uint8Array;
  private mappedPages = 0;
  private closed = false;
  /** Windows mapped since the region was created (tests, metrics). */
  windowsMapped = 0;
  /** Counts release()s: a range ensured since the last one is still mapped (ensureOnce()). */
  private releases = 0;

  constructor(
    private readonly fd: number,
    bytes: number,
    private readonly target: string,
  ) {
    this.length = Math.max(PAGE_SIZE, Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE);
    const p = raw.mmap(null, this.length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0n) as unknown;
    if (failed(p)) throw new DatapathError('reserve address space for map', target, koffi.errno() || E.ENOMEM);
    this.ptr = p;
    this.base = koffi.address(p as never) as bigint;
    this.buffer = koffi.view(p as never, this.length) as ArrayBuffer;
    this.pages = new Uint8Array(this.length / PAGE_SIZE);
  }

  /** Pages mapped now. */
  get mapped(): number {
    return this.mappedPages;
  }

  /** Maps the pages covering bytes [off, off + len) that are not mapped yet. */
  ensure(off: number, len: number): void {
    const first = Math.floor(off / PAGE_SIZE);
    const last = Math.floor((off + Math.max(1, len) - 1) / PAGE_SIZE);
    if (first === last) {
      if (this.pages[first] === 0) this.mapRun(first, 1);
      return;
    }
    this.ensurePages(first, last);
  }

  /**
   * ensure(off, len), but when a page of it is missing, maps the aligned
   * windows of `chunk` bytes around it: work that walks the region in order
   * then maps one window per chunk instead of one per page.
   */
  ensureChunked(off: number, len: number, chunk: number): void {
    if (this.mappedPages === this.pages.length) return;
    const first = Math.floor(off / PAGE_SIZE);
    const last = Math.floor((off + Math.max(1, len) - 1) / PAGE_SIZE);
    for (let p = first; p <= last; p++) {
      if (this.pages[p] !== 0) continue;
      const lo = Math.floor(off / chunk) * (chunk / PAGE_SIZE);
      const hi = Math.min(this.pages.length, Math.ceil((off + Math.max(1, len)) / chunk) * (chunk / PAGE_SIZE)) - 1;
      this.ensurePages(lo, hi);
      return;
    }
  }

  /** Maps every page (bulk work: one mmap instead of many windows). */
  mapAll(): void {
    if (this.mappedPages === this.pages.length) return;
    if (this.mappedPages > 0) this.release();
    this.mapRun(0, this.pages.length);
  }

  private ensurePages(first: number, last: number): void {
    const pages = this.pages;
    let p = first;
    while (p <= last) {
      if (pages[p] !== 0) {
        p++;
        continue;
      }
      let q = p;
      while (q + 1 <= last && pages[q + 1] === 0) q++;
      this.mapRun(p, q - p + 1);
      p = q + 1;
    }
  }

  private mapRun(page: number, n: number): void {
    if (this.closed) throw new DatapathError('map window of', this.target, E.EBADF, 'the region was closed');
    const addr = this.base + BigInt(page * PAGE_SIZE);
    const r = raw.mmapAt(addr, n * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, this.fd, BigInt(page * PAGE_SIZE)) as unknown;
    if (failed(r) || (koffi.address(r as never) as bigint) !== addr) {
      throw new DatapathError('mmap window of map', `${this.target} (pages ${page}..${page + n - 1})`, koffi.errno() || E.EINVAL);
    }
    this.pages.fill(1, page, page + n);
    this.mappedPages += n;
    this.windowsMapped++;
  }

  /**
   * ensure(off, len) for a range the caller ensures often (a /16 level of
   * 256 KB): `memo` remembers the release it was last mapped after, and the
   * pages are checked only when a release came since.
   */
  ensureOnce(off: number, len: number, memo: { at: number }): void {
    if (memo.at === this.releases && this.mappedPages > 0) return;
    this.ensure(off, len);
    memo.at = this.releases;
  }

  /** Unmaps every window (the range stays reserved). */
  release(): void {
    if (this.mappedPages === 0 || this.closed) return;
    this.releases++;
    const r = raw.mmapAt(this.base, this.length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0n) as unknown;
    if (failed(r)) throw new DatapathError('unmap windows of map', this.target, koffi.errno() || E.EINVAL);
    this.pages.fill(0);
    this.mappedPages = 0;
  }

  /** Gives the address range back. Views over `buffer` must not be used after this. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    raw.munmap(this.ptr, this.length);
    this.mappedPages = 0;
  }
}

/**
 * Waits for an RCU grace period (membarrier(MEMBARRIER_CMD_GLOBAL) is
 * synchronize_rcu()): every XDP/TC program run that started before the
 * call has finished, and every later run sees the stores made before it.
 */
export function rcuGracePeriod(): void {
  const r = Number(raw.syscall3(SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL, 0, 0));
  if (r !== 0) throw new DatapathError('wait for an RCU grace period (membarrier)', 'kernel', koffi.errno() || E.ENOSYS);
}

// ---- libbpf opts structs

export function batchOpts(elemFlags: bigint): Buffer {
  const L = LIBBPF_LAYOUT.bpf_map_batch_opts;
  const b = libbpfOpts(L);
  b.writeBigUInt64LE(elemFlags, L.fields.elem_flags);
  return b;
}
