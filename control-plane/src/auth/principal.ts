// Who is calling, as established by the authentication layer (never by
// what a client says about itself): the audit log's actor and created_by.
import type { Role } from './roles.js';

export type PrincipalKind = 'token' | 'local' | 'insecure' | 'anonymous' | 'node';

/** A node, as its verified client certificate names it (auth/node-certificate.ts). */
export interface NodeIdentity {
  readonly name: string;
  /** The certificate's serial (upper-case hex, no leading zeros): the revocation list's key. */
  readonly serial: string;
  /** When the certificate expires (epoch ms): its stream is closed then. */
  readonly notAfterMs: number;
}

export interface Principal {
  /** The audit identity: "token:3/ci-deploy", "local:loopback", "insecure:10.0.0.7". */
  readonly id: string;
  readonly kind: PrincipalKind;
  readonly role: Role;
  /** The API token's id, for kind "token". */
  readonly tokenId?: bigint;
  /** The node, for kind "node" (it has no role: only node methods accept it). */
  readonly node?: NodeIdentity;
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

/**
 * A node with a verified client certificate. Its role is the lowest, and is
 * never consulted: the access table lets a node call only the methods marked
 * `node`, and those accept nothing else with TLS on.
 */
export function nodePrincipal(node: NodeIdentity): Principal {
  return Object.freeze({ id: `node:${node.name}`, kind: 'node', role: 'viewer', node: Object.freeze({ ...node }) });
}

/** Compact form carried from the gRPC interceptor to the handlers in call metadata. */
export function encodePrincipal(p: Principal): string {
  const node = p.node ? [p.node.name, p.node.serial, p.node.notAfterMs] : [];
  return JSON.stringify([p.id, p.kind, p.role, p.tokenId?.toString() ?? '', ...node]);
}

export function decodePrincipal(text: string | undefined): Principal | undefined {
  if (!text) return undefined;
  try {
    const [id, kind, role, tokenId, nodeName, serial, notAfterMs] = JSON.parse(text) as [
      string,
      PrincipalKind,
      Role,
      string,
      string?,
      string?,
      number?,
    ];
    const node =
      nodeName !== undefined ? { node: Object.freeze({ name: nodeName, serial: serial ?? '', notAfterMs: notAfterMs ?? 0 }) } : {};
    return Object.freeze({ id, kind, role, ...(tokenId ? { tokenId: BigInt(tokenId) } : {}), ...node });
  } catch {
    return undefined;
  }
}
