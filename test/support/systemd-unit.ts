// The shipped systemd units (deploy/systemd/) as data, and their sandbox
// reproduced around a test's process where no systemd runs it.
//
//   const u = readUnit('deploy/systemd/fleetwall-agent.service');
//   u.get('Service', 'ProtectSystem')          // 'strict' (the last assignment), undefined if unset
//   u.all('Service', 'ReadWritePaths')         // every value, split on spaces; an empty assignment resets
//   u.has('Service', 'CapabilityBoundingSet')  // assigned at all (empty included)
//   u.env()                                    // Environment= assignments, and the commented examples below them
//   sandboxArgv(u, { writable: [dir], staging, user: '65534' })  // an argv prefix that runs a command in it
//
// What sandboxArgv() reproduces, with the kernel's own mechanisms (a mount
// namespace and setpriv, as root), so that a process the unit would start
// meets the same walls:
//   ProtectSystem=strict (or DynamicUser=yes)  every mount read-only but /dev, /proc, /sys (and
//                                              namespace files)
//   ReadWritePaths=, StateDirectory=           writable again: the unit's paths, and `writable`
//                                              (the state directory's stand-in)
//   PrivateTmp= (or DynamicUser=yes)           a /tmp of its own (a tmpfs, holding only the test's
//                                              paths it must see) and an empty /var/tmp
//   ProtectHome=yes                            /home, /root and /run/user empty and read-only
//   CapabilityBoundingSet=, NoNewPrivileges=   setpriv --bounding-set, --no-new-privs
//   User=/DynamicUser=                         setpriv --reuid/--regid `user`, no groups, no
//                                              capabilities (a dynamic user: any unprivileged one)
// Not reproduced (no systemd and no seccomp here): SystemCallFilter=,
// RestrictAddressFamilies=, Protect{Kernel*,Clock,Hostname,ControlGroups}=,
// PrivateDevices=, RestrictNamespaces=, LockPersonality=, ... The units set
// only those whose effect cannot reach what the process needs, and
// `systemd-analyze verify` checks their syntax (test/operator/systemd-units.test.ts).
import { readFileSync } from 'node:fs';

export interface Unit {
  readonly path: string;
  /** The last value of `key` in `section`, undefined if unset (or reset). */
  get(section: string, key: string): string | undefined;
  /** Whether `key` is assigned in `section` at all (an empty assignment counts: CapabilityBoundingSet= is "none"). */
  has(section: string, key: string): boolean;
  /** Every value of `key` in `section`, each assignment split on whitespace; an empty assignment resets the list. */
  all(section: string, key: string): string[];
  /** Environment= assignments of [Service]. */
  env(): Record<string, string>;
  /** The `#   NAME=value` examples in comments (what an EnvironmentFile= may hold). */
  commentedEnv(): Record<string, string>;
}

export function readUnit(path: string): Unit {
  const text = readFileSync(path, 'utf8');
  const entries: { section: string; key: string; value: string }[] = [];
  const examples: Record<string, string> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const ex = /^#\s+(FLEETWALL_[A-Z0-9_]+|DATABASE_URL)=(\S*)/.exec(line);
    if (ex) examples[ex[1]!] = ex[2]!;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new Error(`${path}: not key=value: ${line}`);
    entries.push({ section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim() });
  }
  const values = (section: string, key: string): string[] => {
    let out: string[] = [];
    for (const e of entries) {
      if (e.section !== section || e.key !== key) continue;
      out = e.value === '' ? [] : [...out, e.value];
    }
    return out;
  };
  return {
    path,
    get: (section, key) => values(section, key).at(-1),
    has: (section, key) => entries.some((e) => e.section === section && e.key === key),
    all: (section, key) => values(section, key).flatMap((v) => v.split(/\s+/)),
    env() {
      const out: Record<string, string> = {};
      for (const v of values('Service', 'Environment')) {
        for (const a of v.match(/"[^"]*"|\S+/g) ?? []) {
          const t = a.replace(/^"|"$/g, '');
          const i = t.indexOf('=');
          out[t.slice(0, i)] = t.slice(i + 1);
        }
      }
      return out;
    },
    commentedEnv: () => ({ ...examples }),
  };
}

/** Mount points of this mount namespace that ProtectSystem=strict makes read-only (not the API file systems). */
function systemMounts(): string[] {
  const out = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ') as [string, string];
    const mp = pre.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    const fstype = post.split(' ')[0]!;
    if (fstype === 'nsfs' || /^\/(proc|sys|dev)(\/|$)/.test(mp)) continue;
    out.add(mp);
  }
  return [...out];
}

// Runs in the new mount namespace, as root: read-only everything listed, check
// it is, hide the homes, make the writable paths writable again, give it a
// /tmp of its own (a tmpfs mounted at the staging directory, the paths under
// /tmp it must keep bound into it, then moved over /tmp) and an empty
// /var/tmp, then exec the rest of the argv (setpriv ... -- command).
const SCRIPT = `
set -eu
mount -n --make-rprivate /
printf '%s\n' "$FW_SANDBOX_RO" | while IFS= read -r mp; do
  [ -n "$mp" ] && mount -n -o remount,bind,ro "$mp" 2>/dev/null || true
done
printf '%s\n' "$FW_SANDBOX_RO" | while IFS= read -r mp; do
  if [ -n "$mp" ] && [ -d "$mp" ] && [ -w "$mp" ]; then echo "sandbox: $mp is still writable" >&2; exit 97; fi
done
printf '%s\n' "$FW_SANDBOX_HIDE" | while IFS= read -r d; do
  if [ -n "$d" ] && [ -d "$d" ]; then mount -n -t tmpfs -o ro,mode=0755,size=4k fw-protect-home "$d"; fi
done
printf '%s\n' "$FW_SANDBOX_RW" | while IFS= read -r p; do
  if [ -n "$p" ]; then mount -n --bind "$p" "$p" && mount -n -o remount,bind,rw "$p"; fi
done
if [ -n "$FW_SANDBOX_TMP" ]; then
  st=$FW_SANDBOX_TMP
  mount -n -t tmpfs -o mode=1777 fw-private-tmp "$st"
  printf '%s\n' "$FW_SANDBOX_KEEP" | while IFS= read -r p; do
    if [ -n "$p" ]; then mkdir -p "$st/\${p#/tmp/}" && mount -n --bind "$p" "$st/\${p#/tmp/}"; fi
  done
  mount -n --move "$st" /tmp
  if [ -d /var/tmp ]; then mount -n -t tmpfs -o mode=1777 fw-private-var-tmp /var/tmp; fi
fi
unset FW_SANDBOX_RO FW_SANDBOX_RW FW_SANDBOX_HIDE FW_SANDBOX_TMP FW_SANDBOX_KEEP
exec "$@"
`;

export interface SandboxOptions {
  /** Directories to keep writable besides the unit's ReadWritePaths= (its StateDirectory='s stand-in, the test's own files). */
  readonly writable: readonly string[];
  /** Directories under /tmp the process must still see in its own /tmp (a Unix socket's, say); `writable` ones are kept too. */
  readonly visible?: readonly string[];
  /** For PrivateTmp=: an empty directory under /tmp, where the private /tmp is put together before it is moved over /tmp. */
  readonly staging: string;
  /** For User=/DynamicUser=: an unprivileged user (uid) that exists here. */
  readonly user?: string;
}

/** An argv prefix (for spawn) that runs a command in `unit`'s sandbox. Root only. */
export function sandboxArgv(unit: Unit, o: SandboxOptions): string[] {
  const svc = (k: string) => unit.get('Service', k);
  const dynamic = svc('DynamicUser') === 'yes';
  const strict = svc('ProtectSystem') === 'strict' || dynamic;
  const rw = [...unit.all('Service', 'ReadWritePaths').map((p) => p.replace(/^[-+]/, '')), ...o.writable];
  const privateTmp = svc('PrivateTmp') === 'yes' || dynamic;
  if (privateTmp && !o.staging.startsWith('/tmp/')) throw new Error('SandboxOptions.staging must be under /tmp');
  const keep = [...o.writable, ...(o.visible ?? [])].filter((p) => p.startsWith('/tmp/'));
  const hide = svc('ProtectHome') === 'yes' ? ['/home', '/root', '/run/user'] : [];
  const setpriv = ['setpriv'];
  const bset = unit.all('Service', 'CapabilityBoundingSet');
  if (unit.has('Service', 'CapabilityBoundingSet') || dynamic)
    setpriv.push('--bounding-set', ['-all', ...bset.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(','));
  if (svc('NoNewPrivileges') === 'yes' || dynamic) setpriv.push('--no-new-privs');
  if (svc('User') !== undefined || dynamic) {
    if (!o.user) throw new Error(`${unit.path} runs as a user of its own: give SandboxOptions.user`);
    setpriv.push('--reuid', o.user, '--regid', o.user, '--clear-groups', '--inh-caps', '-all');
  }
  return [
    'env',
    `FW_SANDBOX_RO=${strict ? systemMounts().join('\n') : ''}`,
    `FW_SANDBOX_RW=${rw.join('\n')}`,
    `FW_SANDBOX_HIDE=${hide.join('\n')}`,
    `FW_SANDBOX_TMP=${privateTmp ? o.staging : ''}`,
    `FW_SANDBOX_KEEP=${keep.join('\n')}`,
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    SCRIPT,
    'fw-sandbox',
    ...setpriv,
    '--',
  ];
}
