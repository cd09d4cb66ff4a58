// The TLS material both servers use, read from files and watched: every
// `intervalMs` the files are stat()ed, and when one changed they are read
// again and, if the certificate and key belong together, handed to every
// listener (the gRPC certificate provider, the HTTPS server's
// setSecureContext). A half-replaced pair (new certificate, old key) is
// ignored until the other file follows; the old pair keeps being served.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { splitPem } from './certificate-authority.js';
import type { TlsFilePaths } from './pki-files.js';

export interface TlsMaterial {
  /** PEM certificate chain, leaf first. */
  readonly cert: Buffer;
  readonly key: Buffer;
  /** PEM CA bundle, when there is one. */
  readonly ca: Buffer | undefined;
}

type Listener = (m: TlsMaterial) => void;

function stamp(path: string | undefined): string {
  if (!path) return '';
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/** Reads and checks a certificate/key pair; throws with the reason. */
export function readTlsMaterial(paths: TlsFilePaths): TlsMaterial {
  const cert = readFileSync(paths.certFile);
  const key = readFileSync(paths.keyFile);
  const ca = paths.caFile ? readFileSync(paths.caFile) : undefined;
  const leaf = new X509Certificate(cert);
  if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error(`${paths.keyFile} is not the key of ${paths.certFile}`);
  if (ca) {
    const certs = splitPem(ca.toString('utf8'));
    if (certs.length === 0) throw new Error(`${paths.caFile} holds no PEM certificate`);
    for (const c of certs) new X509Certificate(c); // each parses
  }
  return { cert, key, ca };
}

export class TlsFiles {
  private material: TlsMaterial;
  private stamps: string;
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  /** How many times new material was loaded after the first (tests, logs). */
  reloads = 0;

  constructor(
    readonly paths: TlsFilePaths,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {
    this.stamps = this.currentStamps();
    this.material = readTlsMaterial(paths);
  }

  private currentStamps(): string {
    return [this.paths.certFile, this.paths.keyFile, this.paths.caFile].map(stamp).join('|');
  }

  get current(): TlsMaterial {
    return this.material;
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Checks the files now; returns whether new material was loaded. */
  check(): boolean {
    const s = this.currentStamps();
    if (s === this.stamps) return false;
    let next: TlsMaterial;
    try {
      next = readTlsMaterial(this.paths);
    } catch (err) {
      // Maybe mid-replacement: try again next time, keep serving the old pair.
      this.logger.warn(
        { err: (err as Error).message },
        'certificate files changed but do not form a valid pair yet; still serving the previous one',
      );
      return false;
    }
    this.stamps = s;
    this.material = next;
    this.reloads++;
    this.logger.info({ certFile: this.paths.certFile, validTo: new X509Certificate(next.cert).validTo }, 'reloaded the TLS certificate');
    for (const l of this.listeners) {
      try {
        l(next);
      } catch (err) {
        this.logger.error({ err }, 'applying a reloaded certificate failed');
      }
    }
    return true;
  }

  start(): void {
    this.timer ??= setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
