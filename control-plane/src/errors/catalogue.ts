// Every error the control plane reports, by reason code: the gRPC status it
// maps to and a default message. Reasons travel to clients in a
// google.rpc.ErrorInfo (domain fleetwall.dev), and in the JSON error body of
// the HTTP API; clients switch on them, so they never change meaning once
// released. control-plane/README.md lists every one (a test compares).
import { status } from '@grpc/grpc-js';

export const ERROR_DOMAIN = 'fleetwall.dev';

export interface CatalogueEntry {
  readonly code: status;
  readonly message: string;
  /** The HTTP status when it is not the one of `code` (HTTP-only reasons). */
  readonly httpStatus?: number;
}

export const CATALOGUE = {
  // Rule input
  RULE_REQUIRED: { code: status.INVALID_ARGUMENT, message: 'a rule is required' },
  INVALID_CIDR: { code: status.INVALID_ARGUMENT, message: 'not a valid CIDR' },
  HOST_BITS_SET: { code: status.INVALID_ARGUMENT, message: 'the CIDR has host bits set' },
  INVALID_ADDRESS: { code: status.INVALID_ARGUMENT, message: 'not a valid IP address' },
  ACTION_REQUIRED: { code: status.INVALID_ARGUMENT, message: 'action is required: ACTION_DENY or ACTION_ALLOW' },
  INVALID_ENUM: { code: status.INVALID_ARGUMENT, message: 'unknown enum value' },
  MONITOR_ON_ALLOW: { code: status.INVALID_ARGUMENT, message: 'monitor mode applies to deny rules only' },
  INVALID_SELECTOR: { code: status.INVALID_ARGUMENT, message: 'invalid selector' },
  EXPIRY_IN_PAST: { code: status.INVALID_ARGUMENT, message: 'expire_time must be in the future' },
  INVALID_TTL: { code: status.INVALID_ARGUMENT, message: 'ttl must be positive' },
  CONFLICTING_EXPIRY: { code: status.INVALID_ARGUMENT, message: 'set either rule.expire_time or ttl, not both' },
  COMMENT_TOO_LONG: { code: status.INVALID_ARGUMENT, message: 'comment is too long' },
  DUPLICATE_RULE: { code: status.ALREADY_EXISTS, message: 'a rule with this CIDR, direction and selector already exists' },
  RULE_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such rule' },
  INVALID_UPDATE_MASK: { code: status.INVALID_ARGUMENT, message: 'invalid update_mask' },
  IMMUTABLE_FIELD: { code: status.INVALID_ARGUMENT, message: 'this field cannot change' },
  INVALID_FIELD: {
    code: status.INVALID_ARGUMENT,
    message: 'a field is out of range, too long, or holds a character it may not (metadata field)',
  },
  CAPACITY_EXCEEDED: {
    code: status.FAILED_PRECONDITION,
    message: "the change would put more prefixes in a node's kernel table than it holds",
    httpStatus: 409,
  },
  // Inspection (drop events)
  INVALID_FILTER: { code: status.INVALID_ARGUMENT, message: 'invalid event filter' },
  INVALID_WINDOW: { code: status.INVALID_ARGUMENT, message: 'window must be 1s..10m' },
  // Sizes
  BATCH_TOO_LARGE: { code: status.INVALID_ARGUMENT, message: 'too many entries in one batch' },
  EMPTY_BATCH: { code: status.INVALID_ARGUMENT, message: 'the batch is empty' },
  IMPORT_TOO_LARGE: { code: status.INVALID_ARGUMENT, message: 'too many lines in one import' },
  IMPORT_HEADER_REQUIRED: { code: status.INVALID_ARGUMENT, message: 'an import starts with exactly one header' },
  // Blocklist formats (imports and lists)
  INVALID_FORMAT_OPTION: { code: status.INVALID_ARGUMENT, message: 'the format options do not fit together' },
  UNKNOWN_COLUMN: { code: status.INVALID_ARGUMENT, message: "the named column is not in the list's header" },
  NO_ADDRESS_COLUMN: { code: status.INVALID_ARGUMENT, message: 'no column of the list is known to hold addresses: name one' },
  // Subscribed lists
  INVALID_LIST_NAME: { code: status.INVALID_ARGUMENT, message: 'invalid list name' },
  INVALID_LIST_SOURCE: { code: status.INVALID_ARGUMENT, message: 'invalid list source: an http(s):// or file:/// URL' },
  INVALID_LIST_INTERVAL: { code: status.INVALID_ARGUMENT, message: 'invalid refresh interval' },
  LIST_EXISTS: { code: status.ALREADY_EXISTS, message: 'a list with this name exists' },
  LIST_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such list' },
  LIST_BUSY: { code: status.ABORTED, message: 'a refresh of this list is running' },
  LIST_FETCH_FAILED: { code: status.FAILED_PRECONDITION, message: 'the list could not be fetched' },
  LIST_REFUSED: { code: status.FAILED_PRECONDITION, message: 'the fetched list failed a safeguard' },
  MESSAGE_TOO_LARGE: { code: status.RESOURCE_EXHAUSTED, message: 'message too large', httpStatus: 413 },
  MALFORMED_MESSAGE: {
    code: status.INVALID_ARGUMENT,
    message: "the request is not a valid protobuf encoding of the method's request type",
  },
  TOO_MANY_IMPORTS: { code: status.RESOURCE_EXHAUSTED, message: 'too many imports are running on this control plane; retry later' },
  IMPORT_TIMEOUT: {
    code: status.DEADLINE_EXCEEDED,
    message: 'the import stream was idle too long or ran past its deadline; nothing was stored',
  },
  // ManageAddress (/manage-ip, fleetwall unblock)
  MISSING_FIELD: { code: status.INVALID_ARGUMENT, message: 'a required field is missing' },
  UNKNOWN_ACTION: { code: status.INVALID_ARGUMENT, message: 'unknown action: use block, allow, whitelist or unblock' },
  NOT_BLOCKED: { code: status.NOT_FOUND, message: 'the address is not blocked by a rule of its own' },
  // HTTP/JSON API only
  INVALID_JSON: { code: status.INVALID_ARGUMENT, message: 'the request body is not a JSON object' },
  UNSUPPORTED_MEDIA_TYPE: {
    code: status.INVALID_ARGUMENT,
    message: 'send the body as JSON with Content-Type: application/json',
    httpStatus: 415,
  },
  ROUTE_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such route' },
  METHOD_NOT_ALLOWED: { code: status.UNIMPLEMENTED, message: 'this method is not allowed on this route', httpStatus: 405 },
  // Listing and queries
  INVALID_PAGE_SIZE: { code: status.INVALID_ARGUMENT, message: 'page_size must be 0..1000' },
  INVALID_PAGE_TOKEN: { code: status.INVALID_ARGUMENT, message: 'invalid page_token' },
  INVALID_QUERY: { code: status.INVALID_ARGUMENT, message: 'invalid query' },
  INVALID_INTERVAL: { code: status.INVALID_ARGUMENT, message: 'interval must be at least 100ms' },
  NODE_NAME_REQUIRED: { code: status.INVALID_ARGUMENT, message: 'a node name is required' },
  NODE_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such node' },
  NODE_CONNECTED: {
    code: status.FAILED_PRECONDITION,
    message: 'the node has a live Sync stream; stop its agent before deleting it',
    httpStatus: 409,
  },
  INVALID_LABELS: { code: status.INVALID_ARGUMENT, message: "the node's labels break the label grammar (a Hello's, or an enrollment's)" },
  // Sync protocol
  HELLO_REQUIRED: { code: status.FAILED_PRECONDITION, message: 'a Sync stream starts with Hello' },
  PROTOCOL_VIOLATION: { code: status.FAILED_PRECONDITION, message: 'unexpected message on the Sync stream' },
  STREAM_REPLACED: { code: status.ABORTED, message: 'a newer Sync stream from the same node replaced this one' },
  AGENT_TIMEOUT: { code: status.UNAVAILABLE, message: 'the agent was silent for three ping intervals' },
  AGENT_TOO_SLOW: { code: status.RESOURCE_EXHAUSTED, message: 'the agent is not reading its stream fast enough' },
  RESYNC_REQUIRED: { code: status.UNAVAILABLE, message: 'the control plane lost track of the change log; reconnect for a snapshot' },
  // Authentication and authorization (issue 15; control-plane/src/auth/)
  CREDENTIALS_REQUIRED: {
    code: status.UNAUTHENTICATED,
    message: 'an API token is required: send "authorization: Bearer <token>"',
  },
  TOKEN_UNKNOWN: { code: status.UNAUTHENTICATED, message: 'the API token is not one this control plane issued' },
  TOKEN_EXPIRED: { code: status.UNAUTHENTICATED, message: 'the API token has expired' },
  TOKEN_REVOKED: { code: status.PERMISSION_DENIED, message: 'the API token was revoked' },
  ROLE_TOO_LOW: { code: status.PERMISSION_DENIED, message: "the caller's role does not allow this" },
  HOST_NOT_ALLOWED: {
    code: status.PERMISSION_DENIED,
    message: 'the Host header names no host this control plane answers to',
    httpStatus: 421,
  },
  TOKEN_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such API token' },
  INVALID_ROLE: { code: status.INVALID_ARGUMENT, message: 'role must be viewer, operator or admin' },
  INVALID_TOKEN_NAME: { code: status.INVALID_ARGUMENT, message: 'invalid token name' },
  // Node identity and enrollment (issue 15 part 3; control-plane/src/enrollment/)
  ENROLLMENT_UNAVAILABLE: {
    code: status.FAILED_PRECONDITION,
    message: "enrollment needs TLS with the control plane's own CA (its key signs node certificates)",
  },
  JOIN_TOKEN_INVALID: { code: status.UNAUTHENTICATED, message: 'the join token is malformed or was never issued here' },
  JOIN_TOKEN_EXPIRED: { code: status.UNAUTHENTICATED, message: 'the join token has expired' },
  JOIN_TOKEN_USED: { code: status.PERMISSION_DENIED, message: 'the join token was already used' },
  JOIN_TOKEN_REVOKED: { code: status.PERMISSION_DENIED, message: 'the join token was revoked' },
  JOIN_TOKEN_NOT_FOUND: { code: status.NOT_FOUND, message: 'no such join token' },
  INVALID_CSR: { code: status.INVALID_ARGUMENT, message: 'not a valid PKCS#10 certificate signing request' },
  NODE_CERT_REQUIRED: {
    code: status.UNAUTHENTICATED,
    message: 'a node client certificate issued by this control plane is required (enroll with a join token)',
  },
  NODE_MISMATCH: { code: status.PERMISSION_DENIED, message: "the node named is not the certificate's node" },
  NODE_REVOKED: { code: status.PERMISSION_DENIED, message: "the node's certificate was revoked" },
  NODE_CERT_EXPIRED: { code: status.UNAVAILABLE, message: "the node's certificate expired; reconnect with the renewed one" },
  NODE_RELABELED: { code: status.UNAVAILABLE, message: "an admin changed the node's labels; reconnect for its new rule set" },
  // The lockout guard (issue 15 part 5; control-plane/src/lockout/)
  LOCKOUT_PROTECTED: {
    code: status.FAILED_PRECONDITION,
    message: 'the deny would drop traffic of a protected address (the control plane, an agent, a management network, loopback)',
    httpStatus: 409,
  },
  // Service state
  SHUTTING_DOWN: { code: status.UNAVAILABLE, message: 'this control plane is shutting down; reconnect to another' },
  STORE_UNAVAILABLE: { code: status.UNAVAILABLE, message: 'the database (Postgres) is unreachable; retry' },
  WRITER_FAILING: {
    code: status.UNAVAILABLE,
    message: 'node or counter state cannot be written to the database; writes are retried',
  },
  DEADLINE_EXCEEDED: { code: status.DEADLINE_EXCEEDED, message: 'the call did not finish within the server deadline' },
  CONFLICT_RETRY: { code: status.ABORTED, message: 'a concurrent change conflicted; retry' },
  INTERNAL: { code: status.INTERNAL, message: 'internal error' },
} as const satisfies Record<string, CatalogueEntry>;

export type Reason = keyof typeof CATALOGUE;
