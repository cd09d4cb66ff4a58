// Hostile input at the HTTP/JSON boundary (issue 16, finding 4): each request
// gets a 4xx naming the field, with a short message, stores nothing, and the
// control plane goes on serving (a new agent reaches InSync; /healthz,
// /v1/counters and /v1/nodes answer).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { assertStillServes, http, httpRejected, type Rig, startRig, storeCounts } from './rig.js';

let rig: Rig;
let ruleId: bigint;

before(async () => {
  rig = await startRig();
  ruleId = (await rig.api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'kept' } })).rule!.id;
});

after(async () => {
  await rig?.stop();
});

const body = (v: unknown) => JSON.stringify(v);
const post = (path: string, v: unknown) => () => http(rig.cp, 'POST', path, typeof v === 'string' ? v : body(v));

describe('ids', () => {
  test('ids beyond int8, not decimal, or zero: 400 naming the id', async () => {
    for (const id of ['99999999999999999999', '9223372036854775808', '18446744073709551615', 'abc', '0x1', '0', '-1', '1e3']) {
      for (const method of ['GET', 'DELETE']) {
        await httpRejected(rig, `${method} ${id}`, () => http(rig.cp, method, `/v1/rules/${id}`), {
          status: 400,
          reason: 'INVALID_QUERY',
          field: /\bid\b/,
        });
      }
      await httpRejected(rig, `PATCH ${id}`, () => http(rig.cp, 'PATCH', `/v1/rules/${id}`, body({ comment: 'patched' })), {
        status: 400,
        reason: 'INVALID_QUERY',
        field: /\bid\b/,
      });
    }
    const kept = await http(rig.cp, 'GET', `/v1/rules/${ruleId}`);
    assert.equal(kept.json?.rule?.comment, 'kept', '0x1 and friends patched nothing');
    await httpRejected(rig, 'rule_ids beyond int8', () => http(rig.cp, 'GET', '/v1/counters?rule_ids=1,99999999999999999999'), {
      status: 400,
      reason: 'INVALID_QUERY',
      field: /rule_ids/,
    });
    await assertStillServes(rig, 'bad ids');
  });

  test('body fields that fromJSON would hand to BigInt(): 400 naming the field', async () => {
    const cases: [string, unknown, RegExp, string][] = [
      ['rule.id "abc"', { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', id: 'abc' } }, /rule\.id/, 'INVALID_FIELD'],
      ['rule.revision 1e3', { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', revision: '1e3' } }, /rule\.revision/, 'INVALID_FIELD'],
      ['rule.id 2^64', { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', id: '18446744073709551616' } }, /rule\.id/, 'INVALID_FIELD'],
      [
        'ttl.seconds "x"',
        { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY' }, ttl: { seconds: 'x' } },
        /ttl\.seconds/,
        'INVALID_FIELD',
      ],
      ['rule an array', { rule: [1, 2] }, /\brule\b/, 'INVALID_FIELD'],
      [
        'rule.selector a list',
        { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', selector: ['a'] } },
        /rule\.selector/,
        'INVALID_FIELD',
      ],
      ['rule.cidr a number', { rule: { cidr: 7, action: 'ACTION_DENY' } }, /rule\.cidr/, 'INVALID_FIELD'],
      ['unknown enum name', { rule: { cidr: '198.51.100.1', action: 'ACTION_NUKE' } }, /rule\.action/, 'INVALID_ENUM'],
      [
        'expire_time not a time',
        { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', expireTime: 'soon' } },
        /rule\.expire_time/,
        'INVALID_FIELD',
      ],
      [
        'expire_time year 20000',
        { rule: { cidr: '198.51.100.1', action: 'ACTION_DENY', expireTime: '+020000-01-01T00:00:00Z' } },
        /rule\.expire_time/,
        'INVALID_FIELD',
      ],
    ];
    for (const [what, b, field, reason] of cases) await httpRejected(rig, what, post('/v1/rules', b), { status: 400, reason, field });
    await httpRejected(rig, 'PATCH rule.revision "x"', () => http(rig.cp, 'PATCH', `/v1/rules/${ruleId}`, body({ revision: 'x' })), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /rule\.revision/,
    });
    await httpRejected(
      rig,
      'PATCH update_mask a number',
      () => http(rig.cp, 'PATCH', `/v1/rules/${ruleId}`, body({ comment: 'x', updateMask: 5 })),
      {
        status: 400,
        reason: 'INVALID_FIELD',
        field: /update_mask/,
      },
    );
    await assertStillServes(rig, 'BigInt bodies');
  });

  test('arrays nested 100,000 deep: 400 INVALID_JSON, and the next request is answered', async () => {
    const deep = `{"rule": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    await httpRejected(rig, 'deep arrays', post('/v1/rules', deep), { status: 400, reason: 'INVALID_JSON', field: /deeper than 32/ });
    await httpRejected(rig, 'deep objects', post('/manage-ip', `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`), {
      status: 400,
      reason: 'INVALID_JSON',
      field: /deeper than 32/,
    });
    await assertStillServes(rig, 'deep JSON');
  });
});

describe('strings', () => {
  test('NUL in a comment, a selector value, a query or an address: 400 naming the field', async () => {
    await httpRejected(
      rig,
      'NUL comment',
      post('/v1/rules', { rule: { cidr: '198.51.100.2', action: 'ACTION_DENY', comment: 'a\u0000b' } }),
      {
        status: 400,
        reason: 'INVALID_FIELD',
        field: /rule\.comment.*NUL/,
      },
    );
    await httpRejected(
      rig,
      'NUL selector value',
      post('/v1/rules', { rule: { cidr: '198.51.100.2', action: 'ACTION_DENY', selector: { role: 'a\u0000b' } } }),
      { status: 400, reason: 'INVALID_FIELD', field: /rule\.selector/ },
    );
    await httpRejected(rig, 'NUL text', () => http(rig.cp, 'GET', '/v1/rules?text=%00'), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /text/,
    });
    await httpRejected(rig, 'NUL ip', post('/manage-ip', { action: 'block', ip: '192.0.2.9\u0000' }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /\bip\b/,
    });
    await httpRejected(rig, 'NUL manage-ip comment', post('/manage-ip', { action: 'block', ip: '192.0.2.9', comment: 'x\u0000' }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /comment/,
    });
    await httpRejected(rig, 'NUL node name', () => http(rig.cp, 'GET', '/v1/nodes/a%00b'), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /name/,
    });
    await assertStillServes(rig, 'NUL strings');
  });

  test('selectors too large for the unique index: 3,000 labels, twelve 253-character pairs', async () => {
    const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, 'v']));
    await httpRejected(rig, '3,000 labels', post('/v1/rules', { rule: { cidr: '198.51.100.3', action: 'ACTION_DENY', selector: many } }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /rule\.selector/,
    });
    const long = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`${'k'.repeat(250)}${String(i).padStart(3, '0')}`, 'v'.repeat(253)]),
    );
    await httpRejected(
      rig,
      'twelve long pairs',
      post('/v1/rules', { rule: { cidr: '198.51.100.3', action: 'ACTION_DENY', selector: long } }),
      {
        status: 400,
        reason: 'INVALID_SELECTOR',
        field: /rule\.selector/,
      },
    );
    await httpRejected(
      rig,
      'a long selector query',
      () =>
        http(
          rig.cp,
          'GET',
          `/v1/rules?selector=${Object.keys(many)
            .slice(0, 200)
            .map((k) => `${k}=v`)
            .join(',')}`,
        ),
      {
        status: 400,
        reason: 'INVALID_SELECTOR',
        field: /selector/,
      },
    );
    await assertStillServes(rig, 'large selectors');
  });

  test('a 200 KB CIDR: the error does not send it back', async () => {
    const r = await httpRejected(rig, '200 KB cidr', post('/v1/rules', { rule: { cidr: '1'.repeat(200_000), action: 'ACTION_DENY' } }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /rule\.cidr/,
    });
    assert.ok(r.text.length < 2000, `answer ${r.text.length} bytes`);
    const m = await httpRejected(rig, '200 KB manage-ip', post('/manage-ip', { action: 'block', ip: '1'.repeat(200_000) }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /\bip\b/,
    });
    assert.ok(m.text.length < 2000);
    await assertStillServes(rig, '200 KB CIDR');
  });
});

describe('tokens, paths, sizes', () => {
  test('a forged page token with a huge cursor: 400 INVALID_PAGE_TOKEN', async () => {
    const page = await http(rig.cp, 'GET', '/v1/rules?page_size=1');
    assert.equal(page.status, 200);
    for (const forged of [
      Buffer.from(JSON.stringify({ a: '99999999999999999999999', f: 'AAAAAAAAAAAAAAAA' })).toString('base64url'),
      `${Buffer.from(JSON.stringify({ a: '99999999999999999999999', f: 'x' })).toString('base64url')}.AAAAAAAAAAAAAAAAAAAAAA`,
    ]) {
      await httpRejected(rig, 'forged rules token', () => http(rig.cp, 'GET', `/v1/rules?page_token=${forged}`), {
        status: 400,
        reason: 'INVALID_PAGE_TOKEN',
        field: /page_token/,
      });
      await httpRejected(rig, 'forged nodes token', () => http(rig.cp, 'GET', `/v1/nodes?page_token=${forged}`), {
        status: 400,
        reason: 'INVALID_PAGE_TOKEN',
        field: /page_token/,
      });
    }
    await assertStillServes(rig, 'forged tokens');
  });

  test('a malformed percent-escape in the path: 400, not a closed socket', async () => {
    for (const path of ['/v1/rules/%zz', '/v1/rules/%E0%A4%A', '/v1/nodes/%', '/v1/nodes/%C3%28']) {
      for (const method of ['GET', 'DELETE', 'PATCH']) {
        if (method === 'PATCH' && path.startsWith('/v1/nodes')) continue;
        await httpRejected(rig, `${method} ${path}`, () => http(rig.cp, method, path, method === 'PATCH' ? '{}' : undefined), {
          status: 400,
          reason: 'INVALID_QUERY',
          field: /percent-encoding|\bid\b/,
        });
      }
    }
    await assertStillServes(rig, 'bad escapes');
  });

  test('a body over the limit is 413 MESSAGE_TOO_LARGE', async () => {
    const big = body({ rule: { cidr: '198.51.100.4', action: 'ACTION_DENY', comment: 'x'.repeat(300 * 1024) } });
    await httpRejected(rig, 'big body', post('/v1/rules', big), { status: 413, reason: 'MESSAGE_TOO_LARGE', field: /over \d+ bytes/ });
    await httpRejected(
      rig,
      'big manage-ip',
      post('/manage-ip', body({ action: 'block', ip: '192.0.2.1', comment: 'x'.repeat(300 * 1024) })),
      {
        status: 413,
        reason: 'MESSAGE_TOO_LARGE',
        field: /over \d+ bytes/,
      },
    );
    await assertStillServes(rig, 'big bodies');
  });

  test('manage-ip: a ttl of 1e300 seconds, an action that is not a string', async () => {
    await httpRejected(rig, 'ttl 1e300', post('/manage-ip', { action: 'block', ip: '192.0.2.77', ttl: 1e300 }), {
      status: 400,
      reason: 'INVALID_FIELD',
      field: /ttl/,
    });
    await httpRejected(rig, 'action object', post('/manage-ip', { action: { a: 1 }, ip: '192.0.2.77' }), {
      status: 400,
      reason: 'UNKNOWN_ACTION',
      field: /action/,
    });
    const before = await storeCounts(rig.url);
    assert.equal(before.rules, 1);
    await assertStillServes(rig, 'manage-ip');
  });
});
