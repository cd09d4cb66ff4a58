// A process that holds a test Postgres until it is signalled
// (test/control-plane/test-postgres-cleanup.test.ts): prints its directory and
// postmaster PID as one JSON line, then waits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestPostgres } from './postgres.js';

const pg = await startTestPostgres();
const pid = Number(readFileSync(join(pg.dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
process.stdout.write(`${JSON.stringify({ dir: pg.dir, pid })}\n`);
setInterval(() => undefined, 60_000);
