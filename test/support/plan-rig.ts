// The planner's test rig on the fake datapath: rules (given and random), a
// reconciler opened on fresh or existing fake pins, and the check that one
// longest-prefix lookup in the (fake) kernel gives decide()'s verdict and
// counts the deciding rule's slot.

import assert from 'node:assert/strict';
import pino from 'pino';
import { type Address, type Prefix, maskBytes, parseCidr } from '../../common/src/cidr.js';
import { type PolicyRule, type RuleAction, type RuleDirection, type RuleMode, decide } from '../../common/src/policy.js';
import { Reconciler } from '../../node-agent/src/reconcile/reconciler.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { FakeDatapath } from './fake-datapath.js';

export const log = pino({ level: 'silent' });
let pinSeq = 0;
export const pinDir = (): string => `/fake/plan-${process.pid}-${pinSeq++}`;

export function rule(
  id: number,
  cidr: string,
  action: RuleAction = 'deny',
  opts: { mode?: RuleMode; direction?: RuleDirection; expire?: number } = {},
): RuleSpec {
  return {
    id: BigInt(id),
    prefix: parseCidr(cidr),
    action,
    mode: opts.mode ?? 'enforce',
    direction: opts.direction ?? 'ingress',
    expireUnixMs: opts.expire ?? 0,
  };
}

/** Random prefixes inside 10.0.0.0/16 and 2001:db8::/120 so they nest often. */
export function randomRule(rand: () => number, id: number): RuleSpec {
  const v6 = rand() < 0.2;
  const bytes = v6 ? new Uint8Array(16) : new Uint8Array(4);
  let len: number;
  if (v6) {
    bytes.set([0x20, 0x01, 0x0d, 0xb8]);
    bytes[15] = Math.floor(rand() * 256);
    bytes[14] = Math.floor(rand() * 4);
    len = 112 + Math.floor(rand() * 17);
  } else {
    bytes.set([10, 0, Math.floor(rand() * 4), Math.floor(rand() * 256)]);
    len = 16 + Math.floor(rand() * 17);
  }
  const prefix: Prefix = { family: v6 ? 6 : 4, bytes: maskBytes(bytes, len), len };
  return {
    id: BigInt(id),
    prefix,
    action: rand() < 0.25 ? 'allow' : 'deny',
    mode: rand() < 0.2 ? 'monitor' : 'enforce',
    direction: rand() < 0.3 ? 'egress' : 'ingress',
    expireUnixMs: 0,
  };
}

export function randomAddress(rand: () => number): Address {
  if (rand() < 0.2) {
    const b = new Uint8Array(16);
    b.set([0x20, 0x01, 0x0d, 0xb8]);
    b[14] = Math.floor(rand() * 4);
    b[15] = Math.floor(rand() * 256);
    return { family: 6, bytes: b };
  }
  return { family: 4, bytes: new Uint8Array([10, 0, Math.floor(rand() * 4), Math.floor(rand() * 256)]) };
}

export interface Rig {
  dp: FakeDatapath;
  rec: Reconciler;
}

export async function rig(dir = pinDir(), capacity = { prefixesPerTable: 4096, counterSlots: 4096 }): Promise<Rig> {
  const dp = new FakeDatapath({ pinDir: dir, capacity });
  const rec = await Reconciler.open(dp, log);
  return { dp, rec };
}

export async function applyAll(r: Rig): Promise<void> {
  const res = await r.rec.reconcile();
  assert.ok(res.ok, `reconcile failed: ${res.ok ? '' : res.message}`);
}

/** Checks every address of the test space against decide(). */
export function checkAgainstDecide(r: Rig, desired: Map<bigint, RuleSpec>, rand: () => number, samples = 600): void {
  const rules: PolicyRule[] = [...desired.values()];
  const slotToId = new Map<number, bigint>();
  const t = r.rec.table;
  for (const rl of desired.values()) {
    const i = t.find(rl.id);
    assert.notEqual(i, -1);
    const s = t.rules.slot[i]!;
    assert.ok(s >= 0, `rule ${rl.id} has no slot`);
    assert.ok(!slotToId.has(s), `slot ${s} given to two rules`);
    slotToId.set(s, rl.id);
  }
  for (let n = 0; n < samples; n++) {
    const addr = randomAddress(rand);
    for (const direction of ['ingress', 'egress'] as const) {
      const want = decide(rules, direction, addr, 'pass');
      const e = r.dp.lookup(direction, addr);
      const verdict = !e ? 'pass' : e.action === 'allow' ? 'pass' : e.mode === 'enforce' ? 'drop' : 'would_drop';
      const where = `${direction} ${Buffer.from(addr.bytes).toString('hex')}`;
      assert.equal(verdict, want.verdict, `verdict for ${where}`);
      assert.equal(e ? slotToId.get(e.slot) : undefined, want.deciding?.id, `counted rule for ${where}`);
    }
  }
}
