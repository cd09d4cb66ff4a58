// Agent-local rules (the failsafe entries, node-agent/src/failsafe/): rules
// in the desired set that the control plane did not send. They live beside
// the control plane's rules - planned, journaled and counted the same way,
// so allow-beats-deny keeps them passing and a restart keeps them - in a
// reserved id range no control-plane rule can have: the top bit set. The
// control plane's ids are Postgres bigserials (at most 2^63 - 1); a rule id
// from the wire in this range is refused (NACK), and a delete of one is
// ignored. Snapshots never remove them; their counters are not reported.

/** The first agent-local rule id: 2^63. */
export const LOCAL_RULE_ID_BASE = 1n << 63n;

/**
 * The first id of the responder's local bans (node-agent/src/respond/):
 * 2^63 + 2^62. Failsafe entries take ids below it, bans above it, so each
 * owner replaces only its own part of the agent-local rules.
 */
export const BAN_RULE_ID_BASE = LOCAL_RULE_ID_BASE + (1n << 62n);

/** The owners of agent-local rules, each with its own id range. */
export type LocalRuleOwner = 'failsafe' | 'ban';

export function isLocalRuleId(id: bigint): boolean {
  return id >= LOCAL_RULE_ID_BASE;
}

/** Which owner's range an agent-local id is in. */
export function localOwnerOf(id: bigint): LocalRuleOwner {
  return id >= BAN_RULE_ID_BASE ? 'ban' : 'failsafe';
}
