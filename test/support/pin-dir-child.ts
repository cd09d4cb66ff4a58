// A process that holds a datapath on a fresh pin dir until it is signalled
// (pin-cleanup.kernel.test.ts): prints the dir, then waits.
import { openDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { uniquePinDir } from './pin-dirs.js';

const dir = uniquePinDir('signalled');
openDatapath({ pinDir: dir, capacity: { prefixesPerTable: 1024, counterSlots: 1024 } });
process.stdout.write(`${dir}\n`);
setInterval(() => undefined, 60_000);
