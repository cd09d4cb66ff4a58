// fail2ban's bantime.increment for detection policies (issue 18), pure: the
// n-th offence of a source (n from 1) is banned for duration x factor^(n-1),
// at most max_duration, plus up to `jitter` of it at random (so a fleet of
// bans made together does not expire together).

export interface Escalation {
  readonly banMs: number;
  readonly escalationFactor: number;
  readonly maxBanMs: number;
  readonly jitter: number;
}

export function banDurationMs(e: Escalation, offence: number, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(offence));
  const base = Math.min(e.maxBanMs, e.banMs * e.escalationFactor ** (n - 1));
  return Math.round(base * (1 + e.jitter * random()));
}
