// The agent's failsafe entries, kept in its own kernel tables (issue 15, the
// lockout guard): allows for the addresses of its control planes - the
// --control-plane names resolved at start and again on every reconnect -
// and for --failsafe-cidrs, whatever the policy, allowlist mode included, so
// that no rule can cut the agent off from the control plane that would undo
// it. They are agent-local rules (reconcile/local-rules.ts) handed to the
// engine, journaled with the pins, reported to the control plane in
// AgentStatus (Explain names them). failsafe-plan.ts decides; this file
// does the look-ups.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Engine } from '../engine.js';
import { controlPlaneHost, failsafeEntries, planLocalRules } from './failsafe-plan.js';
import { formatPrefix } from '../../../common/src/cidr.js';

/** Resolves a host name to its addresses (IPv4 and IPv6). */
export type Lookup = (host: string) => Promise<string[]>;

export const systemLookup: Lookup = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/** The longest a look-up may take before the last good answer is used. */
const LOOKUP_TIMEOUT_MS = 3000;
/** Reconnects re-resolve at most this often. */
const MIN_REFRESH_MS = 1000;

export interface FailsafeConfig {
  readonly controlPlanes: readonly string[];
  readonly failsafeCidrs: readonly string[];
  readonly interfaces: readonly string[];
}

export interface ReportedEntry {
  readonly cidr: string;
  readonly source: string;
}

const KEPT = 'an earlier resolution of a --control-plane name (kept while the name does not resolve)';

export class Failsafe {
  /** Host name -> its addresses at the last successful look-up. */
  private readonly resolved = new Map<string, string[]>();
  private reported: ReportedEntry[] = [];
  private running: Promise<void> | undefined;
  private lastRun = -Infinity;

  constructor(
    private readonly cfg: FailsafeConfig,
    private readonly engine: Pick<Engine, 'replaceLocalRules'>,
    private readonly log: Logger,
    private readonly lookupHost: Lookup = systemLookup,
  ) {}

  /** The entries in the desired set (AgentStatus, /healthz). */
  get entries(): readonly ReportedEntry[] {
    return this.reported;
  }

  /** Re-resolves (on a reconnect): at most once a second, never two at once. */
  refreshSoon(): void {
    if (this.running || performance.now() - this.lastRun < MIN_REFRESH_MS) return;
    void this.refresh();
  }

  /** Resolves the control-plane names and installs the entries; resolves once the engine has them. */
  refresh(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
      this.lastRun = performance.now();
    });
    return this.running;
  }

  private async resolveHost(host: string): Promise<string[] | undefined> {
    if (isIP(host)) return [host];
    let timer: NodeJS.Timeout | undefined;
    try {
      const addrs = await Promise.race([
        this.lookupHost(host),
        new Promise<never>((_r, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
        }),
      ]);
      this.resolved.set(host, addrs);
      return addrs;
    } catch (e) {
      const prev = this.resolved.get(host);
      this.log.warn(
        { host, error: (e as Error).message, kept: prev ?? null },
        'failsafe: a control-plane name does not resolve; keeping the entries an earlier resolution installed',
      );
      return prev;
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    let unresolved = false;
    const controlPlanes: { target: string; addresses: string[] }[] = [];
    for (const target of this.cfg.controlPlanes) {
      const host = controlPlaneHost(target);
      if (host === undefined) continue; // a Unix socket: no address on the data path
      const addrs = await this.resolveHost(host);
      if (addrs === undefined) unresolved = true;
      else controlPlanes.push({ target, addresses: addrs });
    }
    const entries = failsafeEntries({
      controlPlanes,
      failsafeCidrs: this.cfg.failsafeCidrs,
      loopbackAttached: this.cfg.interfaces.includes('lo'),
    });
    let reported: ReportedEntry[] = [];
    await this.engine.replaceLocalRules((current) => {
      const rules = planLocalRules(current, entries, unresolved);
      const byCidr = new Map(entries.map((e) => [e.cidr, e.source]));
      const seen = new Set<string>();
      reported = [];
      for (const r of rules) {
        const cidr = formatPrefix(r.prefix);
        if (seen.has(cidr)) continue;
        seen.add(cidr);
        reported.push({ cidr, source: byCidr.get(cidr) ?? KEPT });
      }
      return rules;
    });
    const changed = JSON.stringify(reported) !== JSON.stringify(this.reported);
    this.reported = reported;
    if (changed) this.log.info({ failsafe: reported }, 'failsafe entries (always allowed, ingress and egress)');
  }
}
