// The Sync boundary: every SyncRequest an agent (or anything speaking the
// protocol) sends is checked here before the session acts on it. Text an
// agent reports for people (a NACK's status, AgentStatus.last_error and
// map_resize_failures.last_reason) is tidied - control characters removed, cut to a bound - rather than refused,
// so a real agent's long error never costs it its stream; everything the
// control plane stores or computes with (names, labels, ids, revisions,
// counters, enums) is refused when out of range, naming the field.
import { echo } from '../../../common/src/echo.js';
import { labelSetProblem } from '../../../common/src/labels.js';
import { interfaceNameProblem, nodeNameProblem } from '../../../common/src/names.js';
import type { CounterReport, Detection, Hello, SyncRequest } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { InterfaceStatus } from '../../../proto/gen/fleetwall/v1/node.js';
import type { Status } from '../../../proto/gen/google/rpc/status.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { checkMessage, invalidField } from './message-check.js';

/** Interfaces one agent may report. */
export const MAX_AGENT_INTERFACES = 256;
/** What is kept of a NACK's google.rpc.Status: message characters, detail bytes. */
export const MAX_NACK_MESSAGE = 1024;
export const MAX_NACK_DETAIL_BYTES = 4096;
/** Characters kept of AgentStatus.last_error and of map_resize_failures.last_reason. */
export const MAX_LAST_ERROR = 1024;
/** Largest capacity_per_table taken as given (prefixes per kernel table). */
const MAX_CAPACITY = 1n << 32n;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** Informational text: control characters (but tab and newline) removed, at most `max` characters. */
export function tidyText(s: string, max: number): string {
  const t = s.replace(CONTROL, '');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** A NACK's status as kept: code in google.rpc.Code's range, message tidied, details up to MAX_NACK_DETAIL_BYTES. */
export function tidyStatus(s: Status): Status {
  let bytes = 0;
  const details = [];
  for (const d of s.details) {
    bytes += d.value.length + d.typeUrl.length;
    if (bytes > MAX_NACK_DETAIL_BYTES) break;
    details.push({ typeUrl: tidyText(d.typeUrl, 256), value: d.value });
  }
  return {
    code: Number.isInteger(s.code) && s.code >= 0 && s.code <= 16 ? s.code : 2,
    message: tidyText(s.message, MAX_NACK_MESSAGE),
    details,
  };
}

function checkInterfaces(list: readonly InterfaceStatus[], field: string): void {
  if (list.length > MAX_AGENT_INTERFACES) throw invalidField(field, `has ${list.length} interfaces; at most ${MAX_AGENT_INTERFACES}`);
  list.forEach((i, n) => {
    const p = interfaceNameProblem(i.name);
    if (p) throw invalidField(`${field}[${n}].name`, `${echo(i.name, 32)}: ${p}`);
  });
}

function checkHello(h: Hello): void {
  if (h.nodeName.trim() === '')
    throw new FleetwallError('NODE_NAME_REQUIRED', 'hello.node_name is empty: agents identify themselves by node name', {
      field: 'hello.node_name',
    });
  const nameProblem = nodeNameProblem(h.nodeName);
  if (nameProblem) throw invalidField('hello.node_name', `${echo(h.nodeName)}: ${nameProblem}`);
  const labelProblem = labelSetProblem(h.labels);
  if (labelProblem) throw new FleetwallError('INVALID_LABELS', `hello.labels: ${labelProblem}`, { field: 'hello.labels' });
  checkInterfaces(h.interfaces, 'hello.interfaces');
  if (h.capacityPerTable > MAX_CAPACITY)
    throw invalidField('hello.capacity_per_table', `${h.capacityPerTable} is over ${MAX_CAPACITY}`, { value: String(h.capacityPerTable) });
}

function checkReport(r: CounterReport): void {
  r.rules.forEach((s, i) => {
    if (s.ruleId === 0n) throw invalidField(`counter_report.rules[${i}].rule_id`, 'is 0; rule ids start at 1');
  });
  r.interfaces.forEach((s, i) => {
    const p = interfaceNameProblem(s.interface);
    if (p) throw invalidField(`counter_report.interfaces[${i}].interface`, `${echo(s.interface, 32)}: ${p}`);
    if (s.direction !== Direction.DIRECTION_INGRESS && s.direction !== Direction.DIRECTION_EGRESS)
      throw invalidField(`counter_report.interfaces[${i}].direction`, 'must be DIRECTION_INGRESS or DIRECTION_EGRESS');
  });
}

/** A Detection (issue 18): the source group the control plane may ban, and its rates. */
function checkDetection(d: Detection): void {
  if (d.policyId === 0n) throw invalidField('detection.policy_id', 'is 0; policy ids start at 1');
  if (d.address.length !== 4 && d.address.length !== 16)
    throw invalidField('detection.address', `has ${d.address.length} bytes; an IPv4 address has 4, an IPv6 address 16`);
  const max = d.address.length * 8;
  if (d.prefixLength < 1 || d.prefixLength > max) throw invalidField('detection.prefix_length', `${d.prefixLength} is not in 1..${max}`);
  if (d.packetsPerSecond < 0) throw invalidField('detection.packets_per_second', 'must not be negative');
  if (d.bytesPerSecond < 0) throw invalidField('detection.bytes_per_second', 'must not be negative');
}

/**
 * Checks one SyncRequest; returns it with its informational text tidied.
 * Throws a catalogued error naming the field (the session ends the stream
 * with it; nothing of the message is applied).
 */
export function checkSyncRequest(msg: SyncRequest): SyncRequest {
  const m = msg.msg;
  let out = msg;
  if (m?.$case === 'nack' && m.value.status) {
    out = { msg: { $case: 'nack', value: { ...m.value, status: tidyStatus(m.value.status) } } };
  } else if (m?.$case === 'status') {
    const f = m.value.mapResizeFailures;
    out = {
      msg: {
        $case: 'status',
        value: {
          ...m.value,
          lastError: tidyText(m.value.lastError, MAX_LAST_ERROR),
          mapResizeFailures: f ? { ...f, lastReason: tidyText(f.lastReason, MAX_LAST_ERROR) } : f,
        },
      },
    };
  }
  checkMessage('fleetwall.v1.SyncRequest', out);
  const c = out.msg;
  switch (c?.$case) {
    case 'hello':
      checkHello(c.value);
      break;
    case 'counterReport':
      checkReport(c.value);
      break;
    case 'detection':
      checkDetection(c.value);
      break;
    case 'status':
      checkInterfaces(c.value.interfaces, 'status.interfaces');
      if (c.value.mapFillRatio < 0) throw invalidField('status.map_fill_ratio', 'must not be negative');
      break;
    default:
      break;
  }
  return out;
}
