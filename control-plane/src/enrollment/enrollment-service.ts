// EnrollmentService (and /v1/join-tokens): join tokens, the CA for agents
// that do not trust it yet, enrollment (join token + CSR -> a node client
// certificate) and renewal (current certificate + CSR -> a new one). The
// sequence is at the top of proto/fleetwall/v1/enrollment_service.proto.
//
// Node certificates are signed by the control plane's own CA
// (<data-dir>/pki/ca.key); with operator-given certificates (no CA key) or
// without TLS, enrollment is FAILED_PRECONDITION ENROLLMENT_UNAVAILABLE.
import { X509Certificate } from 'node:crypto';
import { labelProblem } from '../../../common/src/labels.js';
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import type {
  CreateJoinTokenRequest,
  CreateJoinTokenResponse,
  EnrollRequest,
  EnrollResponse,
  GetCertificateAuthorityResponse,
  JoinToken,
  ListJoinTokensRequest,
  ListJoinTokensResponse,
  RenewCertificateRequest,
  RenewCertificateResponse,
  RevokeJoinTokenRequest,
  RevokeJoinTokenResponse,
} from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { normalizeSerial } from '../auth/node-certificate.js';
import type { SecurityMode } from '../auth/security-mode.js';
import type { Reason } from '../errors/catalogue.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { issueClientCert, type KeyAndCert } from '../pki/certificate-authority.js';
import type { CallContext } from '../services/call-context.js';
import type { IssuedCertificate, JoinTokenRow, JoinTokenStore } from '../store/join-token-store.js';
import type { NodeIdentityStore } from '../store/node-identity-store.js';
import { caPinOf } from './ca-pin.js';
import {
  DEFAULT_JOIN_TOKEN_TTL_MS,
  generateJoinToken,
  hashJoinSecret,
  JOIN_TOKEN_ID_RE,
  joinSecretMatches,
  MAX_JOIN_TOKEN_TTL_MS,
  parseJoinToken,
} from './join-token.js';

/** A node name: what the agent's --node-name accepts (node-agent/src/config.ts). */
export const NODE_NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export interface SigningCa {
  readonly ca: KeyAndCert;
  readonly bundlePem: string;
}

export interface EnrollmentDeps {
  readonly mode: SecurityMode;
  /** The own CA (undefined: no CA key here). Read at each use: the files may change. */
  readonly signer: () => SigningCa | undefined;
  /** The CA bundle agents verify the control plane with (own or operator-given); undefined without TLS. */
  readonly caBundle: () => string | undefined;
  readonly tokens: JoinTokenStore;
  readonly identities: NodeIdentityStore;
  readonly nodeCertTtlMs: number;
  /** Counts refused enrollments and renewals (fleetwall_auth_failures_total{reason}). */
  readonly onFailure: (reason: Reason) => void;
  readonly now?: () => Date;
}

export function joinTokenOf(r: JoinTokenRow): JoinToken {
  return {
    id: r.id,
    nodeName: r.node_name,
    labels: r.labels,
    createdBy: r.created_by,
    createTime: r.create_time,
    expireTime: r.expire_time,
    useTime: r.use_time ?? undefined,
    usedByNode: r.used_by_node,
    revokeTime: r.revoke_time ?? undefined,
    revokedBy: r.revoked_by,
  };
}

export function checkLabels(labels: Record<string, string>, field: string): void {
  for (const [k, v] of Object.entries(labels)) {
    const problem = labelProblem(k, v);
    if (problem) throw new FleetwallError('INVALID_LABELS', `${field}: ${problem}`, { field });
  }
}

export function checkNodeName(name: string, field: string): void {
  if (!NODE_NAME_RE.test(name))
    throw new FleetwallError(
      'NODE_NAME_REQUIRED',
      `${field} ${JSON.stringify(name.slice(0, 60))} is not a node name: letters, digits, . _ - (starting and ending with a letter or digit, at most 253)`,
      { field },
    );
}

function durationMs(d: Duration | undefined): number {
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0;
}

export class EnrollmentService {
  private readonly now: () => Date;

  constructor(private readonly d: EnrollmentDeps) {
    this.now = d.now ?? (() => new Date());
  }

  private requireSigner(): SigningCa {
    const s = this.d.mode === 'tls' ? this.d.signer() : undefined;
    if (s) return s;
    throw new FleetwallError(
      'ENROLLMENT_UNAVAILABLE',
      this.d.mode === 'tls'
        ? 'this control plane serves operator-given certificates and has no CA key to sign node certificates with: use its own PKI (no --tls-cert) to enroll nodes'
        : `this control plane runs without TLS (${this.d.mode}): agents connect without certificates, there is nothing to enroll; start it with TLS (--tls or a non-loopback bind)`,
    );
  }

  private refuse(reason: Reason, message: string, metadata: Record<string, string> = {}): never {
    this.d.onFailure(reason);
    throw new FleetwallError(reason, message, metadata);
  }

  async createJoinToken(req: CreateJoinTokenRequest, ctx: CallContext): Promise<CreateJoinTokenResponse> {
    const signer = this.requireSigner();
    const nodeName = req.nodeName.trim();
    if (nodeName !== '') checkNodeName(nodeName, 'node_name');
    checkLabels(req.labels, 'labels');
    const ms = durationMs(req.ttl);
    if (ms < 0 || ms > MAX_JOIN_TOKEN_TTL_MS)
      throw new FleetwallError('INVALID_TTL', `a join token lives at most 7 days (ttl ${ms / 1000}s); leave ttl unset for one hour`, {
        field: 'ttl',
      });
    const t = generateJoinToken();
    const row = await this.d.tokens.create({
      id: t.id,
      secretSha256: hashJoinSecret(t.secret),
      nodeName,
      labels: { ...req.labels },
      createdBy: ctx.actor,
      expireTime: new Date(this.now().getTime() + (ms === 0 ? DEFAULT_JOIN_TOKEN_TTL_MS : ms)),
    });
    return { token: t.token, joinToken: joinTokenOf(row), caCertHash: caPinOf(signer.ca.certPem) };
  }

  async listJoinTokens(req: ListJoinTokensRequest): Promise<ListJoinTokensResponse> {
    return { joinTokens: (await this.d.tokens.list(req.includeInactive)).map(joinTokenOf) };
  }

  async revokeJoinToken(req: RevokeJoinTokenRequest, ctx: CallContext): Promise<RevokeJoinTokenResponse> {
    const id = req.id.trim().split('.')[0]!;
    const row = JOIN_TOKEN_ID_RE.test(id) ? await this.d.tokens.revoke(id, ctx.actor) : undefined;
    if (!row)
      throw new FleetwallError('JOIN_TOKEN_NOT_FOUND', `no join token ${JSON.stringify(req.id)}: list them with \`fleetwall enroll ls\``, {
        id: req.id,
      });
    return { joinToken: joinTokenOf(row) };
  }

  async getCertificateAuthority(): Promise<GetCertificateAuthorityResponse> {
    const bundle = this.d.mode === 'tls' ? this.d.caBundle() : undefined;
    if (bundle === undefined) this.requireSigner(); // throws with the reason
    return { caBundlePem: bundle! };
  }

  private async issue(signer: SigningCa, csrPem: string, nodeName: string): Promise<IssuedCertificate> {
    let certPem: string;
    try {
      certPem = await issueClientCert(signer.ca, csrPem, nodeName, this.d.nodeCertTtlMs, this.now());
    } catch (e) {
      throw new FleetwallError('INVALID_CSR', `csr_pem: ${(e as Error).message}; send a PEM PKCS#10 request signed with the node's key`, {
        field: 'csr_pem',
      });
    }
    const cert = new X509Certificate(certPem);
    return { nodeName, certPem, serial: normalizeSerial(cert.serialNumber), expireTime: new Date(cert.validTo) };
  }

  async enroll(req: EnrollRequest): Promise<EnrollResponse> {
    const signer = this.requireSigner();
    const parts = parseJoinToken(req.joinToken);
    if (!parts) this.refuse('JOIN_TOKEN_INVALID', 'the join token is not of the form abcdef.0123456789abcdef: check --join-token');
    const asked = req.nodeName.trim();
    const out = await this.d.tokens.enroll(parts.id, async (row) => {
      if (!joinSecretMatches(parts.secret, row.secret_sha256))
        this.refuse('JOIN_TOKEN_INVALID', 'the join token was never issued here (or is mistyped): check --join-token');
      if (row.revoke_time !== null)
        this.refuse('JOIN_TOKEN_REVOKED', `join token ${row.id} was revoked: ask an admin for a new one (fleetwall enroll create)`, {
          token_id: row.id,
        });
      if (row.use_time !== null)
        this.refuse(
          'JOIN_TOKEN_USED',
          `join token ${row.id} was already used (by node ${row.used_by_node}): a join token enrolls one node once; ask an admin for a new one`,
          { token_id: row.id },
        );
      if (row.expire_time.getTime() <= this.now().getTime())
        this.refuse(
          'JOIN_TOKEN_EXPIRED',
          `join token ${row.id} expired at ${row.expire_time.toISOString()}: ask an admin for a new one (fleetwall enroll create --ttl)`,
          { token_id: row.id },
        );
      const name = row.node_name !== '' ? row.node_name : asked;
      if (row.node_name !== '' && asked !== '' && asked !== row.node_name)
        this.refuse(
          'NODE_MISMATCH',
          `join token ${row.id} enrolls node ${JSON.stringify(row.node_name)}, not ${JSON.stringify(asked.slice(0, 253))}: start the agent with --node-name ${row.node_name}`,
          { token_node: row.node_name, node_name: asked.slice(0, 253) },
        );
      checkNodeName(name, 'node_name');
      return this.issue(signer, req.csrPem, name);
    });
    if (!out) this.refuse('JOIN_TOKEN_INVALID', 'the join token was never issued here (or is mistyped): check --join-token');
    return {
      certificatePem: out.issued.certPem,
      caBundlePem: signer.bundlePem,
      nodeName: out.issued.nodeName,
      labels: out.token.labels,
      expireTime: out.issued.expireTime,
    };
  }

  async renewCertificate(req: RenewCertificateRequest, ctx: CallContext): Promise<RenewCertificateResponse> {
    const signer = this.requireSigner();
    const node = ctx.principal?.node;
    if (!node) this.refuse('NODE_CERT_REQUIRED', 'RenewCertificate needs the node client certificate being renewed');
    const st = await this.d.identities.standing(node.serial);
    if (!st || st.node_name !== node.name)
      this.refuse('NODE_CERT_REQUIRED', `certificate ${node.serial} was not issued by this control plane: enroll again with a join token`);
    if (st.revoked)
      this.refuse('NODE_REVOKED', `node ${node.name}'s certificate was revoked: it needs a new join token to come back`, {
        node: node.name,
      });
    const issued = await this.issue(signer, req.csrPem, node.name);
    await this.d.identities.recordCertificate(issued.serial, node.name, issued.expireTime);
    return { certificatePem: issued.certPem, caBundlePem: signer.bundlePem, expireTime: issued.expireTime };
  }
}
