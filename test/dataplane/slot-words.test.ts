// The IPv4 slot word (node-agent/src/datapath/slot-words.ts, ABI 15), pure:
// its low half is a match in the /24 word's format (what the programs count
// a hash hit as, read as is), every length's key is nonzero and its own, and
// the key decodes back to the entry for every length 0..32.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FW_D24_LEN_SHIFT, FW_D24_SLOT_MASK, FW_D24_VERDICT_SHIFT, FW_S4_KEY_MASK, FW_SV } from '../../node-agent/src/datapath/abi.js';
import { ATTR_ALLOW, ATTR_MONITOR } from '../../node-agent/src/datapath/datapath.js';
import { attrs4, code4, decodeKey4, keyHi4, lo4, S4_KEY_LO, slot4 } from '../../node-agent/src/datapath/slot-words.js';

const KEY_LO = Number(FW_S4_KEY_MASK & 0xffffffffn);
const mask = (v: number, len: number) => (len === 0 ? 0 : (v & (0xffffffff << (32 - len))) >>> 0);

test('the key bits of the low half are the length code, and the high half is all key', () => {
  assert.equal(S4_KEY_LO, KEY_LO);
  assert.equal(FW_S4_KEY_MASK >> 32n, 0xffffffffn);
  assert.equal(KEY_LO, 31 << FW_D24_LEN_SHIFT, 'the code is where the /24 word keeps its length field');
});

test("a slot word's low half reads as a /24 word match: slot, verdict, a nonzero length field", () => {
  const attrsOf = [0, ATTR_MONITOR, ATTR_ALLOW, ATTR_ALLOW | ATTR_MONITOR];
  const verdictOf = [FW_SV.drop, FW_SV.wouldDrop, FW_SV.pass, FW_SV.pass];
  for (let len = 0; len <= 32; len++) {
    for (const slot of [0, 1, 1023, FW_D24_SLOT_MASK]) {
      attrsOf.forEach((attrs, i) => {
        const lo = lo4(len, slot, attrs);
        assert.equal(lo & FW_D24_SLOT_MASK, slot, `slot (len ${len})`);
        assert.equal((lo >>> FW_D24_VERDICT_SHIFT) & 3, verdictOf[i], `verdict (len ${len}, attrs ${attrs})`);
        assert.notEqual((lo >>> FW_D24_LEN_SHIFT) & 31, 0, `length field (len ${len}): slot 0 allow is not 0`);
        assert.equal(slot4(lo), slot);
        assert.equal(attrs4(lo), attrs, `attrs read back (len ${len})`);
      });
    }
  }
});

test('the probed lengths 25..32 have codes 1..8 and the address as the high half, as fw_probe4 builds its key', () => {
  const a = 0xc0a80a07;
  for (let len = 25; len <= 32; len++) {
    assert.equal(code4(len), len - 24);
    assert.equal(keyHi4(mask(a, len), len), mask(a, len));
  }
});

test('every (address, length) has its own key, never that of an empty slot, and decodes back', () => {
  const addrs = [0, 0xffffffff, 0x80000000, 0x0a000001, 0xc0a80a07, 0x0b0000ff, 0x10000100];
  const seen = new Map<string, string>();
  for (const v of addrs) {
    for (let len = 0; len <= 32; len++) {
      const a = mask(v, len);
      const lo = lo4(len, 5, 0) & S4_KEY_LO;
      const hi = keyHi4(a, len);
      assert.ok(lo !== 0, `len ${len}: the key's low half is never that of an empty slot`);
      const key = `${lo}:${hi}`;
      const other = seen.get(key);
      if (other !== undefined) assert.equal(other, `${a}/${len}`, `key of ${a}/${len} is also that of ${other}`);
      seen.set(key, `${a}/${len}`);
      const d = decodeKey4(lo4(len, 5, ATTR_ALLOW), hi);
      assert.deepEqual({ ...d }, { len, a }, `decode ${a}/${len}`);
    }
  }
});
