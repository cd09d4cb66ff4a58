/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Benchmark-only: ABI 9's counting of the detection policies, an LRU hash of
 * FW_BENCH_POL_SOURCES groups (bench_pol_src, preallocated) with a window per
 * group from its first packet, atomic adds, one hit per group and window.
 * Compiled instead of the count-min sketch with -DFW_BENCH_POL_LRU
 * (fw_policy.h), for the spoofed-flood comparison of bench:respond
 * (bench/respond/flood-compare.ts); the same parse and policy loop as the
 * production build, so the two differ in the counting structure (and its
 * clock: the LRU's windows are per group, in ns, on the coarse clock read once
 * per jiffy per CPU as the production build did before ABI 14).
 */
#ifndef FW_BENCH_POL_LRU_H
#define FW_BENCH_POL_LRU_H

#define FW_BENCH_POL_SOURCES 65536

struct bench_pol_count {
	__u64 window_start_ns;
	__u64 packets;
	__u64 bytes;
	__u64 reported_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_BENCH_POL_SOURCES);
	__type(key, struct fw_pol_key);
	__type(value, struct bench_pol_count);
} bench_pol_src SEC(".maps");

/* The coarse clock as this CPU last read it, and the jiffies it read it in (unpinned: the program's own). */
struct bench_pol_clock {
	__u64 jiffies;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_pol_clock);
} bench_pol_clock SEC(".maps");

/* bpf_ktime_get_coarse_ns(), read once per jiffy per CPU (at most a tick behind it). */
static __always_inline __u64 bench_pol_now(__u64 j)
{
	__u32 z = 0;
	struct bench_pol_clock *c = bpf_map_lookup_elem(&bench_pol_clock, &z);

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->ns = bpf_ktime_get_coarse_ns();
		c->jiffies = j;
	}
	return c->ns;
}

static __always_inline void fw_pol_account(const struct fw_policy_set *ps, const struct fw_policy *p, __u32 i,
					   const struct fw_pol_pkt *pk)
{
	struct fw_pol_key k = {};
	__u64 now = bench_pol_now(pk->jiffies);

	fw_pol_key_of(p, pk, &k);
	struct bench_pol_count *c = bpf_map_lookup_elem(&bench_pol_src, &k);
	if (!c) {
		struct bench_pol_count n = { .window_start_ns = now };
		bpf_map_update_elem(&bench_pol_src, &k, &n, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&bench_pol_src, &k);
		if (!c)
			return;
	}
	__u64 start = c->window_start_ns;
	if (now - start >= p->window_ns) {
		start = now;
		c->window_start_ns = now;
		c->packets = 0;
		c->bytes = 0;
	}
	__u64 pkts = __sync_fetch_and_add(&c->packets, 1) + 1;
	__u64 by = __sync_fetch_and_add(&c->bytes, pk->bytes) + pk->bytes;
	if (!((p->limit_packets && pkts > p->limit_packets) || (p->limit_bytes && by > p->limit_bytes)))
		return;
	if (c->reported_ns == start)
		return;
	c->reported_ns = start;
	fw_pol_hit(&k, pkts, by, start, now);
}

#endif /* FW_BENCH_POL_LRU_H */
