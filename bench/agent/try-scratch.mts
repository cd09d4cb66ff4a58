import { createNetnsPair } from '/work/main/test/support/netns.js';
import { AgentProcess, UdsProxy } from '/work/main/test/support/agent-process.js';
import { ScriptedControlPlane, wireRule } from '/work/main/test/agent/scripted-control-plane.js';
import { ping } from '/work/main/test/support/traffic.js';
const bed = createNetnsPair({ tag: 'try' });
const cp = await ScriptedControlPlane.start();
const link = await UdsProxy.start(cp.address);
let agent: AgentProcess | undefined;
try {
  agent = await AgentProcess.start({ bed, controlPlane: link.address });
  console.log('ready', agent.readyInfo());
  const s = await cp.accept();
  console.log('hello', await s.next('hello'));
  s.startSnapshot(5n, 'b3b0c442-98fc-4c1c-9d3b-1c6e0a1f2d3e');
  s.chunk(5n, [wireRule(1, bed.a.v4Extra[0]! + '/32')], true);
  console.log('ack', await s.next('ack'));
  console.log('ping blocked', await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 5 }));
  console.log('ping open', await ping(bed, { from: 'a', src: bed.a.v4, dst: bed.b.v4, count: 5 }));
  let r = await s.next('counterReport');
  while (r.rules.length === 0) r = await s.next('counterReport');
  console.log('report', r.rules, JSON.stringify(r.interfaces, (_k, v) => typeof v === 'bigint' ? String(v) : v));
  console.log(await agent.health());
} catch (e) { console.log('ERR', e, agent?.tail(30)); }
finally {
  await agent?.cleanup();
  await link.close();
  cp.stop();
  bed.destroy();
}
