// Our programs on interfaces, recorded as pins under `links/`:
// `<ifname>-xdp-native|xdp-generic|egress-tcx` (the pinned links: they keep
// the programs attached whatever happens to the process) and
// `<ifname>-egress-clsact` (the clsact fallback has no link: the TC program
// is pinned there as the record that the filter must be removed).
// One detach path (detachLinks) serves detach() and uninstall of any version.

import { readdirSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AttachOptions, EgressAttachMode, InterfaceAttachment, XdpAttachMode } from './datapath.js';
import { DatapathError } from './errors.js';
import { check, closeFd, lastErrno, raw } from './libbpf.js';
import { clsactAttach, clsactDetach, clsactQuery, detachXdpLinkOf, linkCreate, linkInfo, progName, xdpQuery } from './links.js';
import type { Programs } from './objects.js';
import { removePins, unlinkQuiet } from './pins.js';
import {
  BPF_TCX_EGRESS,
  BPF_XDP,
  XDP_ATTACHED_DRV,
  XDP_ATTACHED_NONE,
  XDP_ATTACHED_SKB,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_SKB_MODE,
} from './uapi.js';

const E = osConstants.errno;

/** Attach options this implementation adds (all optional). */
export interface BpfAttachOptions extends AttachOptions {
  /** 'auto' (default): a TCX link where the kernel has it, else clsact. */
  readonly egressMode?: EgressAttachMode | 'auto';
}

type LinkKind = 'xdp-native' | 'xdp-generic' | 'egress-tcx' | 'egress-clsact';

interface LinkPin {
  readonly ifname: string;
  readonly kind: LinkKind;
  readonly path: string;
}

const LINK_RE = /^(.+)-(xdp-native|xdp-generic|egress-tcx|egress-clsact)$/;

/** The link pins under pinDir (of one interface, or all). */
function listLinkPins(pinDir: string, ifname?: string): LinkPin[] {
  const dir = join(pinDir, 'links');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: LinkPin[] = [];
  for (const n of names) {
    const m = LINK_RE.exec(n);
    if (!m) continue;
    if (ifname !== undefined && m[1] !== ifname) continue;
    out.push({ ifname: m[1]!, kind: m[2] as LinkKind, path: join(dir, n) });
  }
  return out;
}

/** The ifindex of an interface (ENODEV if there is none). */
export function ifindexOf(ifname: string): number {
  const ifindex = raw.if_nametoindex(ifname) as number;
  if (!ifindex) throw new DatapathError('attach xdp', ifname, E.ENODEV, 'no such interface');
  return ifindex;
}

/**
 * Detaches what the link pins under pinDir record (of one interface, or
 * all) and removes those pins. Loads nothing, so it works for pins of any ABI
 * version. Returns the interfaces detached, each with the ifindex its links
 * were on (0: only a clsact filter, or the interface is gone).
 */
export function detachLinks(pinDir: string, ifname?: string): Map<string, number> {
  const detached = new Map<string, number>();
  for (const pin of listLinkPins(pinDir, ifname)) {
    if (pin.kind === 'egress-clsact') {
      const idx = raw.if_nametoindex(pin.ifname) as number;
      if (idx) clsactDetach(idx, pin.ifname);
      if (!detached.has(pin.ifname)) detached.set(pin.ifname, 0);
    } else {
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd >= 0) {
        try {
          const info = linkInfo(fd, pin.path);
          if (info.ifindex) {
            const r = raw.bpf_link_detach(fd) as number;
            if (r < 0 && lastErrno(r) !== E.ENOLINK) check(r, `detach ${pin.kind.startsWith('xdp') ? 'xdp' : 'tc egress'}`, pin.ifname);
            detached.set(pin.ifname, info.ifindex);
          }
        } finally {
          closeFd(fd);
        }
      }
    }
    unlinkQuiet(pin.path);
  }
  return detached;
}

/**
 * Detaches every program fleetwall attached from pins under pinDir and
 * removes the pins, without loading any object: works for pins of any ABI
 * version (uninstall of an older install). Returns the interfaces detached.
 */
export function uninstallPins(pinDir: string, logger?: Logger): string[] {
  const dir = resolve(pinDir);
  const detached = [...detachLinks(dir).keys()].sort();
  removePins(dir);
  logger?.info({ pinDir: dir, detached }, 'uninstalled');
  return detached;
}

/** Attaches the loaded programs, pinning the links under pinDir; reads what is attached. */
export class LinkAttacher {
  constructor(
    private readonly pinDir: string,
    private progs: Programs,
    private readonly log: Logger | undefined,
  ) {}

  /** The programs later attaches use (links already pinned keep theirs until attach() or a swap). */
  setPrograms(progs: Programs): void {
    this.progs = progs;
  }

  /**
   * Points every pinned link at `progs` (bpf_link_update: atomic per link; a
   * packet is decided by the old program or the new one) and the clsact
   * filters too (a replace); later attaches use them. Links whose interface
   * is gone are skipped. Returns the links and filters whose program changed.
   */
  switchPrograms(progs: Programs): number {
    let changed = 0;
    for (const pin of listLinkPins(this.pinDir)) {
      if (pin.kind === 'egress-clsact') {
        const ifindex = raw.if_nametoindex(pin.ifname) as number;
        if (!ifindex || clsactQuery(ifindex) === 0) continue;
        clsactAttach(progs.tcFd, ifindex, pin.ifname);
        unlinkQuiet(pin.path);
        check(raw.bpf_obj_pin(progs.tcFd, pin.path) as number, 'pin', pin.path);
        changed++;
        continue;
      }
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd < 0) continue;
      try {
        const info = linkInfo(fd, pin.path);
        if (!info.ifindex) continue; // defunct: the interface is gone
        const xdp = pin.kind.startsWith('xdp');
        if (info.progId === (xdp ? progs.xdpProgId : progs.tcProgId)) continue;
        const r = raw.bpf_link_update(fd, xdp ? progs.xdpFd : progs.tcFd, null) as number;
        if (r < 0 && lastErrno(r) !== E.ENOLINK) check(r, `update ${xdp ? 'xdp' : 'tc'} program on`, pin.ifname);
        if (r >= 0) changed++;
      } finally {
        closeFd(fd);
      }
    }
    this.progs = progs;
    return changed;
  }

  /** XDP on ifindex: keeps our link there (updating its program), or creates one; refuses a foreign program unless asked. */
  attachXdp(ifname: string, ifindex: number, opts: AttachOptions): XdpAttachMode {
    // Ours already? (pinned link still on this interface)
    for (const pin of listLinkPins(this.pinDir, ifname)) {
      if (!pin.kind.startsWith('xdp')) continue;
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd < 0) {
        unlinkQuiet(pin.path);
        continue;
      }
      try {
        const info = linkInfo(fd, pin.path);
        if (info.ifindex === ifindex) {
          const wanted = opts.xdpMode ?? 'auto';
          const mode: XdpAttachMode = pin.kind === 'xdp-native' ? 'native' : 'generic';
          if (wanted === 'auto' || wanted === mode) {
            if (info.progId !== this.progs.xdpProgId) {
              check(raw.bpf_link_update(fd, this.progs.xdpFd, null) as number, 'update xdp program on', ifname);
            }
            return mode;
          }
          // A different mode was asked for: replace our own link.
          check(raw.bpf_link_detach(fd) as number, 'detach xdp', ifname);
        }
      } finally {
        closeFd(fd);
      }
      unlinkQuiet(pin.path); // defunct (interface gone) or being replaced
    }

    const cur = xdpQuery(ifindex, ifname);
    if (cur.mode !== XDP_ATTACHED_NONE) {
      const foreign = [cur.drvProgId, cur.skbProgId, cur.hwProgId, cur.progId].find((id) => id !== 0) ?? 0;
      if (!opts.replaceForeign) {
        throw new DatapathError(
          'attach xdp',
          ifname,
          E.EBUSY,
          `interface already has XDP program ${foreign} (${progName(foreign)}) that fleetwall did not attach; pass replaceForeign to replace it`,
        );
      }
      this.log?.warn({ ifname, progId: foreign, name: progName(foreign) }, 'replacing a foreign XDP program');
      const flags = cur.mode === XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE : cur.mode === XDP_ATTACHED_DRV ? XDP_FLAGS_DRV_MODE : 0;
      const r = raw.bpf_xdp_detach(ifindex, flags, null) as number;
      if (r < 0 && !detachXdpLinkOf(ifindex, foreign)) {
        throw new DatapathError('detach foreign xdp program from', ifname, lastErrno(r));
      }
    }

    const wanted = opts.xdpMode ?? 'auto';
    let mode: XdpAttachMode = wanted === 'generic' ? 'generic' : 'native';
    let res = linkCreate(this.progs.xdpFd, ifindex, BPF_XDP, mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
    if (res.fd < 0 && mode === 'native' && wanted === 'auto' && res.errno !== E.EBUSY && res.errno !== E.ENODEV) {
      this.log?.warn({ ifname, errno: res.errno }, 'native XDP not available on this interface; falling back to generic (slower) mode');
      mode = 'generic';
      res = linkCreate(this.progs.xdpFd, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE);
    }
    if (res.fd < 0) {
      throw new DatapathError(
        'attach xdp',
        ifname,
        res.errno,
        res.errno === E.ENODEV ? 'no such interface' : res.errno === E.EBUSY ? 'another XDP program is attached' : undefined,
      );
    }
    this.pinLink(res.fd, join(this.pinDir, 'links', `${ifname}-xdp-${mode}`), ifname, 'xdp');
    return mode;
  }

  /** TC egress on ifindex: a TCX link where the kernel has one (and `wanted` allows), else a clsact filter. */
  attachEgress(ifname: string, ifindex: number, wanted: EgressAttachMode | 'auto'): EgressAttachMode {
    for (const pin of listLinkPins(this.pinDir, ifname)) {
      if (pin.kind === 'egress-tcx') {
        const fd = raw.bpf_obj_get(pin.path) as number;
        if (fd >= 0) {
          try {
            const info = linkInfo(fd, pin.path);
            if (info.ifindex === ifindex && wanted !== 'clsact') {
              if (info.progId !== this.progs.tcProgId)
                check(raw.bpf_link_update(fd, this.progs.tcFd, null) as number, 'update tc program on', ifname);
              return 'tcx';
            }
            if (info.ifindex === ifindex) check(raw.bpf_link_detach(fd) as number, 'detach tc egress', ifname);
          } finally {
            closeFd(fd);
          }
        }
        unlinkQuiet(pin.path);
      } else if (pin.kind === 'egress-clsact') {
        if (wanted !== 'tcx' && clsactQuery(ifindex) !== 0) {
          clsactAttach(this.progs.tcFd, ifindex, ifname); // replace keeps it current
          return 'clsact';
        }
        clsactDetach(ifindex, ifname);
        unlinkQuiet(pin.path);
      }
    }
    if (wanted !== 'clsact') {
      const res = linkCreate(this.progs.tcFd, ifindex, BPF_TCX_EGRESS, 0);
      if (res.fd >= 0) {
        this.pinLink(res.fd, join(this.pinDir, 'links', `${ifname}-egress-tcx`), ifname, 'tc egress');
        return 'tcx';
      }
      if (wanted === 'tcx' || res.errno === E.ENODEV)
        throw new DatapathError('attach tc egress', ifname, res.errno, res.errno === E.ENODEV ? 'no such interface' : undefined);
      this.log?.warn({ ifname, errno: res.errno }, 'TCX links not available; falling back to a clsact filter');
    }
    clsactAttach(this.progs.tcFd, ifindex, ifname);
    // No link to pin: pin the program as the record that uninstall must remove the filter.
    const marker = join(this.pinDir, 'links', `${ifname}-egress-clsact`);
    unlinkQuiet(marker);
    check(raw.bpf_obj_pin(this.progs.tcFd, marker) as number, 'pin', marker);
    return 'clsact';
  }

  private pinLink(fd: number, path: string, ifname: string, what: string): void {
    try {
      unlinkQuiet(path);
      const r = raw.bpf_obj_pin(fd, path) as number;
      if (r < 0) {
        const errno = lastErrno(r);
        raw.bpf_link_detach(fd);
        throw new DatapathError(`pin ${what} link of`, `${ifname} at ${path}`, errno);
      }
    } finally {
      closeFd(fd);
    }
  }

  /** Interfaces with pinned links, and how each is attached. */
  attachments(): InterfaceAttachment[] {
    const byName = new Map<string, { ifindex: number; xdpMode: XdpAttachMode | 'none'; egressMode: EgressAttachMode | 'none' }>();
    for (const pin of listLinkPins(this.pinDir)) {
      let a = byName.get(pin.ifname);
      if (!a) byName.set(pin.ifname, (a = { ifindex: 0, xdpMode: 'none', egressMode: 'none' }));
      if (pin.kind === 'egress-clsact') {
        a.egressMode = 'clsact';
        if (!a.ifindex) a.ifindex = (raw.if_nametoindex(pin.ifname) as number) || 0;
        continue;
      }
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd < 0) continue;
      try {
        const info = linkInfo(fd, pin.path);
        if (!info.ifindex) continue; // defunct: the interface is gone
        a.ifindex = info.ifindex;
        if (pin.kind === 'xdp-native') a.xdpMode = 'native';
        else if (pin.kind === 'xdp-generic') a.xdpMode = 'generic';
        else a.egressMode = 'tcx';
      } finally {
        closeFd(fd);
      }
    }
    return [...byName.entries()]
      .filter(([, a]) => a.xdpMode !== 'none' || a.egressMode !== 'none')
      .map(([ifname, a]) => ({ ifname, ...a }))
      .sort((x, y) => x.ifname.localeCompare(y.ifname));
  }
}
