// Low-level attach helpers: XDP and TCX links, clsact filters, queries. The
// structs come from uapi.ts (checked against the C side).

import { constants as osConstants } from 'node:os';
import { DatapathError } from './errors.js';
import { check, closeFd, lastErrno, raw } from './libbpf.js';
import { BPF_LINK_TYPE_XDP, BPF_OBJ_NAME_LEN, BPF_TC_EGRESS, BPF_TC_F_REPLACE, KERNEL_LAYOUT, LIBBPF_LAYOUT, libbpfOpts } from './uapi.js';

const E = osConstants.errno;

export interface LinkInfo {
  readonly type: number;
  readonly id: number;
  readonly progId: number;
  /** 0 once the interface is gone (the link is defunct). */
  readonly ifindex: number;
}

/** bpf_link_info of a link fd (XDP or TCX: both keep the ifindex at the same place). */
export function linkInfo(fd: number, target: string): LinkInfo {
  const L = KERNEL_LAYOUT.bpf_link_info;
  const info = Buffer.alloc(L.size);
  const len = new Uint32Array([info.length]);
  check(raw.bpf_obj_get_info_by_fd(fd, info, len) as number, 'read link info', target);
  return {
    type: info.readUInt32LE(L.fields.type),
    id: info.readUInt32LE(L.fields.id),
    progId: info.readUInt32LE(L.fields.prog_id),
    ifindex: info.readUInt32LE(L.fields['xdp.ifindex']),
  };
}

/** bpf_prog_info of a program fd: its id and name. */
export function progInfo(fd: number, target: string): { id: number; name: string } {
  const L = KERNEL_LAYOUT.bpf_prog_info;
  const info = Buffer.alloc(L.size);
  const len = new Uint32Array([info.length]);
  check(raw.bpf_obj_get_info_by_fd(fd, info, len) as number, 'read program info', target);
  const name = info.subarray(L.fields.name, L.fields.name + BPF_OBJ_NAME_LEN);
  const end = name.indexOf(0);
  return { id: info.readUInt32LE(L.fields.id), name: name.subarray(0, end < 0 ? BPF_OBJ_NAME_LEN : end).toString('utf8') };
}

export interface XdpState {
  readonly progId: number;
  readonly drvProgId: number;
  readonly skbProgId: number;
  readonly hwProgId: number;
  /** XDP_ATTACHED_*: 0 none, 1 driver, 2 generic (skb), 3 hw, 4 multi. */
  readonly mode: number;
}

export function xdpQuery(ifindex: number, ifname: string): XdpState {
  const L = LIBBPF_LAYOUT.bpf_xdp_query_opts;
  const o = libbpfOpts(L);
  check(raw.bpf_xdp_query(ifindex, 0, o) as number, 'query xdp on', ifname);
  return {
    progId: o.readUInt32LE(L.fields.prog_id),
    drvProgId: o.readUInt32LE(L.fields.drv_prog_id),
    hwProgId: o.readUInt32LE(L.fields.hw_prog_id),
    skbProgId: o.readUInt32LE(L.fields.skb_prog_id),
    mode: o[L.fields.attach_mode]!,
  };
}

export function progName(progId: number): string {
  const fd = raw.bpf_prog_get_fd_by_id(progId) as number;
  if (fd < 0) return '?';
  try {
    return progInfo(fd, `program ${progId}`).name;
  } finally {
    closeFd(fd);
  }
}

/** Creates a link (XDP with mode flags, or TCX). Returns the fd or the errno. */
export function linkCreate(progFd: number, ifindex: number, attachType: number, flags: number): { fd: number; errno: number } {
  let opts: Buffer | null = null;
  if (flags) {
    const L = LIBBPF_LAYOUT.bpf_link_create_opts;
    opts = libbpfOpts(L);
    opts.writeUInt32LE(flags, L.fields.flags);
  }
  const r = raw.bpf_link_create(progFd, ifindex, attachType, opts) as number;
  return r >= 0 ? { fd: r, errno: 0 } : { fd: -1, errno: lastErrno(r) };
}

/** Finds the XDP link that holds `progId` on `ifindex` and detaches it. */
export function detachXdpLinkOf(ifindex: number, progId: number): boolean {
  const next = new Uint32Array(1);
  let id = 0;
  while ((raw.bpf_link_get_next_id(id, next) as number) === 0) {
    id = next[0]!;
    const fd = raw.bpf_link_get_fd_by_id(id) as number;
    if (fd < 0) continue;
    try {
      const info = linkInfo(fd, `link ${id}`);
      if (info.type === BPF_LINK_TYPE_XDP && info.ifindex === ifindex && info.progId === progId) {
        check(raw.bpf_link_detach(fd) as number, 'detach foreign xdp link', `link ${id}`);
        return true;
      }
    } finally {
      closeFd(fd);
    }
  }
  return false;
}

// The clsact fallback: one direct-action filter with a fixed handle/priority.
const FW_TC_HANDLE = 0xf1ee;
const FW_TC_PRIORITY = 0xf1ee & 0xffff;

/** The egress clsact hook of an interface. */
function egressHook(ifindex: number): Buffer {
  const L = LIBBPF_LAYOUT.bpf_tc_hook;
  const b = libbpfOpts(L);
  b.writeInt32LE(ifindex, L.fields.ifindex);
  b.writeUInt32LE(BPF_TC_EGRESS, L.fields.attach_point);
  return b;
}

/** Our filter on the hook (progFd 0: to detach or query it). */
function filterOpts(progFd: number, flags: number): Buffer {
  const L = LIBBPF_LAYOUT.bpf_tc_opts;
  const b = libbpfOpts(L);
  b.writeInt32LE(progFd, L.fields.prog_fd);
  b.writeUInt32LE(flags, L.fields.flags);
  b.writeUInt32LE(FW_TC_HANDLE, L.fields.handle);
  b.writeUInt32LE(FW_TC_PRIORITY, L.fields.priority);
  return b;
}

export function clsactAttach(progFd: number, ifindex: number, ifname: string): void {
  const hook = egressHook(ifindex);
  const r = raw.bpf_tc_hook_create(hook) as number;
  if (r < 0 && lastErrno(r) !== E.EEXIST) check(r, 'create clsact qdisc on', ifname);
  check(raw.bpf_tc_attach(hook, filterOpts(progFd, BPF_TC_F_REPLACE)) as number, 'attach tc egress', ifname);
}

export function clsactDetach(ifindex: number, ifname: string): void {
  const r = raw.bpf_tc_detach(egressHook(ifindex), filterOpts(0, 0)) as number;
  if (r < 0) {
    const errno = lastErrno(r);
    if (errno === E.ENOENT || errno === E.ENODEV || errno === E.EINVAL) return; // filter or device gone
    throw new DatapathError('detach tc egress', ifname, errno);
  }
}

/** Program id of our clsact filter on `ifindex`, 0 if none. */
export function clsactQuery(ifindex: number): number {
  const o = filterOpts(0, 0);
  const r = raw.bpf_tc_query(egressHook(ifindex), o) as number;
  return r === 0 ? o.readUInt32LE(LIBBPF_LAYOUT.bpf_tc_opts.fields.prog_id) : 0;
}
