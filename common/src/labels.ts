// Node labels and rule selectors: one grammar for the agent's labels, the
// API's selectors and every "k=v,k2=v2" flag or query parameter, so a
// selector can always match some node. Pure.
//
// key:   letters, digits, then letters, digits, . _ / - ; ends with a letter
//        or digit; at most 253 characters ("role", "topology.io/zone")
// value: at most 253 characters, no "," "=", whitespace or control
//        characters (may be empty)
// set:   at most 64 labels (a node's labels; selectors are bounded further
//        by the control plane, control-plane/src/rules/selector.ts)
import { echo } from './echo.js';

export type Labels = Readonly<Record<string, string>>;

/**
 * The label every node carries with its own name (issue 18: a detection
 * policy's node-scoped ban selects the detecting node by it). The agent adds
 * it to its Hello; with TLS the control plane sets it from the node's
 * certificate (enrollment/node-admission.ts), whatever the bound labels say.
 */
export const NODE_LABEL = 'fleetwall.dev/node';

export const MAX_LABEL_LENGTH = 253;
export const MAX_LABELS = 64;
const KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a value may not hold
const BAD_VALUE_CHAR = /[,=\s\u0000-\u001f\u007f]/;

/** What is wrong with one label, or undefined. */
export function labelProblem(key: string, value: string): string | undefined {
  if (key.trim() === '') return `an empty label key (value ${echo(value)}): every key must be a label name like "role"`;
  if (!KEY.test(key)) {
    return `label key ${echo(key)} must be letters, digits, . _ / - (starting and ending with a letter or digit, at most ${MAX_LABEL_LENGTH})`;
  }
  if (value.length > MAX_LABEL_LENGTH || BAD_VALUE_CHAR.test(value)) {
    return `label ${key}=${echo(value)}: values are at most ${MAX_LABEL_LENGTH} characters without , = or spaces (or control characters)`;
  }
  return undefined;
}

/** What is wrong with a set of labels (too many, or one of them), or undefined. */
export function labelSetProblem(labels: Labels, max = MAX_LABELS): string | undefined {
  const keys = Object.keys(labels);
  if (keys.length > max) return `${keys.length} labels; at most ${max} are allowed`;
  for (const k of keys) {
    const p = labelProblem(k, labels[k]!);
    if (p) return p;
  }
  return undefined;
}

export class LabelTextError extends Error {
  override readonly name = 'LabelTextError';
}

/** "k=v,k2=v2" (several texts are merged) -> labels. Throws LabelTextError naming the problem. */
export function parseLabelText(texts: string | readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const text of typeof texts === 'string' ? [texts] : texts) {
    for (const part of text.split(',')) {
      const p = part.trim();
      if (p === '') continue;
      const eq = p.indexOf('=');
      if (eq < 0) throw new LabelTextError(`${echo(p)} is not key=value; write labels as role=web,zone=a`);
      const k = p.slice(0, eq).trim();
      const v = p.slice(eq + 1).trim();
      const problem = labelProblem(k, v);
      if (problem) throw new LabelTextError(problem);
      if (k in out && out[k] !== v) throw new LabelTextError(`label "${k}" is given twice with different values`);
      out[k] = v;
    }
  }
  const many = labelSetProblem(out);
  if (many) throw new LabelTextError(many);
  return out;
}
