// Node selectors: a map of labels that must all equal the node's labels.
// Empty selects every node. The canonical key (sorted JSON) is part of a
// rule's identity and groups rules that select the same nodes.
import { labelProblem, type Labels } from '../../../common/src/labels.js';
import { FleetwallError } from '../errors/fleetwall-error.js';

export type { Labels };

/** Sorted-key JSON: equal selectors have equal keys. */
export function selectorKey(sel: Labels): string {
  const keys = Object.keys(sel).sort();
  if (keys.length === 0) return '{}';
  const out: Record<string, string> = {};
  for (const k of keys) out[k] = sel[k]!;
  return JSON.stringify(out);
}

export function parseSelectorKey(key: string): Labels {
  return JSON.parse(key) as Labels;
}

export function selectorMatches(sel: Labels, labels: Labels): boolean {
  for (const k in sel) {
    if (labels[k] !== sel[k]) return false;
  }
  return true;
}

/** Labels one selector may name. */
export const MAX_SELECTOR_LABELS = 16;
/** Bytes of a selector's canonical key: it is part of the rules' unique btree index, whose entries Postgres caps at ~2.7 KB. */
export const MAX_SELECTOR_KEY_BYTES = 2048;

/**
 * Validates a selector from a request with the same label rules the agents
 * apply to node labels (common/src/labels.ts), so a stored selector can
 * always match some node, and bounds its size (MAX_SELECTOR_LABELS,
 * MAX_SELECTOR_KEY_BYTES); `field` names it in the message.
 */
export function validateSelector(sel: Labels, field: string): Labels {
  const keys = Object.keys(sel);
  if (keys.length > MAX_SELECTOR_LABELS) {
    throw new FleetwallError('INVALID_SELECTOR', `${field} has ${keys.length} labels; a selector names at most ${MAX_SELECTOR_LABELS}`, {
      field,
      max: String(MAX_SELECTOR_LABELS),
    });
  }
  const out: Record<string, string> = {};
  for (const k of keys) {
    const v = sel[k]!;
    const problem = labelProblem(k, v);
    if (problem) throw new FleetwallError('INVALID_SELECTOR', `${field} has ${problem}`, { field, key: k.slice(0, 63) });
    out[k] = v;
  }
  const bytes = Buffer.byteLength(selectorKey(out));
  if (bytes > MAX_SELECTOR_KEY_BYTES) {
    throw new FleetwallError(
      'INVALID_SELECTOR',
      `${field} is ${bytes} bytes as JSON; at most ${MAX_SELECTOR_KEY_BYTES}: use fewer or shorter labels`,
      { field, max_bytes: String(MAX_SELECTOR_KEY_BYTES) },
    );
  }
  return out;
}
