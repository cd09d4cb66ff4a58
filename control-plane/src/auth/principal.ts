// Who is calling, as established by the authentication layer (never by
// what a client says about itself): the audit log's actor and created_by.
import type { Role } from './roles.js';

export type PrincipalKind = 'token' | 'local' | 'insecure' | 'anonymous';

export interface Principal {
  /** The audit identity: "token:3/ci-deploy", "local:loopback", "insecure:10.0.0.7". */
  readonly id: string;
  readonly kind: PrincipalKind;
  readonly role: Role;
  /** The API token's id, for kind "token". */
  readonly tokenId?: bigint;
}

/** A caller of a public method (health, reflection): no credential was asked for. */
export const ANONYMOUS_PRINCIPAL: Principal = Object.freeze({ id: 'anonymous', kind: 'anonymous', role: 'viewer' });

/** A caller on a loopback-only control plane without TLS: the host's own admin. */
export const LOCAL_PRINCIPAL: Principal = Object.freeze({ id: 'local:loopback', kind: 'local', role: 'admin' });

export function tokenPrincipal(id: bigint, name: string, role: Role): Principal {
  return Object.freeze({ id: `token:${id}/${name}`, kind: 'token', role, tokenId: id });
}

/** A caller of a control plane started with --insecure-no-auth (labs). */
export function insecurePrincipal(peerIp: string): Principal {
  return Object.freeze({ id: `insecure:${peerIp || 'unknown'}`, kind: 'insecure', role: 'admin' });
}

/** Compact form carried from the gRPC interceptor to the handlers in call metadata. */
export function encodePrincipal(p: Principal): string {
  return JSON.stringify([p.id, p.kind, p.role, p.tokenId?.toString() ?? '']);
}

export function decodePrincipal(text: string | undefined): Principal | undefined {
  if (!text) return undefined;
  try {
    const [id, kind, role, tokenId] = JSON.parse(text) as [string, PrincipalKind, Role, string];
    return Object.freeze({ id, kind, role, ...(tokenId ? { tokenId: BigInt(tokenId) } : {}) });
  } catch {
    return undefined;
  }
}
