// Node selectors: a map of labels that must all equal the node's labels.
// Empty selects every node. The canonical key (sorted JSON) is part of a
// rule's identity and groups rules that select the same nodes.
import { FleetwallError } from '../errors/fleetwall-error.js';

export type Labels = Readonly<Record<string, string>>;

export const MAX_LABEL_LENGTH = 253;

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

/** Validates a selector from a request; `field` names it in the message. */
export function validateSelector(sel: Labels, field: string): Labels {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(sel)) {
    if (k.trim() === '') {
      throw new FleetwallError('INVALID_SELECTOR', `${field} has an empty label key (value ${JSON.stringify(v)}): every key must be a non-empty label name like "env"`, { field });
    }
    if (k.length > MAX_LABEL_LENGTH || v.length > MAX_LABEL_LENGTH) {
      throw new FleetwallError('INVALID_SELECTOR', `${field} label ${JSON.stringify(k.slice(0, 40))}: keys and values are at most ${MAX_LABEL_LENGTH} characters`, { field, key: k.slice(0, 63) });
    }
    out[k] = v;
  }
  return out;
}
