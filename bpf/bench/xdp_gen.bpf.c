/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Live-frames traffic generator for the drop-rate benchmark: run with
 * BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES and ingress_ifindex = the
 * sending veth; every frame gets the next source address from bench_srcs
 * (valid IPv4 checksum) and is transmitted to the veth peer (XDP_TX).
 */
#include "vary.h"

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	fw_bench_vary((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
