// What a handler knows about its caller, whatever the transport (gRPC,
// HTTP/JSON): the authenticated principal (auth/), never what the client
// claims about itself.
import type { Principal } from '../auth/principal.js';
import { normalizeNote } from '../store/audit-note.js';

export interface CallContext {
  /** The authenticated principal's id, for created_by and the audit log ("token:3/ci", "local:loopback"). */
  readonly actor: string;
  /** The principal itself (role, token id), when the transport established one. */
  readonly principal?: Principal;
  /** Free text the client sent in x-fleetwall-actor ("cli:alice"): stored as the audit note, never as the actor. */
  readonly note?: string;
  /** Aborted when the caller goes away. */
  readonly signal?: AbortSignal;
}

/** The header / metadata key whose value becomes the audit note. */
export const ACTOR_METADATA_KEY = 'x-fleetwall-actor';

export function callContextOf(principal: Principal | undefined, noteHeader: string | undefined, signal?: AbortSignal): CallContext {
  return {
    actor: principal?.id ?? 'anonymous',
    ...(principal ? { principal } : {}),
    note: normalizeNote(noteHeader),
    ...(signal ? { signal } : {}),
  };
}
