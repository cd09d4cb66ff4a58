// The kernel UAPI, libbpf and libc layouts and constants that the FFI code
// lays out by hand (libbpf.ts, links.ts, bpf-map.ts, test-run.ts): one
// definition each. test/dataplane/abi.test.ts checks them against the C side:
// kernel types and enums against the running kernel's BTF (vmlinux.h), the
// libbpf opts structs and the #defines against the installed headers.
//
// A struct is { size, fields }: `size` is what this code allocates for it
// (and passes as `sz` to libbpf, which accepts any size covering the fields
// set and reads the rest as zero; the kernel likewise fills an info struct up
// to the length given); `fields` are the offsets it reads or writes, nested
// members by their C path ('xdp.ifindex'). The check: every offset equals the
// C one, and `size` covers every field.

export interface UapiStruct {
  readonly size: number;
  readonly fields: Readonly<Record<string, number>>;
}

// ---- kernel (linux/bpf.h, linux/if_link.h): checked against the running kernel's BTF

/** Map update flags. */
export const BPF_ANY = 0n;
export const BPF_NOEXIST = 1n;
export const BPF_EXIST = 2n;

/** enum bpf_map_type. */
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_RINGBUF = 27;

/** A ring buffer record's header (u32 length + flags, u32 page offset): the length word's flag bits. */
export const BPF_RINGBUF_BUSY_BIT = 0x80000000;
export const BPF_RINGBUF_DISCARD_BIT = 0x40000000;
export const BPF_RINGBUF_HDR_SZ = 8;

/** enum bpf_attach_type. */
export const BPF_XDP = 37;
export const BPF_TCX_EGRESS = 47;

/** enum bpf_link_type. */
export const BPF_LINK_TYPE_XDP = 6;

/** XDP_ATTACHED_* (bpf_xdp_query's attach_mode). */
export const XDP_ATTACHED_NONE = 0;
export const XDP_ATTACHED_DRV = 1;
export const XDP_ATTACHED_SKB = 2;

/** enum xdp_action (an XDP program's return value). */
export const XDP_DROP = 1;
export const XDP_PASS = 2;

export const KERNEL_ENUMS: Readonly<Record<string, number | bigint>> = {
  BPF_ANY,
  BPF_NOEXIST,
  BPF_EXIST,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_PERCPU_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_RINGBUF,
  BPF_RINGBUF_BUSY_BIT,
  BPF_RINGBUF_DISCARD_BIT,
  BPF_RINGBUF_HDR_SZ,
  BPF_XDP,
  BPF_TCX_EGRESS,
  BPF_LINK_TYPE_XDP,
  XDP_ATTACHED_NONE,
  XDP_ATTACHED_DRV,
  XDP_ATTACHED_SKB,
  XDP_DROP,
  XDP_PASS,
};

export const KERNEL_LAYOUT = {
  /** What bpf_obj_get_info_by_fd fills for a map. */
  bpf_map_info: { size: 88, fields: { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 } },
  /** ... for a program (name: BPF_OBJ_NAME_LEN bytes). */
  bpf_prog_info: { size: 256, fields: { id: 4, name: 64 } },
  /** ... for a link: the XDP and TCX members of the union share the ifindex. */
  bpf_link_info: { size: 64, fields: { type: 0, id: 4, prog_id: 8, 'xdp.ifindex': 16, 'tcx.ifindex': 16 } },
  /** The XDP context a test run takes. */
  xdp_md: { size: 24, fields: { data: 0, data_end: 4, data_meta: 8, ingress_ifindex: 12 } },
  /**
   * A ring buffer map (kernel/bpf/ringbuf.c): mmap offset 0 is the page of
   * consumer_pos (read-write for the consumer), offset PAGE_SIZE the page of
   * producer_pos, then the data pages, mapped twice in a row (read-only): so
   * the positions are one page apart and the data one page after the producer.
   */
  bpf_ringbuf: { size: 12288, fields: { consumer_pos: 4096, producer_pos: 8192 } },
} as const satisfies Record<string, UapiStruct>;

// ---- the installed headers: uapi #defines, libbpf's enums, libc

/** linux/if_link.h. */
export const XDP_FLAGS_SKB_MODE = 2;
export const XDP_FLAGS_DRV_MODE = 4;
/** linux/bpf.h. */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 2;
export const BPF_OBJ_NAME_LEN = 16;
/** bpf/libbpf.h: enum bpf_tc_attach_point, enum bpf_tc_flags. */
export const BPF_TC_EGRESS = 2;
export const BPF_TC_F_REPLACE = 1;
/** sys/mman.h. */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** The page size the map windows are cut in (sysconf(_SC_PAGESIZE) of the host). */
export const PAGE_SIZE = 4096;
/** poll.h: struct pollfd {int fd; short events; short revents;}. */
export const POLLIN = 1;
export const POLLFD_SIZE = 8;
export const POLLFD_EVENTS = 4;
export const POLLFD_REVENTS = 6;
/** linux/membarrier.h. */
export const MEMBARRIER_CMD_GLOBAL = 1;
/** sys/syscall.h: membarrier(2) on this architecture. */
export const SYS_MEMBARRIER = process.arch === 'arm64' ? 283 : 324;

/** The C expression each constant is checked against. */
export const HEADER_CONSTS: Readonly<Record<string, readonly [number, string]>> = {
  XDP_FLAGS_SKB_MODE: [XDP_FLAGS_SKB_MODE, 'XDP_FLAGS_SKB_MODE'],
  XDP_FLAGS_DRV_MODE: [XDP_FLAGS_DRV_MODE, 'XDP_FLAGS_DRV_MODE'],
  BPF_F_TEST_XDP_LIVE_FRAMES: [BPF_F_TEST_XDP_LIVE_FRAMES, 'BPF_F_TEST_XDP_LIVE_FRAMES'],
  BPF_OBJ_NAME_LEN: [BPF_OBJ_NAME_LEN, 'BPF_OBJ_NAME_LEN'],
  BPF_TC_EGRESS: [BPF_TC_EGRESS, 'BPF_TC_EGRESS'],
  BPF_TC_F_REPLACE: [BPF_TC_F_REPLACE, 'BPF_TC_F_REPLACE'],
  PROT_NONE: [PROT_NONE, 'PROT_NONE'],
  PROT_READ: [PROT_READ, 'PROT_READ'],
  PROT_WRITE: [PROT_WRITE, 'PROT_WRITE'],
  MAP_SHARED: [MAP_SHARED, 'MAP_SHARED'],
  MAP_PRIVATE: [MAP_PRIVATE, 'MAP_PRIVATE'],
  MAP_FIXED: [MAP_FIXED, 'MAP_FIXED'],
  MAP_ANONYMOUS: [MAP_ANONYMOUS, 'MAP_ANONYMOUS'],
  MAP_NORESERVE: [MAP_NORESERVE, 'MAP_NORESERVE'],
  PAGE_SIZE: [PAGE_SIZE, 'sysconf(_SC_PAGESIZE)'],
  MEMBARRIER_CMD_GLOBAL: [MEMBARRIER_CMD_GLOBAL, 'MEMBARRIER_CMD_GLOBAL'],
  POLLIN: [POLLIN, 'POLLIN'],
  POLLFD_SIZE: [POLLFD_SIZE, 'sizeof(struct pollfd)'],
  POLLFD_EVENTS: [POLLFD_EVENTS, 'offsetof(struct pollfd, events)'],
  POLLFD_REVENTS: [POLLFD_REVENTS, 'offsetof(struct pollfd, revents)'],
  SYS_MEMBARRIER: [SYS_MEMBARRIER, 'SYS_membarrier'],
};

/** libbpf's opts structs (bpf/bpf.h, bpf/libbpf.h); `sz` is the first field of each. */
export const LIBBPF_LAYOUT = {
  bpf_map_batch_opts: { size: 24, fields: { sz: 0, elem_flags: 8 } },
  bpf_link_create_opts: { size: 64, fields: { sz: 0, flags: 8 } },
  bpf_xdp_query_opts: {
    size: 32,
    fields: { sz: 0, prog_id: 8, drv_prog_id: 12, hw_prog_id: 16, skb_prog_id: 20, attach_mode: 24 },
  },
  bpf_tc_hook: { size: 24, fields: { sz: 0, ifindex: 8, attach_point: 12 } },
  bpf_tc_opts: { size: 32, fields: { sz: 0, prog_fd: 8, flags: 12, prog_id: 16, handle: 20, priority: 24 } },
  bpf_test_run_opts: {
    size: 80,
    fields: {
      sz: 0,
      data_in: 8,
      data_out: 16,
      data_size_in: 24,
      data_size_out: 28,
      ctx_in: 32,
      ctx_size_in: 48,
      retval: 56,
      repeat: 60,
      duration: 64,
      flags: 68,
      cpu: 72,
      batch_size: 76,
    },
  },
} as const satisfies Record<string, UapiStruct>;

/** A zeroed libbpf opts struct with its `sz` set. */
export function libbpfOpts(s: UapiStruct): Buffer {
  const b = Buffer.alloc(s.size);
  b.writeBigUInt64LE(BigInt(s.size), s.fields.sz!);
  return b;
}
