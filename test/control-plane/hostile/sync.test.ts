// Hostile input on AgentService.Sync (issue 16, findings 1 and 7): values any
// client can send that Postgres would refuse (u64 beyond bigint, a direction
// beyond smallint, NUL) or that would grow state without bound (names and
// labels off the agent's own grammar, huge versions and interface lists,
// counters for rules that do not exist) end the stream with INVALID_ARGUMENT
// naming the field - nothing of them is stored - or, for text an agent
// reports for people, are tidied and kept short. After each, a new agent
// still reaches InSync and /v1/counters and /v1/nodes still answer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import type { AgentStatus, Detection, Hello, SyncRequest } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { XdpMode } from '../../../proto/gen/fleetwall/v1/node.js';
import { Action, Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { errorInfoOf } from '../../support/control-plane.js';
import { eventually } from '../../support/eventually.js';
import { withSql } from '../../support/rule-fixtures.js';
import { SyncClient } from '../../support/scripted-agent.js';
import { assertStillServes, type Rig, startRig, storeCounts } from './rig.js';

let rig: Rig;
let ruleId: bigint;
const U64_MAX = (1n << 64n) - 1n;
let n = 0;

before(async () => {
  rig = await startRig({ pingIntervalMs: 1000 });
  ruleId = (await rig.api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } })).rule!.id;
});

after(async () => {
  await rig?.stop();
});

/** A Detection (issue 18) of 192.0.2.9/32 for policy 1, with `over` changed. */
function detection(over: Partial<Detection>): SyncRequest {
  return {
    msg: {
      $case: 'detection',
      value: {
        kind: 'detection',
        policyId: 1n,
        policy: 'p',
        address: Buffer.from([192, 0, 2, 9]),
        prefixLength: 32,
        packets: 10n,
        bytes: 1000n,
        window: { seconds: 1n, nanos: 0 },
        packetsPerSecond: 10,
        bytesPerSecond: 1000,
        detectTime: new Date(),
        monitor: false,
        bannedLocally: true,
        ...over,
      },
    },
  };
}

/** An AgentStatus with `over` changed. */
function agentStatus(over: Partial<AgentStatus>): SyncRequest {
  return {
    msg: {
      $case: 'status',
      value: {
        interfaces: [],
        rulesInKernel: 1n,
        mapFillRatio: 0,
        lastError: '',
        appliedRevision: 0n,
        kernelMemoryBytes: 0n,
        mapResizeFailures: undefined,
        failsafe: [],
        ...over,
      },
    },
  };
}

/** AgentStatus.map_resize_failures: one failed grow, now, with `over` changed. */
function resizeFailures(over: Partial<NonNullable<AgentStatus['mapResizeFailures']>>): SyncRequest {
  return agentStatus({ mapResizeFailures: { grow: 1n, shrink: 0n, lastReason: 'grow: no memory', lastTime: new Date(), ...over } });
}

/** The stream ends with INVALID_ARGUMENT naming `field`; nothing it sent is stored. */
async function streamRefused(client: SyncClient, reason: string, field: RegExp): Promise<void> {
  await client.waitEnded(15_000);
  const e = client.ended!;
  assert.equal(e.code, status.INVALID_ARGUMENT, `${status[e.code]} ${e.details}`);
  assert.equal(e.error ? errorInfoOf(e.error)?.reason : undefined, reason, e.details);
  assert.match(e.details, field);
  assert.ok(e.details.length < 1000, `short message (${e.details.length})`);
}

describe('Hello', () => {
  const cases: [string, Partial<Hello>, string, RegExp][] = [
    ['NUL in node_name', { nodeName: 'a\u0000b' }, 'INVALID_FIELD', /hello\.node_name/],
    ['node_name off the grammar', { nodeName: 'web 1; drop table' }, 'INVALID_FIELD', /hello\.node_name/],
    ['node_name of 300 characters', { nodeName: 'n'.repeat(300) }, 'INVALID_FIELD', /hello\.node_name/],
    ['empty node_name', { nodeName: '' }, 'NODE_NAME_REQUIRED', /hello\.node_name/],
    ['a label key off the grammar', { labels: { 'bad key': 'v' } }, 'INVALID_LABELS', /hello\.labels/],
    ['NUL in a label value', { labels: { role: 'a\u0000' } }, 'INVALID_FIELD', /hello\.labels/],
    [
      '100 labels',
      { labels: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'])) },
      'INVALID_LABELS',
      /hello\.labels/,
    ],
    ['agent_version of 10 KB', { agentVersion: 'v'.repeat(10_000) }, 'INVALID_FIELD', /hello\.agent_version/],
    [
      'NUL in an interface name',
      { interfaces: [{ name: 'eth\u00000', ifindex: 2, xdpMode: 1, egressMode: 1 }] },
      'INVALID_FIELD',
      /hello\.interfaces\[0\]\.name/,
    ],
    [
      '1,000 interfaces',
      { interfaces: Array.from({ length: 1000 }, (_, i) => ({ name: `e${i}`, ifindex: i, xdpMode: 1, egressMode: 1 })) },
      'INVALID_FIELD',
      /hello\.interfaces/,
    ],
    [
      'an unknown xdp_mode',
      { interfaces: [{ name: 'eth0', ifindex: 2, xdpMode: 77 as XdpMode, egressMode: 1 }] },
      'INVALID_ENUM',
      /xdp_mode 77/,
    ],
    ['resume_revision 2^64-1', { resumeRevision: U64_MAX }, 'INVALID_FIELD', /hello\.resume_revision/],
    ['capacity_per_table 2^40', { capacityPerTable: 1n << 40n }, 'INVALID_FIELD', /hello\.capacity_per_table/],
  ];
  for (const [what, hello, reason, field] of cases) {
    test(what, async () => {
      const before = await storeCounts(rig.url);
      const c = new SyncClient(rig.cp.target, { nodeName: `hello-${++n}` }).connect(hello);
      try {
        await streamRefused(c, reason, field);
      } finally {
        c.close();
      }
      assert.deepEqual(await storeCounts(rig.url), before, 'no node row, nothing else');
      await assertStillServes(rig, what);
    });
  }
});

describe('after Hello', () => {
  async function live(): Promise<SyncClient> {
    const c = new SyncClient(rig.cp.target, { nodeName: `live-${++n}` }).connect({
      interfaces: [{ name: 'eth0', ifindex: 2, xdpMode: 1, egressMode: 1 }],
    });
    await c.waitInSync();
    await eventually(
      () => withSql(rig.url, async (sql) => (await sql`select 1 from nodes where name = ${c.opts.nodeName}`).length === 1),
      'the node row',
    );
    return c;
  }

  const poisons: [string, SyncRequest, string, RegExp][] = [
    [
      'CounterReport rule_id 2^64-1',
      {
        msg: {
          $case: 'counterReport',
          value: { seq: 1n, rules: [{ ruleId: U64_MAX, packets: 1n, bytes: 1n }], interfaces: [], sampleTime: new Date() },
        },
      },
      'INVALID_FIELD',
      /counter_report\.rules\[0\]\.rule_id/,
    ],
    [
      'CounterReport direction 40000',
      {
        msg: {
          $case: 'counterReport',
          value: {
            seq: 1n,
            rules: [],
            interfaces: [{ interface: 'eth0', direction: 40000 as Direction, counters: undefined }],
            sampleTime: new Date(),
          },
        },
      },
      'INVALID_ENUM',
      /counter_report\.interfaces\[0\]\.direction/,
    ],
    [
      'CounterReport NUL interface',
      {
        msg: {
          $case: 'counterReport',
          value: {
            seq: 1n,
            rules: [],
            interfaces: [{ interface: 'e\u0000', direction: Direction.DIRECTION_INGRESS, counters: undefined }],
            sampleTime: new Date(),
          },
        },
      },
      'INVALID_FIELD',
      /counter_report\.interfaces\[0\]\.interface/,
    ],
    ['AgentStatus rules_in_kernel 2^64-1', agentStatus({ rulesInKernel: U64_MAX }), 'INVALID_FIELD', /status\.rules_in_kernel/],
    ['AgentStatus kernel_memory_bytes 2^64-1', agentStatus({ kernelMemoryBytes: U64_MAX }), 'INVALID_FIELD', /status\.kernel_memory_bytes/],
    [
      'AgentStatus NUL in a failsafe entry',
      agentStatus({ failsafe: [{ cidr: '192.0.2.1/32', source: 'cp\u0000' }] }),
      'INVALID_FIELD',
      /status\.failsafe\[0\]\.source/,
    ],
    ['AgentStatus map_fill_ratio NaN', agentStatus({ mapFillRatio: Number.NaN }), 'INVALID_FIELD', /status\.map_fill_ratio/],
    [
      'AgentStatus NUL interface name',
      agentStatus({ interfaces: [{ name: 'x\u0000', ifindex: 1, xdpMode: 1, egressMode: 1 }] }),
      'INVALID_FIELD',
      /status\.interfaces\[0\]\.name/,
    ],
    // A negative count written as a (signed) varint is the same bytes as 2^64-1.
    [
      'AgentStatus map_resize_failures.grow 2^64-1 (-1 on the wire)',
      resizeFailures({ grow: U64_MAX }),
      'INVALID_FIELD',
      /status\.map_resize_failures\.grow/,
    ],
    [
      'AgentStatus map_resize_failures.shrink 2^63',
      resizeFailures({ shrink: 1n << 63n }),
      'INVALID_FIELD',
      /status\.map_resize_failures\.shrink/,
    ],
    [
      'AgentStatus map_resize_failures.last_time in the year 10000',
      resizeFailures({ lastTime: new Date(Date.UTC(10_000, 0, 1)) }),
      'INVALID_FIELD',
      /status\.map_resize_failures\.last_time/,
    ],
    ['Detection address of 5 bytes', detection({ address: Buffer.alloc(5) }), 'INVALID_FIELD', /detection\.address/],
    ['Detection prefix_length 33', detection({ prefixLength: 33 }), 'INVALID_FIELD', /detection\.prefix_length/],
    ['Detection policy_id 0', detection({ policyId: 0n }), 'INVALID_FIELD', /detection\.policy_id/],
    ['Detection negative rate', detection({ packetsPerSecond: -1 }), 'INVALID_FIELD', /detection\.packets_per_second/],
    ['Ack revision 2^63', { msg: { $case: 'ack', value: { revision: 1n << 63n } } }, 'INVALID_FIELD', /ack\.revision/],
    [
      'Nack revision 2^64-1',
      { msg: { $case: 'nack', value: { revision: U64_MAX, status: undefined } } },
      'INVALID_FIELD',
      /nack\.revision/,
    ],
  ];
  for (const [what, msg, reason, field] of poisons) {
    test(what, async () => {
      const c = await live();
      try {
        const before = await storeCounts(rig.url);
        c.send(msg);
        await streamRefused(c, reason, field);
        const after = await storeCounts(rig.url);
        assert.equal(after.ruleCounters, before.ruleCounters, 'no counter row');
        assert.equal(after.ifaceCounters, before.ifaceCounters, 'no interface counter row');
        assert.equal(after.rules, before.rules);
      } finally {
        c.close();
      }
      await assertStillServes(rig, what);
    });
  }

  test('NUL in last_error and a 200 KB NACK message are tidied and kept short; the stream stays up', async () => {
    const c = await live();
    try {
      c.send({
        msg: {
          $case: 'status',
          value: {
            interfaces: [],
            rulesInKernel: 3n,
            mapFillRatio: 0.5,
            lastError: 'map \u0000full',
            appliedRevision: 0n,
            kernelMemoryBytes: 0n,
            mapResizeFailures: undefined,
            failsafe: [],
          },
        },
      });
      c.nack(1n, { code: 8, message: `table full ${'x'.repeat(200 * 1024)}\u0000`, details: [] });
      await eventually(
        () =>
          withSql(rig.url, async (sql) => {
            const [r] = await sql<{ last_error: string; nack: number; rules: string }[]>`
              select last_error, length(last_nack) as nack, rules_in_kernel::text as rules from nodes where name = ${c.opts.nodeName}`;
            return r?.rules === '3' && r.nack !== null ? r : false;
          }),
        'the status and NACK stored',
      );
      const [r] = await withSql(
        rig.url,
        (sql) => sql<{ last_error: string; nack: number }[]>`
        select last_error, length(last_nack) as nack from nodes where name = ${c.opts.nodeName}`,
      );
      assert.equal(r!.last_error, 'map full');
      assert.ok(r!.nack < 2048, `the stored NACK is capped (${r!.nack} bytes)`);
      assert.equal(c.ended, undefined, 'the stream is up');
    } finally {
      c.close();
    }
    await assertStillServes(rig, 'tidied text');
  });

  test('a failed resize reason of 200 KB with NUL and escapes is tidied and kept short; the counts are stored; the stream stays up', async () => {
    const c = await live();
    try {
      const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
      c.send(resizeFailures({ grow: 3n, shrink: 2n, lastReason: `grow: \u0000verifier\u001b[2J ${'x'.repeat(200 * 1024)}`, lastTime: at }));
      const r = await eventually(
        () =>
          withSql(rig.url, async (sql) => {
            const [r] = await sql<{ grow: string; shrink: string; reason: string; at: Date | null }[]>`
              select resize_grow_failures::text as grow, resize_shrink_failures::text as shrink, last_resize_failure as reason,
                     last_resize_failure_time as at
              from nodes where name = ${c.opts.nodeName}`;
            if (r?.grow !== '3') throw new Error(`not yet: ${r?.grow}`);
            return r;
          }),
        'the failed resizes stored',
      );
      assert.equal(r.shrink, '2');
      assert.ok(r.reason.startsWith('grow: verifier[2J xxx'), r.reason.slice(0, 40));
      assert.equal(r.reason.length, 1025, 'cut to 1,024 characters and an ellipsis');
      assert.ok(!r.reason.includes('\u0000') && !r.reason.includes('\u001b'), 'no NUL, no ESC');
      assert.equal(r.at?.getTime(), at.getTime());
      assert.equal(c.ended, undefined, 'the stream is up');
    } finally {
      c.close();
    }
    await assertStillServes(rig, 'tidied resize failure');
  });

  test('counters for a rule that does not exist are dropped, not stored', async () => {
    const c = await live();
    try {
      const before = await storeCounts(rig.url);
      c.report({
        seq: 7n,
        rules: [
          { ruleId: 424242n, packets: 5n, bytes: 500n },
          { ruleId, packets: 2n, bytes: 200n },
        ],
      });
      await c.waitFor((x) => x.counterAcks.includes(7n), 'the counter ack');
      await eventually(
        () =>
          withSql(rig.url, async (sql) => (await sql`select 1 from node_rule_counters where node_name = ${c.opts.nodeName}`).length === 1),
        'the known rule counted',
      );
      const rows = await withSql(
        rig.url,
        (sql) => sql<{ rule_id: bigint }[]>`select rule_id from node_rule_counters where node_name = ${c.opts.nodeName}`,
      );
      assert.deepEqual(
        rows.map((x) => x.rule_id),
        [ruleId],
        'only the existing rule',
      );
      assert.equal((await storeCounts(rig.url)).ruleCounters, before.ruleCounters + 1);
    } finally {
      c.close();
    }
    await assertStillServes(rig, 'unknown rule ids');
  });
});
