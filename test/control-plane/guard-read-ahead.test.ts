// Issue 18, "operators stay fast while bans pour in": the two checks on an
// operator's CreateRule that read the store now and then - the lockout
// guard (the nodes' connect addresses, trusted refreshMs) and the capacity
// guard (the nodes' table sizes, trusted 1 s) - read AHEAD: a check past
// half of that starts the read in the background and answers with what it
// has, so a create never waits for the store while its data is still good.
// Before, the first create after each expiry waited for a store round trip
// (at one create per 50 ms, one in 20 creates: inside the p99), which under
// attack queues behind the ban writer's work on the database.
//
// The reads here are held open by the test: a check that waited for one
// would never answer, so "answered while the read is held" is the property,
// not a timing. The clocks are the test's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCidr } from '../../common/src/cidr.js';
import { type LockoutChecker, LockoutGuard } from '../../control-plane/src/lockout/lockout-guard.js';
import { protectedEntry } from '../../control-plane/src/lockout/protected-set.js';
import { CapacityGuard } from '../../control-plane/src/services/capacity-guard.js';
import type { NodePeer } from '../../control-plane/src/store/node-peers.js';
import { RuleCache } from '../../control-plane/src/sync/rule-cache.js';

/** Reads the test answers by hand, in order. */
class HeldReads<T> {
  readonly pending: { resolve: (v: T) => void; reject: (e: unknown) => void }[] = [];
  count = 0;
  read(): Promise<T> {
    this.count++;
    return new Promise<T>((resolve, reject) => this.pending.push({ resolve, reject }));
  }
  answer(v: T): void {
    this.pending.shift()!.resolve(v);
  }
}

/** Whether `p` settles before the microtasks and one macrotask run out (a promise waiting for a held read never does). */
async function settlesNow<T>(p: Promise<T>): Promise<{ value: T } | undefined> {
  let out: { value: T } | undefined;
  void p.then((value) => {
    out = { value };
  });
  await new Promise((r) => setImmediate(r));
  return out;
}

const hit = (c: LockoutChecker, cidr: string) => c.lockoutCheck(parseCidr(cidr), 'ingress')?.entry.cidr;

test('lockout guard: a check past half of refreshMs answers at once and reads ahead; the read then serves the next checks', async () => {
  let clock = 0;
  const reads = new HeldReads<NodePeer[]>();
  const guard = new LockoutGuard(
    [protectedEntry(parseCidr('127.0.0.0/8'), 'loopback', 'loopback')],
    { peers: () => reads.read() },
    {
      refreshMs: 1000,
      now: () => clock,
    },
  );
  // The first check has nothing: it waits for the read.
  const first = guard.checker();
  assert.equal(await settlesNow(first), undefined, 'no set yet: the first check waits for the read');
  reads.answer([{ name: 'web-1', address: '192.0.2.1' }]);
  assert.equal(hit(await first, '192.0.2.1/32'), '192.0.2.1/32');
  assert.equal(reads.count, 1);

  // Within the first half: no read.
  clock = 400;
  assert.ok(await settlesNow(guard.checker()));
  assert.equal(reads.count, 1, 'a fresh set is not read again');

  // Past half of refreshMs: the check answers with the set it has while the read it started is held open.
  clock = 600;
  const ahead = await settlesNow(guard.checker());
  assert.ok(ahead, 'a check past half of refreshMs must not wait for the store');
  assert.equal(hit(ahead.value, '198.51.100.7/32'), undefined, 'the set it has (web-2 is not read yet)');
  assert.equal(reads.count, 2, 'it started the read ahead');
  // More checks meanwhile: still at once, one read in flight.
  assert.ok(await settlesNow(guard.checker()));
  assert.equal(reads.count, 2);
  reads.answer([
    { name: 'web-1', address: '192.0.2.1' },
    { name: 'web-2', address: '198.51.100.7' },
  ]);
  await new Promise((r) => setImmediate(r));

  // Past the first read's refreshMs, the read ahead (at 600) is good: at once, and it knows web-2.
  clock = 1050;
  const later = await settlesNow(guard.checker());
  assert.ok(later, 'the read ahead serves the checks after the first read expired');
  assert.equal(hit(later.value, '198.51.100.7/32'), '198.51.100.7/32');
  assert.equal(reads.count, 2);

  // A set older than refreshMs (no check for that long) is still waited for: never trusted past refreshMs.
  clock = 5000;
  const stale = guard.checker();
  assert.equal(await settlesNow(stale), undefined, 'a set past refreshMs is not used');
  assert.equal(reads.count, 3);
  reads.answer([]);
  assert.equal(hit(await stale, '198.51.100.7/32'), undefined, 'web-2 is gone from the store: no longer protected');
});

test('lockout guard: a failed read ahead leaves the set in use; the check past refreshMs reads again and waits', async () => {
  let clock = 0;
  const reads = new HeldReads<NodePeer[]>();
  const guard = new LockoutGuard([], { peers: () => reads.read() }, { refreshMs: 1000, now: () => clock });
  const first = guard.checker();
  reads.answer([{ name: 'web-1', address: '192.0.2.1' }]);
  await first;
  clock = 700;
  const c = await settlesNow(guard.checker());
  assert.ok(c);
  reads.pending.shift()!.reject(new Error('the store is down'));
  await new Promise((r) => setImmediate(r));
  clock = 900; // (this check starts another read ahead)
  assert.equal(hit((await settlesNow(guard.checker()))!.value, '192.0.2.1/32'), '192.0.2.1/32', 'the set in use still serves');
  clock = 1200;
  const stale = guard.checker();
  assert.equal(await settlesNow(stale), undefined);
  reads.answer([]);
  await stale;
});

test('capacity guard: a check past half a second answers at once and reads the nodes ahead; too old a list is waited for', async () => {
  let clock = 10_000;
  const reads = new HeldReads<{ name: string; labels: Record<string, string>; capacity: number }[]>();
  const guard = new CapacityGuard({ capacities: () => reads.read() }, new RuleCache(), () => clock);
  const place = [{ selector: {}, table: 0 as const, count: 2 }];
  const first = guard.check(place, 'rule');
  assert.equal(await settlesNow(first), undefined, 'no list yet: the first check waits for the read');
  reads.answer([{ name: 'n1', labels: {}, capacity: 10 }]);
  await first;
  assert.equal(reads.count, 1);

  clock += 300;
  assert.ok(await settlesNow(guard.check(place, 'rule')));
  assert.equal(reads.count, 1, 'a fresh list is not read again');

  // Past half a second: at once with the list in use, and a read ahead.
  clock += 300;
  assert.ok(await settlesNow(guard.check(place, 'rule')), 'a check past half the TTL must not wait for the store');
  assert.equal(reads.count, 2);
  // The read ahead brings a node with a table of 1: once it is in, a check of 2 is refused.
  reads.answer([
    { name: 'n1', labels: {}, capacity: 10 },
    { name: 'n2', labels: {}, capacity: 1 },
  ]);
  await new Promise((r) => setImmediate(r));
  clock = 11_050; // past the first list's TTL, within half of the read ahead's
  await assert.rejects(guard.check(place, 'rule'), /n2/);
  assert.equal(reads.count, 2, 'the read ahead serves: no read');

  // Nothing for more than the TTL: the check waits for a new read.
  clock += 5000;
  const stale = guard.check(place, 'rule');
  assert.equal(await settlesNow(stale.catch(() => undefined)), undefined, 'a list past its TTL is not used');
  assert.equal(reads.count, 3);
  reads.answer([{ name: 'n1', labels: {}, capacity: 10 }]);
  await stale;
});
