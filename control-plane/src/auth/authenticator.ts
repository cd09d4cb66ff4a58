// Who is calling and may they: the one decision every gRPC call and HTTP
// request goes through (grpc-auth.ts, http-auth.ts), by the access table and
// the security mode. Answers synchronously when it can (a cached token, no
// token at all), so the hot path has no promise; refusals are counted
// (fleetwall_auth_failures_total{reason}) and repeated ones from one peer are
// held back (penalty-box.ts).
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { Reason } from '../errors/catalogue.js';
import type { Access } from './access-table.js';
import { bearerToken } from './api-token.js';
import type { PenaltyBox } from './penalty-box.js';
import { ANONYMOUS_PRINCIPAL, insecurePrincipal, LOCAL_PRINCIPAL, type Principal } from './principal.js';
import { roleAtLeast } from './roles.js';
import type { SecurityMode } from './security-mode.js';
import { nodeAccess, nodeCaller } from './sync-identity.js';
import type { PeerCertificate } from 'node:tls';
import type { TokenCheck, TokenVerifier } from './token-verifier.js';

export type AuthOutcome =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly error: FleetwallError; readonly delayMs: number };

export interface AuthRequest {
  /** What the method or route needs (access-table.ts). */
  readonly access: Access;
  /** The method or route, for messages ("RuleService/CreateRule", "POST /v1/rules"). */
  readonly what: string;
  /** The raw authorization header / metadata value. */
  readonly authorization: string | undefined;
  /** The peer's IP address (penalty box key). */
  readonly peer: string;
  /** The client certificate the TLS handshake verified, if any (node methods). */
  readonly peerCertificate?: () => PeerCertificate | undefined;
}

export class Authenticator {
  constructor(
    readonly mode: SecurityMode,
    private readonly verifier: TokenVerifier,
    private readonly penalty: PenaltyBox,
    private readonly onFailure: (reason: Reason) => void,
  ) {}

  check(r: AuthRequest): AuthOutcome | Promise<AuthOutcome> {
    // Enroll checks the join token in its request itself (enrollment/enrollment-service.ts).
    if (r.access === 'public' || r.access === 'join-token') return { ok: true, principal: ANONYMOUS_PRINCIPAL };
    if (r.access === 'node' && this.mode === 'tls') {
      const p = nodeCaller(r.what, r.peerCertificate?.());
      if (p instanceof FleetwallError) return this.refuse(r, p.reason, p.message, {});
      return { ok: true, principal: p };
    }
    const token = bearerToken(r.authorization);
    if (token === undefined) {
      if (this.mode === 'loopback-trust') return this.authorize(r, LOCAL_PRINCIPAL);
      if (this.mode === 'insecure') return this.authorize(r, insecurePrincipal(r.peer));
      return this.refuse(
        r,
        'CREDENTIALS_REQUIRED',
        `${r.what} needs an API token: send the header "authorization: Bearer <token>" (fleetwall: --token or FLEETWALL_TOKEN; an admin makes one with \`fleetwall token create --role viewer\`)`,
        {},
      );
    }
    const hit = this.verifier.cached(token);
    if (hit) return this.afterToken(r, hit);
    return this.verifier.verify(token).then((c) => this.afterToken(r, c));
  }

  private afterToken(r: AuthRequest, c: TokenCheck): AuthOutcome {
    if (c.ok) return this.authorize(r, c.principal);
    const id: Record<string, string> = c.tokenId !== undefined ? { token_id: c.tokenId.toString() } : {};
    switch (c.reason) {
      case 'TOKEN_UNKNOWN':
        return this.refuse(
          r,
          c.reason,
          'the API token is not one this control plane issued (or is malformed): check --token / FLEETWALL_TOKEN',
          {},
        );
      case 'TOKEN_EXPIRED':
        return this.refuse(r, c.reason, `API token ${c.tokenId} has expired: ask an admin for a new one (fleetwall token create)`, id);
      case 'TOKEN_REVOKED':
        return this.refuse(r, c.reason, `API token ${c.tokenId} was revoked: ask an admin for a new one`, id);
    }
  }

  private authorize(r: AuthRequest, p: Principal): AuthOutcome {
    const need =
      r.access === 'node'
        ? nodeAccess(p)
        : roleAtLeast(p.role, r.access as Exclude<Access, 'public' | 'node' | 'join-token'>)
          ? undefined
          : r.access;
    if (need === undefined) return { ok: true, principal: p };
    return this.refuse(
      r,
      'ROLE_TOO_LOW',
      `${r.what} needs the ${need} role${r.access === 'node' ? ' (a node method without TLS)' : ''}; ${p.id} has ${p.role}`,
      { required_role: need, role: p.role, principal: p.id },
    );
  }

  private refuse(r: AuthRequest, reason: Reason, message: string, metadata: Record<string, string>): AuthOutcome {
    this.onFailure(reason);
    return { ok: false, error: new FleetwallError(reason, message, metadata), delayMs: this.penalty.fail(r.peer) };
  }

  /** Holds a refusal back by its penalty, then sends it. */
  hold(delayMs: number, send: () => void): void {
    this.penalty.hold(delayMs, send);
  }
}
