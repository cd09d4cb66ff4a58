// The pin directory: on a bpf filesystem, with maps pinned by name at its top
// and `progs/` and `links/` below; the one check that pinned state is of this
// build's ABI; removal.

import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { FW_ABI_VERSION, FW_META_V2, LAYOUT, MAP, PROG } from './abi.js';
import { mapInfoByFd } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { check, closeFd, raw } from './libbpf.js';

const E = osConstants.errno;

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/fleetwall';

const UNINSTALL_HINT =
  'uninstall the old pins first ("fleetwall agent uninstall" detaches and removes pins of any version), then start again';

/**
 * Refuses pins of another ABI version, before libbpf tries to reuse their
 * maps (EINVAL naming the version found): a pinned fw_meta of another size
 * (ABI 2 had 56 bytes), or of this size with another version number.
 * Version 0 is a creation that died before it finished: reused.
 */
export function checkPinnedAbi(pinDir: string): void {
  const path = join(pinDir, MAP.META);
  if (!existsSync(path)) return;
  const fd = raw.bpf_obj_get(path) as number;
  if (fd < 0) return; // the load reports it
  let version = 0;
  let valueSize = 0;
  try {
    const info = mapInfoByFd(fd, MAP.META);
    valueSize = info.valueSize;
    const v = Buffer.alloc(Math.max(8, info.valueSize));
    if ((raw.bpf_map_lookup_elem(fd, Buffer.alloc(Math.max(4, info.keySize)), v) as number) === 0) {
      version = v.readUInt32LE(valueSize === FW_META_V2.size ? FW_META_V2.abiVersion : LAYOUT.fw_meta.fields.abi_version);
    }
  } finally {
    closeFd(fd);
  }
  const found =
    valueSize !== LAYOUT.fw_meta.size
      ? `${version} (fw_meta of ${valueSize} bytes)`
      : version !== 0 && version !== FW_ABI_VERSION
        ? `${version}`
        : null;
  if (found !== null) {
    throw new DatapathError(
      'open pins',
      pinDir,
      E.EINVAL,
      `pinned state has ABI version ${found}, this build speaks ${FW_ABI_VERSION}; ${UNINSTALL_HINT}`,
    );
  }
}

/** Makes the pin directory and its `progs/` and `links/`, refusing one that is not on a bpf filesystem. */
export function preparePinDir(pinDir: string): void {
  checkBpffs(pinDir);
  for (const d of [pinDir, join(pinDir, 'progs'), join(pinDir, 'links')]) {
    try {
      mkdirSync(d, { recursive: true });
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).errno;
      throw new DatapathError('create pin dir', d, errno ? -errno : E.EIO);
    }
  }
}

/** Pins a program under `progs/` (replacing an older pin of that name). */
function pinProgram(pinDir: string, name: string, fd: number): void {
  const path = join(pinDir, 'progs', name);
  unlinkQuiet(path);
  check(raw.bpf_obj_pin(fd, path) as number, 'pin program', path);
}

/**
 * Pins the programs in force as `progs/fw_xdp_ingress` and `progs/fw_tc_egress`:
 * names of their roles, whichever pair is loaded (with the event code or the _noev one).
 */
export function pinPrograms(pinDir: string, progs: { readonly xdpFd: number; readonly tcFd: number }): void {
  pinProgram(pinDir, PROG.XDP, progs.xdpFd);
  pinProgram(pinDir, PROG.TC, progs.tcFd);
}

/** Refuses a pin dir that is not on a bpf filesystem (pins would fail later, less clearly). */
function checkBpffs(pinDir: string): void {
  let best = '';
  let type = '';
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (!mnt || !fstype) continue;
    const m = mnt.replace(/\\040/g, ' ');
    if ((pinDir === m || pinDir.startsWith(m.endsWith('/') ? m : `${m}/`)) && m.length >= best.length) {
      best = m;
      type = fstype;
    }
  }
  if (type !== 'bpf') {
    throw new DatapathError(
      'open pins',
      pinDir,
      E.ENOTSUP,
      `not on a bpf filesystem (it is on ${type || 'nothing'} at ${best || '/'}); mount one: mount -t bpf bpf /sys/fs/bpf`,
    );
  }
}

export function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* absent */
  }
}

/** Removes every pin and folder under pinDir (uninstall). */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else unlinkQuiet(p);
    }
    try {
      rmdirSync(d);
    } catch {
      /* not empty: something else pinned there */
    }
  };
  walk(pinDir);
}
