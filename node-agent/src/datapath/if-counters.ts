// Interface verdict totals: fw_if_cnt, one slot per (ifindex % (FW_IF_SLOTS
// / 2), direction) per CPU, mapped for the datapath's life (small); an
// interface whose slot another one owns counts in fw_if_cntx (a per-CPU hash)
// behind the slot's fallback flag. The owner is written to every CPU's copy
// at attach, before the first packet (the programs only look up).

import { constants as osConstants } from 'node:os';
import { FW_DIR, FW_IF_SLOTS, FW_IFS_FALLBACK, LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { CounterPair, InterfaceCounters, VerdictTotals } from './datapath.js';
import { DatapathError } from './errors.js';
import { type Mapping, mmapMap } from './libbpf.js';
import { BPF_NOEXIST } from './uapi.js';

const E = osConstants.errno;

// fw_if_slot in u32 / u64 words: the owner, its flags, then the counters (six u64: pass, drop, would-drop x packets, bytes).
const IFS_WORDS32 = LAYOUT.fw_if_slot.size / 4;
const IFS_FLAGS32 = LAYOUT.fw_if_slot.fields.flags / 4;
const IFS_WORDS64 = LAYOUT.fw_if_slot.size / 8;
const IFS_C64 = LAYOUT.fw_if_slot.fields.c / 8;
const IFS_COUNTERS64 = LAYOUT.fw_verdict_cnt.size / 8;
const VC = LAYOUT.fw_verdict_cnt.fields;
const CNT = LAYOUT.fw_counter.fields;
// The six counters, as u64 words from the start of a slot's fw_verdict_cnt.
const PASS_P = (VC.pass + CNT.packets) / 8;
const PASS_B = (VC.pass + CNT.bytes) / 8;
const DROP_P = (VC.drop + CNT.packets) / 8;
const DROP_B = (VC.drop + CNT.bytes) / 8;
const WD_P = (VC.would_drop + CNT.packets) / 8;
const WD_B = (VC.would_drop + CNT.bytes) / 8;

/** fw_if_cnt slot of an interface and direction (fw_decide). */
function ifSlot(ifindex: number, dir: number): number {
  return ((ifindex & (FW_IF_SLOTS / 2 - 1)) << 1) | dir;
}

function zero(): CounterPair {
  return { packets: 0n, bytes: 0n };
}

export class IfCounters {
  private readonly mapping: Mapping;
  private readonly v32: Uint32Array;
  private readonly v64: BigUint64Array;
  private readonly key = Buffer.alloc(LAYOUT.fw_if_key.size);

  /** ifCnt: fw_if_cnt (mmapable); ifCntx: fw_if_cntx. */
  constructor(
    ifCnt: BpfMap,
    private readonly ifCntx: BpfMap,
    private readonly ncpu: number,
  ) {
    this.mapping = mmapMap(ifCnt.fd, ifCnt.maxEntries * LAYOUT.fw_if_slot.size, ifCnt.name);
    const bytes = ncpu * FW_IF_SLOTS * LAYOUT.fw_if_slot.size;
    this.v32 = new Uint32Array(this.mapping.buffer, 0, bytes / 4);
    this.v64 = new BigUint64Array(this.mapping.buffer, 0, bytes / 8);
  }

  close(): void {
    this.mapping.unmap();
  }

  /**
   * Totals for an interface: its slot of each direction if free or ours
   * (zeroed, then the owner written to every CPU's copy), else an entry in
   * fw_if_cntx and the slot's fallback flag.
   */
  ensure(ifindex: number): void {
    const { v32, v64 } = this;
    for (const dir of [FW_DIR.ingress, FW_DIR.egress]) {
      const s = ifSlot(ifindex, dir);
      const owner = v32[s * IFS_WORDS32]!;
      if (owner === ifindex) continue;
      if (owner === 0) {
        for (let c = 0; c < this.ncpu; c++) {
          const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
          for (let j = 0; j < IFS_COUNTERS64; j++) Atomics.store(v64, b + j, 0n);
        }
        for (let c = 0; c < this.ncpu; c++) Atomics.store(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32, ifindex);
        continue;
      }
      const m = this.ifCntx;
      const errno = m.tryUpdate(this.keyOf(ifindex, dir), Buffer.alloc(m.valueStride), BPF_NOEXIST);
      if (errno !== 0 && errno !== E.EEXIST) throw new DatapathError('create interface counters in', m.name, errno);
      for (let c = 0; c < this.ncpu; c++) Atomics.or(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32 + IFS_FLAGS32, FW_IFS_FALLBACK);
    }
  }

  /** Frees the interface's slots (or removes its fw_if_cntx entries). */
  release(ifindex: number): void {
    const { v32, v64 } = this;
    for (const dir of [FW_DIR.ingress, FW_DIR.egress]) {
      const s = ifSlot(ifindex, dir);
      if (v32[s * IFS_WORDS32] === ifindex) {
        for (let c = 0; c < this.ncpu; c++) Atomics.store(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32, 0);
        for (let c = 0; c < this.ncpu; c++) {
          const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
          for (let j = 0; j < IFS_COUNTERS64; j++) Atomics.store(v64, b + j, 0n);
        }
      }
      this.ifCntx.delete(this.keyOf(ifindex, dir));
    }
  }

  /** Verdict totals per interface and direction, summed over the CPUs; names: ifindex -> name (else "if<n>"). */
  read(names: ReadonlyMap<number, string>): InterfaceCounters[] {
    const byKey = new Map<string, InterfaceCounters>();
    const entry = (ifindex: number, dir: number): VerdictTotals => {
      const key = `${ifindex}/${dir}`;
      let e = byKey.get(key);
      if (!e) {
        e = {
          ifname: names.get(ifindex) ?? `if${ifindex}`,
          ifindex,
          direction: dir === FW_DIR.egress ? 'egress' : 'ingress',
          totals: { pass: zero(), drop: zero(), wouldDrop: zero() },
        };
        byKey.set(key, e);
      }
      return e.totals;
    };
    // Owned slots of fw_if_cnt (the owner is written to every CPU's copy).
    const { v32, v64 } = this;
    for (let s = 0; s < FW_IF_SLOTS; s++) {
      const ifindex = v32[s * IFS_WORDS32]!;
      if (ifindex === 0) continue;
      const totals = entry(ifindex, s & 1);
      for (let c = 0; c < this.ncpu; c++) {
        const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
        totals.pass.packets += v64[b + PASS_P]!;
        totals.pass.bytes += v64[b + PASS_B]!;
        totals.drop.packets += v64[b + DROP_P]!;
        totals.drop.bytes += v64[b + DROP_B]!;
        totals.wouldDrop.packets += v64[b + WD_P]!;
        totals.wouldDrop.bytes += v64[b + WD_B]!;
      }
    }
    // Interfaces whose slot another one owns.
    const m = this.ifCntx;
    const ks = LAYOUT.fw_if_key.fields;
    const { keys, values, count } = m.lookupAll();
    for (let i = 0; i < count; i++) {
      const k = i * LAYOUT.fw_if_key.size;
      const totals = entry(keys.readUInt32LE(k + ks.ifindex), keys.readUInt32LE(k + ks.direction));
      for (let c = 0; c < this.ncpu; c++) {
        const o = i * m.valueStride + c * LAYOUT.fw_verdict_cnt.size;
        add(totals.pass, values, o + VC.pass);
        add(totals.drop, values, o + VC.drop);
        add(totals.wouldDrop, values, o + VC.would_drop);
      }
    }
    return [...byKey.values()].sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
  }

  private keyOf(ifindex: number, dir: number): Buffer {
    const F = LAYOUT.fw_if_key.fields;
    this.key.writeUInt32LE(ifindex, F.ifindex);
    this.key.writeUInt32LE(dir, F.direction);
    return this.key;
  }
}

function add(c: CounterPair, b: Buffer, off: number): void {
  c.packets += b.readBigUInt64LE(off + CNT.packets);
  c.bytes += b.readBigUInt64LE(off + CNT.bytes);
}
