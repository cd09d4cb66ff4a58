// The node's identity (issue 15 part 3): the client certificate that names
// it, made once by enrollment and renewed over the agent's own connection
// well before it expires (at half its remaining life). With TLS, the Sync
// client dials with credentials() and checks the control plane's certificate
// against the CA kept here; without any TLS setting the agent dials in
// plaintext, as before (a loopback control plane without TLS).
//
//   start: identity dir holds a valid certificate for this node -> use it
//          else --join-token + (--ca-cert-hash | --ca-cert) -> enroll
//            (unreachable: retry with backoff; refused or wrong pin: IdentityError)
//   from then on (startRenewal, right after open): renew at half the remaining
//            life, over a channel of its own until the Sync stream is up, then
//            over it -> new certificate on disk -> onRenewed() (the Sync client
//            switches its stream to it)
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type ChannelCredentials, type ChannelOptions, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { EnrollmentServiceClient, type RenewCertificateResponse } from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { isJoinToken } from '../config.js';
import { Backoff } from '../sync/backoff.js';
import type { GrpcChannel } from '../sync/sync-channel.js';
import { createCsr, generateNodeKey } from './csr.js';
import { EnrollError, enroll, fetchPinnedCa, nodeCredentials, toEnrollError } from './enroll-client.js';
import { hasIdentity, type IdentityFiles, identityPaths, readIdentity, writeCertificate, writeKey } from './identity-files.js';

export interface IdentitySettings {
  readonly controlPlanes: readonly string[];
  readonly nodeName: string;
  readonly identityDir: string;
  readonly joinToken: string | undefined;
  /** A file holding the join token, read only when enrolling. */
  readonly joinTokenFile: string | undefined;
  readonly caCertHashes: readonly string[];
  readonly caCertFile: string | undefined;
  /** The name to check in the control plane's certificate when the address does not carry it. */
  readonly tlsServerName: string | undefined;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
}

/** Why the agent cannot get an identity, for good (it stops and says so). */
export class IdentityError extends Error {
  override readonly name = 'IdentityError';
}

/** Whether the agent dials TLS: any identity setting, or an identity already on disk. */
export function wantsTls(s: IdentitySettings): boolean {
  return (
    s.joinToken !== undefined ||
    s.joinTokenFile !== undefined ||
    s.caCertFile !== undefined ||
    s.caCertHashes.length > 0 ||
    hasIdentity(s.identityDir)
  );
}

/** Whether the agent can enroll (again): a token, inline or in a file. */
function canEnroll(s: IdentitySettings): boolean {
  return s.joinToken !== undefined || s.joinTokenFile !== undefined;
}

/** The join token, from the setting or its file. */
function joinTokenOf(s: IdentitySettings): string {
  if (s.joinToken !== undefined) return s.joinToken;
  let text: string;
  try {
    text = readFileSync(s.joinTokenFile!, 'utf8').trim();
  } catch (e) {
    throw new IdentityError(`--join-token-file: cannot read ${s.joinTokenFile}: ${(e as Error).message}`);
  }
  if (!isJoinToken(text)) throw new IdentityError(`--join-token-file: ${s.joinTokenFile} holds no join token (abcdef.0123456789abcdef)`);
  return text;
}

const URI_PREFIX = 'URI:fleetwall://node/';

/** The node name in a node certificate's URI SAN. */
export function certNodeName(certPem: string): string | undefined {
  const alt = new X509Certificate(certPem).subjectAltName ?? '';
  const e = alt.split(', ').find((x) => x.startsWith(URI_PREFIX));
  return e === undefined ? undefined : decodeURIComponent(e.slice(URI_PREFIX.length));
}

export class NodeIdentity {
  private files: IdentityFiles;
  private renewTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Renewals done (health, tests). */
  renewals = 0;
  onRenewed: (() => void) | undefined;
  private channelSource: (() => { address: string; channel: GrpcChannel } | undefined) | undefined;

  private constructor(
    private readonly s: IdentitySettings,
    files: IdentityFiles,
    private readonly log: Logger,
  ) {
    this.files = files;
  }

  /** The identity to dial with, enrolling first if needed; undefined: plaintext (no TLS setting). */
  static async open(s: IdentitySettings, log: Logger): Promise<NodeIdentity | undefined> {
    if (!wantsTls(s)) return undefined;
    const files = NodeIdentity.usable(s, log) ?? (await NodeIdentity.enrollLoop(s, log));
    return new NodeIdentity(s, files, log);
  }

  /** The identity on disk, if it is this node's and not expired. */
  private static usable(s: IdentitySettings, log: Logger): IdentityFiles | undefined {
    if (!hasIdentity(s.identityDir)) return undefined;
    let f: IdentityFiles;
    try {
      f = readIdentity(s.identityDir);
    } catch (e) {
      if (!canEnroll(s)) throw new IdentityError(`the identity in ${s.identityDir} is unusable: ${(e as Error).message}`);
      log.warn({ err: (e as Error).message }, 'the identity on disk is unusable; enrolling again');
      return undefined;
    }
    const name = certNodeName(f.certPem);
    if (name !== s.nodeName)
      throw new IdentityError(
        `the certificate in ${s.identityDir} is node ${JSON.stringify(name)}'s, not ${JSON.stringify(s.nodeName)}: start with --node-name ${name}, or give another --identity-dir to enroll ${s.nodeName}`,
      );
    const validTo = Date.parse(new X509Certificate(f.certPem).validTo);
    if (validTo <= Date.now()) {
      if (!canEnroll(s))
        throw new IdentityError(
          `the node certificate in ${s.identityDir} expired at ${new Date(validTo).toISOString()} (the agent was away longer than its validity): enroll again with a new --join-token`,
        );
      log.warn({ validTo: new Date(validTo).toISOString() }, 'the node certificate expired; enrolling again with the join token');
      return undefined;
    }
    if (s.caCertFile !== undefined) f = { ...f, caPem: readFileSync(s.caCertFile, 'utf8') };
    return f;
  }

  private static channelOptions(s: IdentitySettings): ChannelOptions {
    return s.tlsServerName ? { 'grpc.ssl_target_name_override': s.tlsServerName, 'grpc.default_authority': s.tlsServerName } : {};
  }

  private static async enrollLoop(s: IdentitySettings, log: Logger): Promise<IdentityFiles> {
    if (!canEnroll(s))
      throw new IdentityError(
        `no node certificate in ${s.identityDir}: give a --join-token (an admin makes one with \`fleetwall enroll create\`)`,
      );
    if (s.caCertFile === undefined && s.caCertHashes.length === 0)
      throw new IdentityError(
        'enrolling needs the control plane CA: --ca-cert-hash sha256:... (printed by `fleetwall enroll create`) or --ca-cert FILE',
      );
    const joinToken = joinTokenOf(s);
    const backoff = new Backoff(s.reconnectMinMs, s.reconnectMaxMs);
    for (let attempt = 0; ; attempt++) {
      const address = s.controlPlanes[attempt % s.controlPlanes.length]!;
      try {
        return await NodeIdentity.enrollOnce(s, joinToken, address, log);
      } catch (e) {
        if (!(e instanceof EnrollError)) throw e;
        if (!e.retry) throw new IdentityError(e.message);
        const delay = backoff.next();
        log.warn({ address, err: e.message, retryInMs: delay }, 'enrollment: control plane not reachable; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private static async enrollOnce(s: IdentitySettings, joinToken: string, address: string, log: Logger): Promise<IdentityFiles> {
    const options = NodeIdentity.channelOptions(s);
    const caPem = s.caCertFile !== undefined ? readFileSync(s.caCertFile, 'utf8') : await fetchPinnedCa(address, s.caCertHashes, options);
    const keyPem = generateNodeKey();
    const csrPem = await createCsr(keyPem, s.nodeName);
    const res = await enroll(address, caPem, options, { joinToken, nodeName: s.nodeName, csrPem });
    if (res.nodeName !== s.nodeName) throw new EnrollError(`the control plane enrolled node ${res.nodeName}, not ${s.nodeName}`, false);
    writeKey(s.identityDir, keyPem);
    writeCertificate(s.identityDir, res.certificatePem, caPem);
    log.info(
      { node: res.nodeName, labels: res.labels, expires: res.expireTime?.toISOString(), dir: s.identityDir },
      'enrolled: node certificate stored',
    );
    return { keyPem, certPem: res.certificatePem, caPem };
  }

  get certPem(): string {
    return this.files.certPem;
  }

  get notAfterMs(): number {
    return Date.parse(new X509Certificate(this.files.certPem).validTo);
  }

  get paths(): ReturnType<typeof identityPaths> {
    return identityPaths(this.s.identityDir);
  }

  /** Credentials for a new channel: TLS trusting the CA, presenting the current certificate. */
  credentials(): ChannelCredentials {
    return nodeCredentials(this.files.caPem, this.files.keyPem, this.files.certPem);
  }

  channelOptions(): ChannelOptions {
    return NodeIdentity.channelOptions(this.s);
  }

  /** Where renewals go while the agent has a live connection (its Sync channel); set once the Sync client exists. */
  useChannel(channel: () => { address: string; channel: GrpcChannel } | undefined): void {
    this.channelSource = channel;
  }

  /**
   * Renews at half the remaining life, over the agent's live connection when
   * it has one (useChannel), else over a new one. Started as soon as the
   * identity is open: a start that takes long (a large pinned state read
   * back, a loaded host) must not outlive a short certificate.
   */
  startRenewal(): void {
    const channel = () => this.channelSource?.();
    const backoff = new Backoff(this.s.reconnectMinMs, this.s.reconnectMaxMs);
    const schedule = (ms: number): void => {
      if (this.stopped) return;
      this.renewTimer = setTimeout(run, Math.max(50, Math.min(ms, 2 ** 31 - 1)));
      this.renewTimer.unref();
    };
    const run = (): void => {
      this.renew(channel()).then(
        () => {
          backoff.reset();
          schedule((this.notAfterMs - Date.now()) / 2);
        },
        (e: unknown) => {
          const left = this.notAfterMs - Date.now();
          if (e instanceof EnrollError && !e.retry && (e.reason === 'NODE_REVOKED' || e.reason === 'NODE_CERT_REQUIRED'))
            this.log.error({ err: e.message }, 'certificate renewal refused: this node needs a new join token');
          else this.log.warn({ err: (e as Error).message, msLeft: left }, 'certificate renewal failed; retrying');
          schedule(Math.min(backoff.next(), left > 0 ? left / 4 : this.s.reconnectMaxMs));
        },
      );
    };
    schedule((this.notAfterMs - Date.now()) / 2);
  }

  /** One renewal: a CSR for the node's key, RenewCertificate, the new certificate on disk, onRenewed(). */
  async renew(over?: { address: string; channel: GrpcChannel }): Promise<void> {
    const csrPem = await createCsr(this.files.keyPem, this.s.nodeName);
    const address = over?.address ?? this.s.controlPlanes[0]!;
    const shared = over !== undefined;
    const client = new EnrollmentServiceClient(address, shared ? credentials.createInsecure() : this.credentials(), {
      ...this.channelOptions(),
      ...(shared ? { channelOverride: over.channel } : {}),
    });
    const res = await new Promise<RenewCertificateResponse>((resolve, reject) => {
      client.renewCertificate(
        { csrPem },
        new Metadata(),
        { deadline: Date.now() + 15_000 },
        (e: ServiceError | null, r: RenewCertificateResponse) => {
          // A shared channel belongs to the Sync client: closing this client would close it.
          if (!shared) client.close();
          if (e) reject(toEnrollError(`renewing the node certificate at ${address}`, e));
          else resolve(r);
        },
      );
    });
    if (certNodeName(res.certificatePem) !== this.s.nodeName) throw new EnrollError('the renewed certificate names another node', false);
    // The CA bundle stays the one this node pinned (or was given): a renewal does not widen trust.
    writeCertificate(this.s.identityDir, res.certificatePem, this.files.caPem);
    this.files = { ...this.files, certPem: res.certificatePem };
    this.renewals++;
    this.log.info({ expires: res.expireTime?.toISOString(), renewals: this.renewals }, 'node certificate renewed');
    this.onRenewed?.();
  }

  stop(): void {
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
  }
}
