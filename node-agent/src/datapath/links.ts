// Low-level attach helpers: XDP and TCX links, clsact filters, queries.

import { DatapathError } from './errors.js';
import {
  BPF_LINK_TYPE_XDP,
  BPF_TC_EGRESS,
  BPF_TC_F_REPLACE,
  check,
  closeFd,
  lastErrno,
  linkCreateOpts,
  raw,
  tcHook,
  tcOpts,
  xdpQueryOpts,
} from './libbpf.js';

export interface LinkInfo {
  readonly type: number;
  readonly id: number;
  readonly progId: number;
  /** 0 once the interface is gone (the link is defunct). */
  readonly ifindex: number;
}

/** bpf_link_info: type, id, prog_id, then the union at 16 (xdp.ifindex / tcx.ifindex). */
export function linkInfo(fd: number, target: string): LinkInfo {
  const info = Buffer.alloc(64);
  const len = new Uint32Array([info.length]);
  check(raw.bpf_obj_get_info_by_fd(fd, info, len) as number, 'read link info', target);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    progId: info.readUInt32LE(8),
    ifindex: info.readUInt32LE(16),
  };
}

/** bpf_prog_info: id at 4, name[16] at 64. */
export function progInfo(fd: number, target: string): { id: number; name: string } {
  const info = Buffer.alloc(256);
  const len = new Uint32Array([info.length]);
  check(raw.bpf_obj_get_info_by_fd(fd, info, len) as number, 'read program info', target);
  const name = info.subarray(64, 80);
  const end = name.indexOf(0);
  return { id: info.readUInt32LE(4), name: name.subarray(0, end < 0 ? 16 : end).toString('utf8') };
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
  const o = xdpQueryOpts();
  check(raw.bpf_xdp_query(ifindex, 0, o) as number, 'query xdp on', ifname);
  return {
    progId: o.readUInt32LE(8),
    drvProgId: o.readUInt32LE(12),
    hwProgId: o.readUInt32LE(16),
    skbProgId: o.readUInt32LE(20),
    mode: o[24]!,
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
  const r = raw.bpf_link_create(progFd, ifindex, attachType, flags ? linkCreateOpts(flags) : null) as number;
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
export const FW_TC_HANDLE = 0xf1ee;
export const FW_TC_PRIORITY = 0xf1ee & 0xffff;

export function clsactAttach(progFd: number, ifindex: number, ifname: string): void {
  const hook = tcHook(ifindex, BPF_TC_EGRESS);
  const r = raw.bpf_tc_hook_create(hook) as number;
  if (r < 0 && lastErrno(r) !== 17 /* EEXIST */) check(r, 'create clsact qdisc on', ifname);
  check(raw.bpf_tc_attach(hook, tcOpts(progFd, BPF_TC_F_REPLACE, FW_TC_HANDLE, FW_TC_PRIORITY)) as number, 'attach tc egress', ifname);
}

export function clsactDetach(ifindex: number, ifname: string): void {
  const hook = tcHook(ifindex, BPF_TC_EGRESS);
  const r = raw.bpf_tc_detach(hook, tcOpts(0, 0, FW_TC_HANDLE, FW_TC_PRIORITY)) as number;
  if (r < 0) {
    const errno = lastErrno(r);
    if (errno === 2 || errno === 19 || errno === 22) return; // filter or device gone
    throw new DatapathError('detach tc egress', ifname, errno);
  }
}

/** Program id of our clsact filter on `ifindex`, 0 if none. */
export function clsactQuery(ifindex: number): number {
  const hook = tcHook(ifindex, BPF_TC_EGRESS);
  const o = tcOpts(0, 0, FW_TC_HANDLE, FW_TC_PRIORITY);
  const r = raw.bpf_tc_query(hook, o) as number;
  return r === 0 ? o.readUInt32LE(16) : 0;
}
