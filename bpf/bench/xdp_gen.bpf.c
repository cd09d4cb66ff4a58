/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Live-frames traffic generator for the drop-rate benchmark: run with
 * BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES and ingress_ifindex = the
 * sending veth; frames get source addresses from bench_srcs (valid IPv4
 * checksum) and are transmitted to the veth peer (XDP_TX).
 *
 * Two traffic modes (gen_cfg.stamp_gen):
 *  - 0, rewrite: every frame gets the next source, so every frame's header
 *    line is written here (CPU0) and then read by the receiver (CPU1): each
 *    packet read is a cross-CPU cache-line transfer.
 *  - g != 0, stamped: a frame gets the next source only when the generation
 *    word in its UDP payload differs from g, then keeps it. The test-run page
 *    pool recycles frame pages without copying the template again (the
 *    kernel resets a frame only when its data pointers or flags changed: a
 *    program moved them, or the frame became an skb, as in the nftables
 *    case), so each page carries one source for its life. Pages keep being
 *    created (gen_stamps counts the stamps), each taking the next source of
 *    the cycle. The receiver reads a line that is not dirty in the
 *    generator's cache (closer to a NIC's DMA into the LLC). Bumping g
 *    re-stamps every page once (a new source table).
 */
#include "vary.h"

struct gen_cfg {
	__u32 tx_shift;  /* transmit one frame in 2^k, drop the others here */
	__u32 stamp_gen; /* 0: rewrite every frame; else stamp once per generation */
	__u32 gap_ps;    /* 0: as fast as it can; else one frame per gap_ps picoseconds */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} gen_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_iter SEC(".maps");

/* Frames stamped (pages that entered circulation or were re-stamped). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_stamps SEC(".maps");

/* When the next frame may go (pacing), per CPU, in picoseconds of ktime. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_next SEC(".maps");

#define GEN_OFF (14 + 20 + 8) /* UDP payload of an IPv4/UDP frame */
/* Credit kept after a stall, in frames: a catch-up burst never exceeds it. */
#define GEN_BURST 32

static long gen_wait(__u64 i, void *until)
{
	return bpf_ktime_get_ns() * 1000 >= *(__u64 *)until;
}

/*
 * Pacing: each frame waits (spinning here, on the generator's own CPU,
 * touching nothing the receiver uses) until its time slot, so the offered
 * rate is set without the generator meeting a full veth ring. A stall
 * longer than GEN_BURST frames is not caught up.
 */
static __always_inline void gen_pace(__u32 gap_ps)
{
	__u32 zero = 0;
	__u64 *next = bpf_map_lookup_elem(&gen_next, &zero);
	if (!next)
		return;
	__u64 now = bpf_ktime_get_ns() * 1000;
	if (now > *next + (__u64)GEN_BURST * gap_ps)
		*next = now - (__u64)GEN_BURST * gap_ps;
	else if (now < *next) {
		__u64 until = *next;
		bpf_loop(1 << 20, gen_wait, &until, 0);
	}
	*next += gap_ps;
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_cfg *cfg = bpf_map_lookup_elem(&gen_ctl, &zero);
	__u32 *it = bpf_map_lookup_elem(&gen_iter, &zero);

	if (!cfg || !it)
		return XDP_ABORTED;
	if (cfg->tx_shift && (((*it)++) & ((1u << (cfg->tx_shift & 15)) - 1)))
		return XDP_DROP;
	if (cfg->gap_ps)
		gen_pace(cfg->gap_ps);
	if (cfg->stamp_gen) {
		__u32 *g = data + GEN_OFF;
		if ((void *)(g + 1) > data_end)
			return XDP_ABORTED;
		if (*g == cfg->stamp_gen)
			return XDP_TX;
		*g = cfg->stamp_gen;
		__u64 *n = bpf_map_lookup_elem(&gen_stamps, &zero);
		if (n)
			*n += 1;
	}
	fw_bench_vary(data, data_end);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
