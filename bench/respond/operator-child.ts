// bench:respond's operator, in a child process: CreateRule every 50 ms
// against the control plane at argv[2] until stdin closes, one latency (ms)
// per line on stdout. Its own process, so what it measures is the control
// plane's answer, not a stall of the bench's event loop (which hosts the
// nodes: a map resize there blocks for a second or more).
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { connectClients, unaryCall } from '../../test/support/control-plane.js';

const clients = connectClients(process.argv[2]!);
let running = true;
process.stdin.on('close', () => {
  running = false;
});
process.stdin.resume();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; running; i++) {
  const t = performance.now();
  await unaryCall(
    clients.rules,
    'createRule',
    CreateRuleRequest.fromPartial({ rule: { cidr: `100.64.${i >> 8}.${i & 255}/32`, action: Action.ACTION_DENY } }),
  );
  process.stdout.write(`${performance.now() - t}\n`);
  await sleep(50);
}
clients.close();
