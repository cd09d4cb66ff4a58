// Node labels and rule selectors: one grammar for the agent's labels, the
// API's selectors and every "k=v,k2=v2" flag or query parameter, so a
// selector can always match some node. Pure.
//
// key:   letters, digits, then letters, digits, . _ / - ; ends with a letter
//        or digit; at most 253 characters ("role", "topology.io/zone")
// value: at most 253 characters, no "," "=" or whitespace (may be empty)

export type Labels = Readonly<Record<string, string>>;

export const MAX_LABEL_LENGTH = 253;
const KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/;

/** What is wrong with one label, or undefined. */
export function labelProblem(key: string, value: string): string | undefined {
  if (key.trim() === '') return `an empty label key (value ${JSON.stringify(value)}): every key must be a label name like "role"`;
  if (!KEY.test(key)) {
    return `label key ${JSON.stringify(key.slice(0, 60))} must be letters, digits, . _ / - (starting and ending with a letter or digit, at most ${MAX_LABEL_LENGTH})`;
  }
  if (value.length > MAX_LABEL_LENGTH || /[,=\s]/.test(value)) {
    return `label ${key}=${JSON.stringify(value.slice(0, 60))}: values are at most ${MAX_LABEL_LENGTH} characters without , = or spaces`;
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
      if (eq < 0) throw new LabelTextError(`"${p}" is not key=value; write labels as role=web,zone=a`);
      const k = p.slice(0, eq).trim();
      const v = p.slice(eq + 1).trim();
      const problem = labelProblem(k, v);
      if (problem) throw new LabelTextError(problem);
      if (k in out && out[k] !== v) throw new LabelTextError(`label "${k}" is given twice with different values`);
      out[k] = v;
    }
  }
  return out;
}
