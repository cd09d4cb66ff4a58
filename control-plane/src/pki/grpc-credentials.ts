// gRPC server credentials that follow TlsFiles: grpc-js's certificate-provider
// credentials (1.10+) call setSecureContext on its HTTP/2 server whenever the
// provider reports new material, so a replaced certificate is served to new
// connections without a restart; existing connections keep theirs.
//
// With a CA bundle the server requests (but does not require) a client
// certificate: a verified one shows up in call.getAuthContext() (node
// identity, issue 15 part 3); an unverified one is not shown there.
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { TlsFiles, TlsMaterial } from './tls-files.js';

type CaListener = (u: { caCertificate: Buffer } | null) => void;
type IdentityListener = (u: { certificate: Buffer; privateKey: Buffer } | null) => void;

class TlsFilesProvider implements experimental.CertificateProvider {
  private readonly ca = new Set<CaListener>();
  private readonly identity = new Set<IdentityListener>();

  constructor(private readonly files: TlsFiles) {
    files.onChange((m) => this.push(m));
  }

  private push(m: TlsMaterial): void {
    for (const l of this.identity) l({ certificate: m.cert, privateKey: m.key });
    if (m.ca) for (const l of this.ca) l({ caCertificate: m.ca });
  }

  // The current material is delivered on the next microtask, as grpc-js's own
  // FileWatcherCertificateProvider does (it reads asynchronously): grpc-js
  // subscribes before it registers the server's watcher, so an update handed
  // over synchronously would reach no server.
  addCaCertificateListener(l: CaListener): void {
    this.ca.add(l);
    const m = this.files.current;
    if (m.ca) queueMicrotask(() => this.ca.has(l) && l({ caCertificate: m.ca! }));
  }
  removeCaCertificateListener(l: CaListener): void {
    this.ca.delete(l);
  }
  addIdentityCertificateListener(l: IdentityListener): void {
    this.identity.add(l);
    const m = this.files.current;
    queueMicrotask(() => this.identity.has(l) && l({ certificate: m.cert, privateKey: m.key }));
  }
  removeIdentityCertificateListener(l: IdentityListener): void {
    this.identity.delete(l);
  }
}

export function grpcServerCredentials(files: TlsFiles): ServerCredentials {
  const provider = new TlsFilesProvider(files);
  // grpc-js 1.14 declares (caProvider, identityProvider, ...) but passes its first
  // argument on as the identity provider and its second as the CA provider
  // (server-credentials.js); one object serves both, and the CA side is null
  // when there is no bundle, so the order does not matter here.
  const withCa = files.current.ca !== undefined;
  return experimental.createCertificateProviderServerCredentials(provider, withCa ? provider : (null as never), false);
}
