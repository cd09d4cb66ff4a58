import { createNetnsPair } from '../../test/support/netns.js';
import { AgentProcess, UdsProxy } from '../../test/support/agent-process.js';
import { startTestPostgres } from '../../test/support/postgres.js';
import { startTestControlPlane, unaryCall } from '../../test/support/control-plane.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { ping } from '../../test/support/traffic.js';
const bed = createNetnsPair({ tag: 'trycp' });
const pg = await startTestPostgres();
const cp = await startTestControlPlane(await pg.newDatabase());
const link = await UdsProxy.start(cp.target);
let agent: AgentProcess | undefined;
try {
  agent = await AgentProcess.start({ bed, controlPlane: link.address, labels: 'zone=a' });
  await agent.waitHealth('in sync', (h) => h.syncState === 'in_sync');
  const t0 = Date.now();
  const res = await unaryCall(cp.clients.rules, 'createRule', CreateRuleRequest.fromPartial({ rule: { cidr: bed.a.v4Extra[0] + '/32', action: 1 } }));
  console.log('created', res);
  await agent.waitHealth('applied', (h) => h.rulesInKernel === 1);
  console.log('applied after ms', Date.now() - t0);
  console.log('ping blocked', await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 5 }));
  await new Promise((r) => setTimeout(r, 1500));
  const c = await unaryCall(cp.clients.counters, 'getCounters', { query: { nodeName: agent.nodeName, ruleIds: [], topRules: 0 } });
  console.log(JSON.stringify(c, (_k, v) => typeof v === 'bigint' ? String(v) : v));
  const n = await unaryCall(cp.clients.nodes, 'getNode', { name: agent.nodeName });
  console.log(JSON.stringify(n, (_k, v) => typeof v === 'bigint' ? String(v) : v));
} catch (e) { console.log('ERR', e, agent?.tail(30)); }
finally {
  await agent?.cleanup();
  await link.close();
  await cp.stop();
  await pg.stop();
  bed.destroy();
}
