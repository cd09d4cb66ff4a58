// What a handler knows about its caller, whatever the transport (gRPC now,
// HTTP/JSON later).
export interface CallContext {
  /** Who is calling, for created_by and the audit log ("cli:alice", "anonymous"). */
  readonly actor: string;
  /** Aborted when the caller goes away. */
  readonly signal?: AbortSignal;
}

export const ACTOR_METADATA_KEY = 'x-fleetwall-actor';

const MAX_ACTOR = 200;

export function normalizeActor(raw: string | undefined): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this strips
  const a = (raw ?? '').trim().replace(/[\u0000-\u001f]/g, '');
  return a === '' ? 'anonymous' : a.slice(0, MAX_ACTOR);
}
