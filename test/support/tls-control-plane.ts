// Control planes with TLS and API tokens for the security tests, and an
// HTTPS client (fetch cannot be given a CA).
//
//   const t = await startTlsControlPlane(url);     // binds 0.0.0.0: TLS + tokens on both ports
//   t.ca, t.adminToken                             // from <dataDir>/pki/ca.crt and <dataDir>/admin.token
//   const viewer = await t.makeToken('viewer');    // a new API token (via TokenService, as the admin)
//   t.clients(viewer)                              // gRPC clients over TLS with that token
//   await httpsJson(t.cp.httpPort, 'GET', '/v1/rules', { ca: t.ca, token: viewer })
//   const n = await enrollNode(t, 'web-1', { labels: { role: 'web' } })   // join token + CSR -> node certificate
//   new SyncClient(t.cp.target, { nodeName: 'web-1', credentials: n.credentials })  // test/support/scripted-agent.ts
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTokenRequest, Role } from '../../proto/gen/fleetwall/v1/token_service.js';
import { type ChannelCredentials, credentials } from '@grpc/grpc-js';
import { CreateJoinTokenRequest, EnrollRequest } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { createCsr } from '../../control-plane/src/pki/certificate-authority.js';
import type { Config } from '../../control-plane/src/config.js';
import { connectClients, startTestControlPlane, type TestClients, type TestControlPlane, unaryCall } from './control-plane.js';

export interface TlsControlPlane {
  readonly cp: TestControlPlane;
  readonly dataDir: string;
  readonly ca: Buffer;
  readonly adminToken: string;
  /** TLS clients to 127.0.0.1 sending `token` (none: no authorization header). */
  clients(token?: string): TestClients;
  makeToken(role: 'viewer' | 'operator' | 'admin', name?: string): Promise<{ token: string; id: bigint }>;
  stop(): Promise<void>;
}

const ROLE = { viewer: Role.ROLE_VIEWER, operator: Role.ROLE_OPERATOR, admin: Role.ROLE_ADMIN } as const;

export function tempDataDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `fleetwall-${tag}-`));
}

export async function startTlsControlPlane(
  databaseUrl: string,
  overrides: Partial<Config> = {},
  dataDir = tempDataDir('tls'),
): Promise<TlsControlPlane> {
  const cp = await startTestControlPlane(databaseUrl, { grpcHost: '0.0.0.0', httpHost: '0.0.0.0', dataDir, ...overrides });
  const ca = readFileSync(join(dataDir, 'pki/ca.crt'));
  let adminToken = '';
  try {
    adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  } catch {
    // a second process on the same database: the first one wrote it
  }
  const open: TestClients[] = [];
  const t: TlsControlPlane = {
    cp,
    dataDir,
    ca,
    adminToken,
    clients(token) {
      const c = connectClients(`127.0.0.1:${cp.grpcPort}`, { ca, ...(token ? { token } : {}) });
      open.push(c);
      return c;
    },
    async makeToken(role, name) {
      const admin = t.clients(adminToken);
      const res = await unaryCall(
        admin.tokens,
        'createToken',
        CreateTokenRequest.fromPartial({ name: name ?? `${role}-${Math.random().toString(36).slice(2, 8)}`, role: ROLE[role] }),
      );
      return { token: res.token, id: res.apiToken!.id };
    },
    async stop() {
      for (const c of open) c.close();
      await cp.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: any;
}

/** One HTTPS request (or plain HTTP without `ca`) to 127.0.0.1:port; JSON body in and out. */
export function httpsJson(
  port: number,
  method: string,
  path: string,
  o: { ca?: Buffer; token?: string; body?: unknown; host?: string; headers?: Record<string, string> } = {},
): Promise<HttpAnswer> {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  const headers: Record<string, string> = {
    ...(o.host ? { host: o.host } : {}),
    ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
    ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
    ...o.headers,
  };
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, method, path, headers, ...(o.ca ? { ca: o.ca, servername: 'localhost' } : {}) };
    const req = (o.ca ? request : httpRequest)(opts, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON (/metrics)
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: json });
      });
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export interface EnrolledNode {
  readonly nodeName: string;
  readonly keyPem: string;
  readonly certPem: string;
  /** TLS trusting the control plane's CA, presenting this node's certificate. */
  readonly credentials: ChannelCredentials;
  readonly joinToken: string;
  readonly caCertHash: string;
}

/** Enrolls `nodeName` as an agent would: a join token from the admin, a CSR with a fresh key, Enroll. */
export async function enrollNode(
  t: TlsControlPlane,
  nodeName: string,
  o: { labels?: Record<string, string>; grpcPort?: number } = {},
): Promise<EnrolledNode> {
  const admin = t.clients(t.adminToken);
  const jt = await unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ labels: o.labels ?? {} }));
  const { csrPem, keyPem } = await createCsr(nodeName);
  const anon = connectClients(`127.0.0.1:${o.grpcPort ?? t.cp.grpcPort}`, { ca: t.ca });
  const res = await unaryCall(anon.enrollment, 'enroll', EnrollRequest.fromPartial({ joinToken: jt.token, nodeName, csrPem })).finally(() =>
    anon.close(),
  );
  return {
    nodeName,
    keyPem,
    certPem: res.certificatePem,
    credentials: nodeCredentials(t.ca, keyPem, res.certificatePem),
    joinToken: jt.token,
    caCertHash: jt.caCertHash,
  };
}

export function nodeCredentials(ca: Buffer, keyPem: string, certPem: string): ChannelCredentials {
  return credentials.createSsl(ca, Buffer.from(keyPem), Buffer.from(certPem));
}
