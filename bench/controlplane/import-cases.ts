// The plaintext control plane's cases with one agent: rules with a 1 s ttl
// (how long after their expiry an agent has the delete) and a 1M-line
// ImportRules stream (committed, received by a connected agent, RSS after).
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { ImportRulesRequest, type ImportRulesResponse } from '../../proto/gen/fleetwall/v1/rule_service.js';
import type { ChildControlPlane, TestClients } from '../../test/support/control-plane.js';
import { rulesApi } from '../../test/support/rule-fixtures.js';
import { SyncClient } from '../../test/support/scripted-agent.js';
import { checkpoint, sleep } from '../lib/interrupt.js';
import { emit } from './emit.js';
import { startWorkers, type Worker, waitAll } from './fleet.js';
import { rssMb } from './proc-stats.js';

const now = () => performance.timeOrigin + performance.now();

/** `workers`: where the one agent's worker goes (its owner stops it). */
export async function importCases(cp: ChildControlPlane, clients: TestClients, prefixes: number, workers: Worker[]): Promise<void> {
  const api = rulesApi(clients.rules, 'bench');
  // Expiry: rules with a 1 s ttl, deleted at an agent how long after their expiry.
  const one = new SyncClient(cp.target, { nodeName: 'bench-expiry' }).connect();
  try {
    await one.waitInSync();
    const batch = await api.batchCreate({
      requests: Array.from({ length: 100 }, (_, i) => ({
        rule: { cidr: `12.0.${i}.0/24`, action: Action.ACTION_DENY },
        ttl: { seconds: 1n, nanos: 0 },
      })),
    });
    await one.waitRevision(batch.revision);
    const ids = new Set(batch.rules.map((r) => r.id));
    const expireAt = Math.max(...batch.rules.map((r) => r.expireTime!.getTime()));
    await one.waitFor((c) => [...ids].every((id) => !c.rules.has(id)), 'expiry deletes', 30_000);
    const del = one.deltas.filter((d) => d.delta.deletes.some((id) => ids.has(id)));
    emit('ms.expiry_to_agent_max', Math.max(...del.map((d) => d.receivedAt)) - expireAt, {
      rules: 100,
      note: 'expire_time -> delete delta at an agent (sweep every 200 ms)',
    });
  } finally {
    one.close();
  }

  // A 1M-line import, one agent connected.
  await checkpoint();
  const [w] = (await startWorkers(cp.target, 1, 1, workers)).workers;
  const half = Math.floor(prefixes / 2);
  const line = (i: number) => {
    if (i < half) {
      const v = (0x50000000 + i * 3) >>> 0;
      return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
    }
    const v = (0x10000000 + (i - half) * 512) >>> 0;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.0/24`;
  };
  const t = now();
  const md = new Metadata();
  md.set('x-fleetwall-actor', 'bench');
  const res = await new Promise<ImportRulesResponse>((resolve, reject) => {
    const call = clients.rules.importRules(md, (err: ServiceError | null, r?: ImportRulesResponse) => (err ? reject(err) : resolve(r!)));
    const write = (m: ImportRulesRequest) => (call.write(m) ? Promise.resolve() : new Promise<void>((r) => call.once('drain', () => r())));
    (async () => {
      await write(
        ImportRulesRequest.fromPartial({ part: { $case: 'header', value: { action: Action.ACTION_DENY, comment: 'bench import' } } }),
      );
      const CH = 16384;
      for (let i = 0; i < prefixes; i += CH) {
        const lines: string[] = [];
        for (let j = i; j < Math.min(prefixes, i + CH); j++) lines.push(line(j));
        await write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } }));
      }
      call.end();
    })().catch(reject);
  });
  const commitS = (now() - t) / 1000;
  if (res.added !== BigInt(prefixes)) throw new Error(`import added ${res.added} of ${prefixes}`);
  const got = await waitAll([w!], 1, [res.revision], 300_000);
  const received = (got.get(res.revision.toString())!.lastArrival - t) / 1000;
  emit('seconds.import_1m_commit', commitS, { prefixes });
  emit('seconds.import_1m_received', received, { prefixes, agents: 1 });
  await sleep(2000);
  emit('mb.controlplane_rss_1m_rules', rssMb(cp.pid).rss, { rules: prefixes });
}
