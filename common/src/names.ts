// The names an agent identifies itself and its interfaces by: one grammar for
// the agent's configuration and for what the control plane accepts in a Hello
// or a counter report, so a name the agent may use is never refused and a
// name it could not use is never stored. Pure.
//
// node name:      letters, digits, . _ - ; starts and ends with a letter or
//                 digit; at most 253 characters (a DNS name, or a host's name)
// interface name: 1..15 bytes (Linux IFNAMSIZ - 1), no whitespace, "/", ":"
//                 or control characters

export const MAX_NODE_NAME = 253;
const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

/** What is wrong with a node name, or undefined. */
export function nodeNameProblem(name: string): string | undefined {
  if (name === '') return 'a node name is required';
  if (name.length > MAX_NODE_NAME) return `a node name has at most ${MAX_NODE_NAME} characters (got ${name.length})`;
  if (!NODE_NAME.test(name)) return 'a node name is letters, digits, . _ - (starting and ending with a letter or digit)';
  return undefined;
}

export const MAX_INTERFACE_NAME_BYTES = 15;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const INTERFACE_NAME = /^[^\s/:\u0000-\u001f\u007f]+$/;

/** What is wrong with a network interface name, or undefined. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name === '') return 'an interface name is required';
  if (Buffer.byteLength(name) > MAX_INTERFACE_NAME_BYTES)
    return `an interface name has at most ${MAX_INTERFACE_NAME_BYTES} bytes (Linux IFNAMSIZ)`;
  if (!INTERFACE_NAME.test(name)) return 'an interface name has no whitespace, "/", ":" or control characters';
  return undefined;
}
