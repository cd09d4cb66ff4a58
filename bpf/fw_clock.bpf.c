/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel's clocks for the agent (ABI 14): the detection policies count
 * in windows of jiffies (fw_policy.h, fw_pol_epoch), so the agent must know
 * the jiffies now (which window's cells a margin reads) and HZ (a window's
 * length in jiffies). Run with BPF_PROG_TEST_RUN on a frame of 16 bytes or
 * more (node-agent/src/datapath/kernel-clock.ts): writes bpf_jiffies64() and
 * bpf_ktime_get_coarse_ns() (little-endian u64s) into its first 16 bytes.
 * No maps; attached nowhere.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int fw_clock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 *out = data;

	if ((void *)(out + 2) > data_end)
		return XDP_ABORTED;
	out[0] = bpf_jiffies64();
	out[1] = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
