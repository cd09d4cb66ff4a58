/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Benchmark baselines: count-and-pass and count-and-drop, no parsing, no lookup. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifdef FW_BENCH_VARY
#include "vary.h"
#endif

struct bare_cnt {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bare_cnt);
} bare_cnt SEC(".maps");

static __always_inline void bare_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct bare_cnt *c = bpf_map_lookup_elem(&bare_cnt, &zero);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
}

SEC("xdp")
int bare_pass(struct xdp_md *ctx)
{
#ifdef FW_BENCH_VARY
	fw_bench_vary((void *)(long)ctx->data, (void *)(long)ctx->data_end);
#endif
	bare_count(ctx);
	return XDP_PASS;
}

SEC("xdp")
int bare_drop(struct xdp_md *ctx)
{
	bare_count(ctx);
	return XDP_DROP;
}

/* Reads the Ethernet and IPv4 source address (what any filter must touch), then drops. */
SEC("xdp")
int bare_parse_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct bare_cnt *c = bpf_map_lookup_elem(&bare_cnt, &zero);

	if (data + 34 > data_end || !c)
		return XDP_PASS;
	c->packets++;
	c->bytes += *(__u32 *)(data + 26) & 1;
	return XDP_DROP;
}

/* Ethernet (untagged) + IPv4, source in reach: the anchors' checks, as fleetwall's parse does them. */
static __always_inline int bench_ipv4(void *data, void *data_end)
{
	__u8 *p = data;

	return data + 34 <= data_end && p[12] == 0x08 && p[13] == 0x00 && (p[14] & 0xf0) == 0x40;
}

/*
 * A plain LPM trie, the "LPM trie" anchor (fleetwall's own programs
 * read an IPv4 /24 index first, so no fleetwall layout is a plain trie): the
 * same prefixes in one BPF_MAP_TYPE_LPM_TRIE per family, Ethernet + IPv4 or
 * IPv6 checks, one lookup of the source, the hit counted in the value (an
 * atomic add), drop; a miss passes.
 */
struct trie4_key {
	__u32 prefixlen;
	__u32 addr;  /* network order */
};

struct trie6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 21);
	__type(key, struct trie4_key);
	__type(value, __u64);  /* packets matched */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} trie4_srcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 18);
	__type(key, struct trie6_key);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} trie6_srcs SEC(".maps");

SEC("xdp")
int trie_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u64 *n = 0;

#ifdef FW_BENCH_VARY
	fw_bench_vary(data, data_end);
#endif
	if (data + 54 <= data_end && p[12] == 0x86 && p[13] == 0xdd && (p[14] & 0xf0) == 0x60) {
		struct trie6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, p + 22, 16);
		n = bpf_map_lookup_elem(&trie6_srcs, &k);
	} else if (bench_ipv4(data, data_end)) {
		struct trie4_key k = { .prefixlen = 32, .addr = *(__u32 *)(p + 26) };
		n = bpf_map_lookup_elem(&trie4_srcs, &k);
	}
	if (!n)
		return XDP_PASS;
	__sync_fetch_and_add(n, 1);
	return XDP_DROP;
}

#ifndef FW_BENCH_VARY
/*
 * The xdp-filter design, as an anchor for the drop-rate bench: exact IPv4
 * source addresses in a plain kernel hash (preallocated, the default).
 * Ethernet + IPv4 checks as fleetwall's parse does them, one lookup, count
 * the hit in the value (an atomic add: right on any CPU), drop; a miss
 * passes. No prefixes: a /24 rule is 256 keys here (the bench fills one
 * address per /24, the one its traffic comes from).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);    /* IPv4 source address, as in the packet */
	__type(value, __u64);  /* packets dropped */
} hash32_srcs SEC(".maps");

SEC("xdp")
int hash32_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;

	if (!bench_ipv4(data, data_end))
		return XDP_PASS;
	__u32 src = *(__u32 *)(p + 26);
	__u64 *n = bpf_map_lookup_elem(&hash32_srcs, &src);
	if (!n)
		return XDP_PASS;
	__sync_fetch_and_add(n, 1);
	return XDP_DROP;
}
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";
