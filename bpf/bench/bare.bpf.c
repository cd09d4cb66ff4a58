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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
