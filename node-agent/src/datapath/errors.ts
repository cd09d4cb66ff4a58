// Typed errors of the data plane. Every libbpf/kernel failure becomes a
// DatapathError naming the operation, its target (interface, map, pin path),
// errno and a human message: "attach xdp to eth9: ENODEV, no such interface".

import { constants as osConstants } from 'node:os';

const ALIASES = new Set(['EWOULDBLOCK', 'EDEADLOCK', 'ENOTSUP']); // prefer EAGAIN, EDEADLK, EOPNOTSUPP
const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(osConstants.errno)
    .filter(([name]) => !ALIASES.has(name))
    .map(([name, num]) => [num as number, name]),
);

/** Human messages, lowercase, for the errors a data-plane operator meets. */
const MESSAGES: Readonly<Record<string, string>> = {
  EPERM: 'operation not permitted (needs root / CAP_BPF + CAP_NET_ADMIN)',
  ENOENT: 'no such file, map entry or object',
  ESRCH: 'no such process or object',
  EINTR: 'interrupted',
  EIO: 'input/output error',
  ENXIO: 'no such device or address',
  E2BIG: 'map is full',
  EBADF: 'bad file descriptor',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory (check the memlock/memcg limits)',
  EACCES: 'permission denied (verifier rejected the program?)',
  EFAULT: 'bad address',
  EBUSY: 'device or resource busy (another program is attached)',
  EEXIST: 'already exists',
  ENODEV: 'no such interface',
  ENOTDIR: 'not a directory',
  EINVAL: 'invalid argument',
  ENOSPC: 'no space left',
  ERANGE: 'result out of range',
  ENOSYS: 'function not implemented by this kernel',
  ENOTSUP: 'operation not supported',
  EOPNOTSUPP: 'operation not supported',
  ENOTEMPTY: 'directory not empty',
  ETIMEDOUT: 'timed out',
  ENOTSOCK: 'not a socket',
};

function errnoCode(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

function errnoMessage(errno: number): string {
  const code = errnoCode(errno);
  return MESSAGES[code] ?? `error ${errno}`;
}

export class DatapathError extends Error {
  override readonly name = 'DatapathError';
  /** 'ENODEV', 'E2BIG', ... */
  readonly code: string;

  constructor(
    /** What was attempted: 'attach xdp', 'update map', 'open pins'... */
    readonly op: string,
    /** The interface, map name or path it was attempted on. */
    readonly target: string,
    /** Positive errno. */
    readonly errno: number,
    /** Overrides the generic errno message. */
    detail?: string,
  ) {
    const code = errnoCode(errno);
    super(`${op} ${preposition(op)}${target}: ${code}, ${detail ?? errnoMessage(errno)}`);
    this.code = code;
  }
}

function preposition(op: string): string {
  if (op.startsWith('attach')) return 'to ';
  if (op.startsWith('detach')) return 'from ';
  return '';
}

/** Positive errno from a libbpf return value (-errno) or the thread's errno. */
export function errnoOf(ret: number, threadErrno: number): number {
  if (ret < 0 && ret > -4096) return -ret;
  return threadErrno > 0 ? threadErrno : 5; /* EIO when nothing better is known */
}
