// FLEETWALL_DATABASE_PASSWORD_FILE (compose's generated Postgres password,
// docker secrets, systemd credentials): DATABASE_URL names no password, the
// control plane reads it from the file at each connect; without it the same
// URL is refused by Postgres, so the file is what authenticates.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../control-plane/src/config.js';
import { openDatabase } from '../../control-plane/src/store/database.js';
import { testConfig } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

let pg: TestPostgres;
let dir: string;
before(async () => {
  pg = await startTestPostgres();
  dir = mkdtempSync(join(tmpdir(), 'fwdbpass-'));
});
after(async () => {
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the Postgres password from a file: a URL without one connects and migrates; without the file it is refused', async () => {
  const withPassword = new URL(await pg.newDatabase());
  const password = decodeURIComponent(withPassword.password);
  assert.ok(password.length > 0, 'the test server requires a password');
  const bare = new URL(withPassword);
  bare.password = '';
  const file = join(dir, 'postgres-password');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });

  const { config } = parseConfig([], { DATABASE_URL: bare.toString(), FLEETWALL_DATABASE_PASSWORD_FILE: file });
  assert.equal(config.databasePasswordFile, file);
  const log = pino({ level: 'silent' });
  const db = await openDatabase(testConfig(bare.toString(), { databasePasswordFile: file }), log);
  try {
    const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from meta where key = 'store_id'`;
    assert.equal(row!.n, 1, 'migrated');
  } finally {
    await db.close();
  }
  await assert.rejects(openDatabase(testConfig(bare.toString()), log), /password/i, 'no file: no password');
  writeFileSync(file, 'not-it\n');
  await assert.rejects(openDatabase(testConfig(bare.toString(), { databasePasswordFile: file }), log), /password/i, 'read at connect');
});
