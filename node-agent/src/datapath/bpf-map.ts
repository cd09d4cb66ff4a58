// One kernel map behind an fd: single-element and batch operations with
// DatapathErrors that name the map. Batch calls are one FFI call per chunk.

import { constants as osConstants } from 'node:os';
import { DatapathError } from './errors.js';
import { batchOpts, check, closeFd, lastErrno, possibleCpus, raw } from './libbpf.js';
import { BPF_ANY, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_OBJ_NAME_LEN, KERNEL_LAYOUT } from './uapi.js';

const { E2BIG, ENOENT, ENOSPC } = osConstants.errno;

export interface MapInfo {
  readonly type: number;
  readonly id: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly name: string;
}

/** bpf_map_info of a map fd. */
export function mapInfoByFd(fd: number, target: string): MapInfo {
  const L = KERNEL_LAYOUT.bpf_map_info;
  const F = L.fields;
  const info = Buffer.alloc(L.size);
  const len = new Uint32Array([info.length]);
  check(raw.bpf_obj_get_info_by_fd(fd, info, len) as number, 'read map info', target);
  const name = info.subarray(F.name, F.name + BPF_OBJ_NAME_LEN);
  const end = name.indexOf(0);
  return {
    type: info.readUInt32LE(F.type),
    id: info.readUInt32LE(F.id),
    keySize: info.readUInt32LE(F.key_size),
    valueSize: info.readUInt32LE(F.value_size),
    maxEntries: info.readUInt32LE(F.max_entries),
    flags: info.readUInt32LE(F.map_flags),
    name: name.subarray(0, end < 0 ? BPF_OBJ_NAME_LEN : end).toString('utf8'),
  };
}

export interface BatchResult {
  /** Elements processed before the call stopped. */
  readonly done: number;
  /** 0 when all were processed, else the positive errno of element `done`. */
  readonly errno: number;
}

export class BpfMap {
  readonly percpu: boolean;
  /** Bytes per value in user buffers: per-CPU maps hold ncpus x round8(valueSize). */
  readonly valueStride: number;
  private readonly oneKey: Buffer;

  constructor(
    readonly name: string,
    readonly fd: number,
    readonly info: MapInfo,
    private readonly ownsFd: boolean,
  ) {
    this.percpu = info.type === BPF_MAP_TYPE_PERCPU_ARRAY || info.type === BPF_MAP_TYPE_PERCPU_HASH;
    this.valueStride = this.percpu ? Math.ceil(info.valueSize / 8) * 8 * possibleCpus() : info.valueSize;
    this.oneKey = Buffer.alloc(info.keySize);
  }

  /** Opens a pinned map. */
  static fromPin(path: string, name: string): BpfMap {
    const fd = check(raw.bpf_obj_get(path) as number, 'open pinned map', path);
    return new BpfMap(name, fd, mapInfoByFd(fd, name), true);
  }

  get keySize(): number {
    return this.info.keySize;
  }

  get maxEntries(): number {
    return this.info.maxEntries;
  }

  close(): void {
    if (this.ownsFd) closeFd(this.fd);
  }

  lookup(key: Buffer): Buffer | null {
    const v = Buffer.alloc(this.valueStride);
    const r = raw.bpf_map_lookup_elem(this.fd, key, v) as number;
    if (r === 0) return v;
    const errno = lastErrno(r);
    if (errno === ENOENT) return null;
    throw new DatapathError('lookup map', this.name, errno);
  }

  lookupU32(k: number): Buffer | null {
    this.oneKey.writeUInt32LE(k >>> 0, 0);
    return this.lookup(this.oneKey);
  }

  update(key: Buffer, value: Buffer, flags: bigint = BPF_ANY): void {
    check(raw.bpf_map_update_elem(this.fd, key, value, flags) as number, 'update map', this.name, (e) =>
      e === E2BIG ? `map is full (${this.maxEntries} entries)` : undefined,
    );
  }

  /** Update returning the errno instead of throwing (0 on success). */
  tryUpdate(key: Buffer, value: Buffer, flags: bigint): number {
    const r = raw.bpf_map_update_elem(this.fd, key, value, flags) as number;
    return r === 0 ? 0 : lastErrno(r);
  }

  updateU32(k: number, value: Buffer): void {
    this.oneKey.writeUInt32LE(k >>> 0, 0);
    this.update(this.oneKey, value);
  }

  /** True if deleted, false if absent. */
  delete(key: Buffer): boolean {
    const r = raw.bpf_map_delete_elem(this.fd, key) as number;
    if (r === 0) return true;
    const errno = lastErrno(r);
    if (errno === ENOENT) return false;
    throw new DatapathError('delete from map', this.name, errno);
  }

  /** One batch update call; stops at the first failing element. */
  updateBatch(keys: Buffer, values: Buffer, count: number, elemFlags: bigint = BPF_ANY): BatchResult {
    if (count === 0) return { done: 0, errno: 0 };
    const n = new Uint32Array([count]);
    const r = raw.bpf_map_update_batch(this.fd, keys, values, n, batchOpts(elemFlags)) as number;
    return { done: n[0]!, errno: r === 0 ? 0 : lastErrno(r) };
  }

  /** One batch delete call; stops at the first failing element (ENOENT for an absent key). */
  deleteBatch(keys: Buffer, count: number): BatchResult {
    if (count === 0) return { done: 0, errno: 0 };
    const n = new Uint32Array([count]);
    const r = raw.bpf_map_delete_batch(this.fd, keys, n, batchOpts(0n)) as number;
    return { done: n[0]!, errno: r === 0 ? 0 : lastErrno(r) };
  }

  /**
   * Deletes `count` keys in batches, skipping absent ones. Calls onDeleted
   * with the index of each key actually deleted.
   */
  deleteMany(keys: Buffer, count: number, onDeleted?: (i: number) => void): number {
    const ks = this.keySize;
    let off = 0;
    let deleted = 0;
    while (off < count) {
      const res = this.deleteBatch(keys.subarray(off * ks), count - off);
      if (onDeleted) for (let i = off; i < off + res.done; i++) onDeleted(i);
      deleted += res.done;
      if (res.errno === 0) break;
      if (res.errno !== ENOENT) throw new DatapathError('delete batch from map', this.name, res.errno);
      off += res.done + 1; // skip the absent key
    }
    return deleted;
  }

  /**
   * Reads every element with batch lookups (chunks of `chunk`).
   * Returns packed keys and values (values at valueStride).
   */
  lookupAll(chunk = 65536): { keys: Buffer; values: Buffer; count: number } {
    const ks = this.keySize;
    const vs = this.valueStride;
    const size = Math.max(1, Math.min(chunk, this.maxEntries));
    const keyParts: Buffer[] = [];
    const valParts: Buffer[] = [];
    let total = 0;
    let inBatch: Buffer | null = null;
    const tokenSize = Math.max(ks, 8);
    let want = size;
    for (;;) {
      const outBatch = Buffer.alloc(tokenSize);
      const keys = Buffer.alloc(want * ks);
      const vals = Buffer.alloc(want * vs);
      const n = new Uint32Array([want]);
      const r = raw.bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, vals, n, null) as number;
      const got = n[0]!;
      const errno = r === 0 ? 0 : lastErrno(r);
      if (errno === ENOSPC && got === 0) {
        // A hash bucket holds more elements than the buffer: grow and retry.
        want *= 2;
        continue;
      }
      if (got > 0) {
        keyParts.push(keys.subarray(0, got * ks));
        valParts.push(vals.subarray(0, got * vs));
        total += got;
      }
      if (errno === ENOENT) break;
      if (errno !== 0) throw new DatapathError('read map', this.name, errno);
      inBatch = outBatch;
    }
    return { keys: Buffer.concat(keyParts), values: Buffer.concat(valParts), count: total };
  }

  /**
   * Reads every element in chunks of at most `chunk` (batch lookups): yields
   * the same key/value buffers, refilled (`count` elements each; values at
   * valueStride). Consume a chunk before asking for the next.
   */
  *lookupChunks(chunk = 16384): Generator<{ keys: Buffer; values: Buffer; count: number }> {
    const ks = this.keySize;
    const vs = this.valueStride;
    let want = Math.max(1, Math.min(chunk, this.maxEntries));
    const tokenSize = Math.max(ks, 8);
    let tokens: Buffer[] = [Buffer.alloc(tokenSize), Buffer.alloc(tokenSize)];
    let inBatch: Buffer | null = null;
    let keys = Buffer.alloc(want * ks);
    let vals = Buffer.alloc(want * vs);
    const n = new Uint32Array(1);
    for (;;) {
      const outBatch: Buffer = tokens[inBatch === tokens[0] ? 1 : 0]!;
      n[0] = want;
      const r = raw.bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, vals, n, null) as number;
      const got = n[0]!;
      const errno = r === 0 ? 0 : lastErrno(r);
      if (errno === ENOSPC && got === 0) {
        // A hash bucket holds more elements than the buffer: grow and retry.
        want *= 2;
        keys = Buffer.alloc(want * ks);
        vals = Buffer.alloc(want * vs);
        tokens = inBatch ? [inBatch, Buffer.alloc(tokenSize)] : tokens;
        continue;
      }
      if (errno !== 0 && errno !== ENOENT) throw new DatapathError('read map', this.name, errno);
      if (got > 0) yield { keys, values: vals, count: got };
      if (errno === ENOENT) return;
      inBatch = outBatch;
    }
  }

  /** Batch lookup of array keys [0, n) (arrays only). */
  lookupArrayPrefix(n: number): Buffer {
    const vs = this.valueStride;
    const out = Buffer.alloc(n * vs);
    if (n === 0) return out;
    const keys = Buffer.alloc(n * 4);
    const outBatch = Buffer.alloc(8);
    const cnt = new Uint32Array([n]);
    const r = raw.bpf_map_lookup_batch(this.fd, null, outBatch, keys, out, cnt, null) as number;
    const errno = r === 0 ? 0 : lastErrno(r);
    if (errno !== 0 && errno !== ENOENT) throw new DatapathError('read map', this.name, errno);
    if (cnt[0]! < n) throw new DatapathError('read map', this.name, ENOENT, `read ${cnt[0]} of ${n} elements`);
    return out;
  }
}
