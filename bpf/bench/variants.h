/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Benchmark-only variants of the lookup and of the rule counters, compiled
 * into bench objects (-DFW_BENCH_VARIANTS plus one of the switches below)
 * for side-by-side measurements with the production programs on the same
 * maps. Their own maps are bench_* (not pinned: the bench fills them).
 *
 *   FW_BENCH_D24_FLAT    ABI 5's IPv4 lookup: configs looked up in a map, the /24
 *                        index in one level (64 MB per table); the two halves of
 *                        it alone, to tell which one a difference comes from:
 *   FW_BENCH_CFG_MAP       the table configs looked up in a map (a copy), not
 *                          read from the programs' global;
 *   FW_BENCH_D24_ONE_LEVEL the /24 index in one level (2^24 words).
 *   FW_BENCH_D24_DIRECT  the two-level index with the block pool as one map value
 *                        (bench_pool1: an ARRAY of one value of FW_BENCH_POOL1_BLOCKS
 *                        blocks, filled by the bench from the pool): the block word
 *                        read through an address computed from the /16 word, no
 *                        map lookup (no key through the stack, no null check).
 *   FW_BENCH_D24_HASHED  the /16's block placed where a hash of the /16 says
 *                        (bench_hpool, one value of FW_BENCH_POOL1_BLOCKS blocks, and
 *                        bench_howner, the /16 + 1 that owns each place): the owner
 *                        and the /24 word are read at once, both from the address
 *                        alone; the /16 word (this build's path) only when the owner
 *                        is another /16 or none (a collision, or no block).
 *   FW_BENCH_D24_EXPECT  the two-level index with the block path marked likely
 *                        (branch layout only).
 *   FW_BENCH_D24_GLOBAL  the two-level index with the block pool a global of the
 *                        program in a section of its own (bench_gpool in
 *                        .bss.fw_pool, its own map: FW_BENCH_POOL1_BLOCKS blocks,
 *                        filled by the bench from the pool): the block word read at
 *                        an address the program holds as an immediate (ld_imm64 of
 *                        the map value), no lookup, no key, no null check; the
 *                        block index masked to the pool's size (in production the
 *                        mask would be a .rodata value set before load).
 *   FW_BENCH_CNT_SHARED  rule counters in one shared array, atomic adds.
 *   FW_BENCH_CNT_HYBRID  per-CPU counters for slots userspace marks hot, the
 *                        shared array with atomic adds for the others.
 */
#ifndef FW_BENCH_VARIANTS_H
#define FW_BENCH_VARIANTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "fleetwall_abi.h"

#ifdef FW_BENCH_D24_FLAT
#define FW_BENCH_CFG_MAP
#define FW_BENCH_D24_ONE_LEVEL
#endif

#ifdef FW_BENCH_CFG_MAP
/* ABI 5's configs: looked up in a map (bench_tblcfg, the production configs copied by the bench). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_TABLE_COUNT);
	__type(key, __u32);
	__type(value, struct fw_table_cfg);
} bench_tblcfg SEC(".maps");
#endif

#ifdef FW_BENCH_D24_ONE_LEVEL
/* ABI 5's index: a /24 word for each of the 2^24 /24s (64 MB), filled by the bench from the two levels. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_D24_BLOCKS);
	__type(key, __u32);
	__type(value, struct fw_d24_block);
} bench_flat4 SEC(".maps");

static __always_inline __u32 fw_bench_flat_word(__u32 h)
{
	__u32 bi = h >> 16;
	const struct fw_d24_block *blk = bpf_map_lookup_elem(&bench_flat4, &bi);

	return blk ? blk->w[(h >> 8) & 255] : 0;
}
#endif

#ifdef FW_BENCH_D24_DIRECT
/* 8 MB: room for the blocks of the bench's 1M set (~4,100); a block index is masked to it. */
#define FW_BENCH_POOL1_BLOCKS 8192
struct bench_pool1_val {
	__u32 w[FW_BENCH_POOL1_BLOCKS * 256];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_pool1_val);
} bench_pool1 SEC(".maps");
#endif

#ifdef FW_BENCH_D24_GLOBAL
#define FW_BENCH_POOL1_BLOCKS 8192
__u32 bench_gpool[FW_BENCH_POOL1_BLOCKS * 256] __attribute__((section(".bss.fw_pool")));
#endif

#ifdef FW_BENCH_D24_HASHED
#define FW_BENCH_POOL1_BLOCKS 8192
#define FW_BENCH_HASH_SHIFT 19 /* 32 - log2(FW_BENCH_POOL1_BLOCKS) */
struct bench_hpool_val {
	__u32 w[FW_BENCH_POOL1_BLOCKS * 256];
};
struct bench_howner_val {
	__u32 owner[FW_BENCH_POOL1_BLOCKS]; /* the /16 (h >> 16) + 1 whose block is here; 0 = none */
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_hpool_val);
} bench_hpool SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_howner_val);
} bench_howner SEC(".maps");
#endif

#if defined(FW_BENCH_D24_DIRECT) || defined(FW_BENCH_D24_HASHED) || defined(FW_BENCH_D24_EXPECT) || \
	defined(FW_BENCH_D24_GLOBAL)
/* fw_index_word() of these variants (fw_decide.h): the /24 word of host-order address h. */
static __always_inline __u32 fw_bench_index_word(const struct fw_table_cfg *cfg, void *pool, __u32 h)
{
#if defined(FW_BENCH_D24_DIRECT)
	__u32 zero = 0;
	const struct bench_pool1_val *p1 = bpf_map_lookup_elem(&bench_pool1, &zero);
	__u32 w = cfg->d16[h >> 16];

	(void)pool;
	if (!p1)
		return 0;
	if (w & FW_D16_BLOCK)
		w = p1->w[(((w & FW_D16_INDEX_MASK) << 8) | ((h >> 8) & 255)) & (FW_BENCH_POOL1_BLOCKS * 256 - 1)];
	return w;
#elif defined(FW_BENCH_D24_HASHED)
	__u32 zero = 0;
	const struct bench_hpool_val *hp = bpf_map_lookup_elem(&bench_hpool, &zero);
	const struct bench_howner_val *ho = bpf_map_lookup_elem(&bench_howner, &zero);
	__u32 x = h >> 16;
	__u32 at = (x * 0x9E3779B1u) >> FW_BENCH_HASH_SHIFT;

	if (!hp || !ho)
		return 0;
	__u32 hw = hp->w[((at << 8) | ((h >> 8) & 255)) & (FW_BENCH_POOL1_BLOCKS * 256 - 1)];
	if (ho->owner[at & (FW_BENCH_POOL1_BLOCKS - 1)] == x + 1)
		return hw;
	__u32 w = cfg->d16[x];
	if (w & FW_D16_BLOCK) {
		__u32 b = w & FW_D16_INDEX_MASK;
		const struct fw_d24_block *blk = bpf_map_lookup_elem(pool, &b);
		if (!blk)
			return 0;
		w = blk->w[(h >> 8) & 255];
	}
	return w;
#elif defined(FW_BENCH_D24_GLOBAL)
	__u32 w = cfg->d16[h >> 16];

	(void)pool;
	if (w & FW_D16_BLOCK)
		w = bench_gpool[(((w & FW_D16_INDEX_MASK) << 8) | ((h >> 8) & 255)) & (FW_BENCH_POOL1_BLOCKS * 256 - 1)];
	return w;
#elif defined(FW_BENCH_D24_EXPECT)
	__u32 w = cfg->d16[h >> 16];

	if (__builtin_expect(!!(w & FW_D16_BLOCK), 1)) {
		__u32 b = w & FW_D16_INDEX_MASK;
		const struct fw_d24_block *blk = bpf_map_lookup_elem(pool, &b);
		if (__builtin_expect(!blk, 0))
			return 0;
		w = blk->w[(h >> 8) & 255];
	}
	return w;
#endif
}
#endif

#if defined(FW_BENCH_CNT_SHARED) || defined(FW_BENCH_CNT_HYBRID)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__type(value, struct fw_counter);
} bench_cnt SEC(".maps");
#endif

#ifdef FW_BENCH_CNT_HYBRID
#define BENCH_HOT 256
struct bench_hot {
	__u32 tag;  /* slot + 1 of the rule counted here; 0 = none */
	__u32 pad;
	__u64 packets;
	__u64 bytes;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64 * BENCH_HOT);
	__type(key, __u32);
	__type(value, struct bench_hot);
} bench_hot SEC(".maps");
#endif

#if defined(FW_BENCH_CNT_SHARED) || defined(FW_BENCH_CNT_HYBRID)
static __always_inline void fw_bench_count_rule(__u32 cpu, __u32 slot, __u64 bytes)
{
#ifdef FW_BENCH_CNT_HYBRID
	__u32 hi = cpu * BENCH_HOT + (slot & (BENCH_HOT - 1));
	struct bench_hot *h = bpf_map_lookup_elem(&bench_hot, &hi);
	if (h && h->tag == slot + 1) {
		h->packets += 1;
		h->bytes += bytes;
		return;
	}
#endif
	struct fw_counter *c = bpf_map_lookup_elem(&bench_cnt, &slot);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, bytes);
	}
}
#endif

#endif /* FW_BENCH_VARIANTS_H */
