// AgentRule bytes -> the desired set, without an object per rule. Validates
// each rule: an address of 4 or 16 bytes, a prefix length in range, no host
// bits, a supported action, direction and mode. A rule that is already
// expired leaves the desired set; an invalid one is marked invalid (NACK).

import { maskInto } from '../../../common/src/cidr.js';
import { isLocalRuleId } from '../reconcile/local-rules.js';
import { F_ALLOW, F_EGRESS, F_MONITOR, F_V6 } from '../reconcile/rule-flags.js';
import { Reader, type RawRules, WireError } from './sync-codec.js';

/** Where decoded rules go: the rule table's desired side. */
export interface RuleSink {
  /** A valid rule: attribute flags (rule-flags.ts), the address at src[off..], prefix length, expiry (Unix ms, 0 = never). */
  upsertRaw(id: bigint, attrs: number, src: Uint8Array, off: number, len: number, expire: number): void;
  /** An expired rule leaves the desired set. */
  remove(id: bigint): void;
  /** A rule the agent cannot apply. */
  markInvalid(id: bigint, reason: string): void;
}

export interface RawApplyResult {
  upserted: number;
  expired: number;
  invalid: number;
}

function hostBitsSet(buf: Uint8Array, off: number, n: number, len: number): boolean {
  maskInto(hostScratch, 0, buf, off, n, len);
  for (let i = 0; i < n; i++) if (hostScratch[i] !== buf[off + i]) return true;
  return false;
}
/** hostBitsSet's masked copy (reused: no allocation per rule). */
const hostScratch = new Uint8Array(16);

/** Upserts every rule of `rules` into the desired set `t`. */
export function applyRawRules(
  t: RuleSink,
  rules: RawRules,
  now: number,
  out: RawApplyResult = { upserted: 0, expired: 0, invalid: 0 },
): RawApplyResult {
  const { buf, ranges, count } = rules;
  for (let i = 0; i < count; i++) {
    const r = new Reader(buf, ranges[2 * i]!, ranges[2 * i + 1]!);
    let id = 0n;
    let addrOff = -1;
    let addrLen = 0;
    let len = 0;
    let action = 0;
    let direction = 0;
    let mode = 0;
    let expire = 0;
    let bad = '';
    try {
      while (!r.done) {
        const tag = r.varint();
        switch (tag) {
          case 0x08:
            id = r.varintBig();
            break;
          case 0x12: {
            const [a, b] = r.lengthDelimited();
            addrOff = a;
            addrLen = b - a;
            break;
          }
          case 0x18:
            len = r.varint();
            break;
          case 0x20:
            action = r.varint();
            break;
          case 0x28:
            direction = r.varint();
            break;
          case 0x30:
            mode = r.varint();
            break;
          case 0x3a: {
            const [a, b] = r.lengthDelimited();
            const ts = new Reader(buf, a, b);
            let seconds = 0;
            let nanos = 0;
            while (!ts.done) {
              const tt = ts.varint();
              if (tt === 0x08) seconds = ts.varint();
              else if (tt === 0x10) nanos = ts.varint();
              else ts.skip(tt & 7);
            }
            expire = seconds * 1000 + Math.floor(nanos / 1e6);
            if (expire <= 0) expire = 1; // a time at or before the epoch: long expired
            break;
          }
          default:
            r.skip(tag & 7);
        }
      }
    } catch (e) {
      bad = e instanceof WireError ? `malformed AgentRule: ${e.message}` : String(e);
    }
    let attrs = 0;
    if (!bad && isLocalRuleId(id)) bad = `rule id ${id} is in the agent's reserved range (2^63 and up: its failsafe entries)`;
    if (!bad) {
      if (addrLen === 4) {
        if (len > 32) bad = `IPv4 prefix length ${len} is out of range 0..32`;
      } else if (addrLen === 16) {
        attrs |= F_V6;
        if (len > 128) bad = `IPv6 prefix length ${len} is out of range 0..128`;
      } else bad = `address must be 4 or 16 bytes, got ${addrLen}`;
    }
    if (!bad && hostBitsSet(buf, addrOff, addrLen, len)) bad = `host bits set after /${len}`;
    if (!bad) {
      if (action === 2) attrs |= F_ALLOW;
      else if (action !== 1) bad = `action ${action} is not supported by this agent (expected ACTION_DENY or ACTION_ALLOW)`;
    }
    if (!bad) {
      if (direction === 2) attrs |= F_EGRESS;
      else if (direction !== 1 && direction !== 0) bad = `direction ${direction} is not supported by this agent`;
    }
    if (!bad) {
      if (mode === 2) attrs |= F_MONITOR;
      else if (mode !== 1 && mode !== 0) bad = `mode ${mode} is not supported by this agent`;
    }
    if (bad) {
      t.markInvalid(id, bad);
      out.invalid++;
      continue;
    }
    if (expire > 0 && expire <= now) {
      t.remove(id);
      out.expired++;
      continue;
    }
    t.upsertRaw(id, attrs, buf, addrOff, len, expire);
    out.upserted++;
  }
  return out;
}
