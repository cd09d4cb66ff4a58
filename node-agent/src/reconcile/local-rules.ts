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

export function isLocalRuleId(id: bigint): boolean {
  return id >= LOCAL_RULE_ID_BASE;
}
