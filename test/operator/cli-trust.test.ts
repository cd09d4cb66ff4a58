// The CLI against a control plane with TLS and API tokens, as an operator
// on its host runs it: it finds the control plane's CA and first admin
// token by itself (FLEETWALL_DATA_DIR), `token create --json` prints an
// object with a `token` field, a viewer token's write exits 6 with the
// server's reason, a revoked token is refused, `audit` shows who did what;
// elsewhere (no data dir) it needs --ca-cert and --token and says so.
// Stored text and error messages reach the terminal without escape
// sequences.
import { type CliRun, runCli } from '../support/cli.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { jsonSafe, sanitizeCell, sanitizeText } from '../../cli/src/sanitize.js';
import { connectClients, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let dataDir: string;
let elsewhere: string;

before(async () => {
  pg = await startTestPostgres();
  dataDir = mkdtempSync(join(tmpdir(), 'fleetwall-cli-tls-'));
  elsewhere = mkdtempSync(join(tmpdir(), 'fleetwall-cli-cwd-'));
  cp = await startTestControlPlane(await pg.newDatabase(), { tls: true, dataDir });
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(elsewhere, { recursive: true, force: true });
});

/** Runs the CLI from a directory without .fleetwall; `env` adds FLEETWALL_* settings. */
function fw(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(`127.0.0.1:${cp.grpcPort}`, args, {
    stdin: 'ignore',
    cwd: elsewhere,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, USER: 'alice', NO_COLOR: '1', ...env },
  });
}

const local = { FLEETWALL_DATA_DIR: '' };

test('on the host: the CA and the admin token are found; token create --json has a token field; ls; a viewer cannot write', async () => {
  local.FLEETWALL_DATA_DIR = dataDir;
  const made = await fw(['token', 'create', '--role', 'viewer', '--name', 'dash', '--json'], local);
  assert.equal(made.code, 0, made.stderr);
  const j = JSON.parse(made.stdout);
  assert.match(j.token, /^fwt_[A-Za-z0-9_-]{43}$/);
  assert.equal(j.apiToken.role, 'ROLE_VIEWER');
  assert.equal(j.apiToken.name, 'dash');
  assert.match(j.apiToken.createdBy, /^token:\d+\/first-admin$/, 'created by the first admin token, found in the data dir');

  const human = await fw(['token', 'create', '--role', 'operator', '--name', 'ci', '--ttl', '30d'], local);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout.trim(), /^fwt_[A-Za-z0-9_-]{43}$/, 'only the token on stdout');
  assert.match(human.stderr, /shown once/);

  const ls = await fw(['token', 'ls', '--json'], local);
  assert.equal(ls.code, 0);
  const names = ls.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).name);
  assert.deepEqual(names, ['first-admin', 'dash', 'ci']);

  const denied = await fw(['block', '192.0.2.1'], { ...local, FLEETWALL_TOKEN: j.token });
  assert.equal(denied.code, 6, denied.stderr);
  assert.match(denied.stderr, /needs the operator role; token:\d+\/dash has viewer/);
  const reads = await fw(['rules', 'ls'], { ...local, FLEETWALL_TOKEN: j.token });
  assert.equal(reads.code, 0, reads.stderr);

  const revoked = await fw(['token', 'revoke', 'dash'], local);
  assert.equal(revoked.code, 0, revoked.stderr);
  const after = await fw(['rules', 'ls', '--json'], { ...local, FLEETWALL_TOKEN: j.token });
  assert.equal(after.code, 6);
  assert.equal(JSON.parse(after.stderr.trim()).error.reason, 'TOKEN_REVOKED');

  const audit = await fw(['audit', '--action', 'token.', '--json'], local);
  assert.equal(audit.code, 0, audit.stderr);
  const events = audit.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    events.map((e) => [e.action, e.note ?? '']),
    [
      ['token.revoke', 'cli:alice'],
      ['token.create', 'cli:alice'],
      ['token.create', 'cli:alice'],
      ['token.create', ''],
    ],
    'newest first; the CLI user is a note, the actor is the token',
  );
  assert.ok(events.slice(0, 3).every((e) => /^token:\d+\/first-admin$/.test(e.actor)));
  assert.equal(events[3].actor, 'system:bootstrap');
  const table = await fw(['audit', '--limit', '2'], local);
  assert.match(table.stdout.split('\n')[0]!, /^ID\s+TIME\s+ACTOR\s+NOTE\s+ACTION/);
  assert.equal(table.stdout.trim().split('\n').length, 3, 'a header and --limit rows');
});

test('elsewhere: no CA means no TLS (exit 5 with a hint); a CA without a token is refused (exit 6) and says how to send one', async () => {
  const plain = await fw(['rules', 'ls']);
  assert.equal(plain.code, 5);
  assert.match(plain.stderr, /--ca-cert/);
  const ca = join(dataDir, 'pki/ca.crt');
  const noToken = await fw(['rules', 'ls', '--ca-cert', ca]);
  assert.equal(noToken.code, 6);
  assert.match(noToken.stderr, /no token was sent: pass --token or FLEETWALL_TOKEN/);
  const admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const ok = await fw(['--ca-cert', ca, '--token', admin, 'rules', 'ls']);
  assert.equal(ok.code, 0, ok.stderr);
  const viaEnv = await fw(['nodes', 'ls'], { FLEETWALL_CA_CERT: ca, FLEETWALL_TOKEN: admin });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
});

// biome-ignore lint/suspicious/noControlCharactersInRegex: what must never reach a terminal
const TERMINAL_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;

test('stored text and error messages reach the terminal without escape sequences', async () => {
  const admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const c = connectClients(`127.0.0.1:${cp.grpcPort}`, { ca: readFileSync(join(dataDir, 'pki/ca.crt')), token: admin });
  const comment = 'ok\u001b[2J\u001b]0;pwned\u0007 \u009b31mred\u202etxt.exe\r\nforged line';
  try {
    await unaryCall(
      c.rules,
      'createRule',
      CreateRuleRequest.fromPartial({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY, comment } }),
    );
  } finally {
    c.close();
  }
  const env = { FLEETWALL_DATA_DIR: dataDir };
  const ls = await fw(['rules', 'ls'], env);
  assert.equal(ls.code, 0, ls.stderr);
  assert.doesNotMatch(ls.stdout, TERMINAL_CONTROL, 'the table carries no control characters');
  assert.match(ls.stdout, /ok.*red.*txt\.exe.*forged line/, 'the printable text stays');
  assert.equal(ls.stdout.trim().split('\n').length, 3, 'a header, one row and the summary: the stored CR LF made no new line');
  const json = await fw(['rules', 'ls', '--json'], env);
  assert.doesNotMatch(json.stdout, TERMINAL_CONTROL, 'JSON escapes them');
  assert.equal(JSON.parse(json.stdout.trim().split('\n')[0]!).comment, comment, 'and keeps the exact text');
  const bad = await fw(['explain', '10.0.0.1\u001b[31mx\u0007'], env);
  assert.notEqual(bad.code, 0);
  assert.doesNotMatch(bad.stderr, TERMINAL_CONTROL, 'an error quoting the input carries none either');
});

test('sanitizer: sequences removed, other controls visible, newlines kept only in multi-line text', () => {
  assert.equal(sanitizeText('a\u001b[1;31mb\u001b[0m'), 'ab');
  assert.equal(sanitizeText('t\u001b]0;title\u0007x'), 'tx');
  assert.equal(sanitizeText('t\u001b]8;;http://x\u001b\\link'), 'tlink');
  assert.equal(sanitizeText('a\u009b2Jb'), 'ab');
  assert.equal(sanitizeText('l1\nl2\tc\u0008'), 'l1\nl2\tc\ufffd');
  assert.equal(sanitizeCell('l1\nl2\r'), 'l1\ufffdl2\ufffd');
  assert.equal(sanitizeCell('abc\u202egnp.exe'), 'abc\ufffdgnp.exe');
  assert.equal(jsonSafe(JSON.stringify('x\u009by\u2028')), '"x\\u009by\\u2028"');
  assert.equal(JSON.parse(jsonSafe(JSON.stringify('x\u009by'))), 'x\u009by');
});
