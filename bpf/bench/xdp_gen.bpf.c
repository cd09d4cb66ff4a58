/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Live-frames traffic generator for the drop-rate benchmark: run with
 * BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES and ingress_ifindex = the
 * sending veth; every frame gets the next source address from bench_srcs
 * (valid IPv4 checksum) and is transmitted to the veth peer (XDP_TX).
 */
#include "vary.h"

/*
 * gen_ctl[0] = k: transmit one frame in 2^k, drop the others here (they go
 * straight back to the generator's own page pool): lowers the offered rate
 * without touching the receiver's path.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_iter SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *k = bpf_map_lookup_elem(&gen_ctl, &zero);
	__u32 *it = bpf_map_lookup_elem(&gen_iter, &zero);

	if (k && it && *k && (((*it)++) & ((1u << (*k & 15)) - 1)))
		return XDP_DROP;
	fw_bench_vary((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
