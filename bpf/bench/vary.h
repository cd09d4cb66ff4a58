/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Benchmark-only prologue: rewrites the packet's source address on every
 * run from a table of addresses (bench_srcs), cycling with a per-CPU
 * counter, so BPF_PROG_TEST_RUN measures a cycle of distinct sources
 * instead of one hot packet. Compiled into bench variants only
 * (-DFW_BENCH_VARY); the production objects never contain it.
 */
#ifndef FW_BENCH_VARY_H
#define FW_BENCH_VARY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define BENCH_MAX_SRCS 65536

struct bench_src {
	__u32 v4;
	__u32 v6[4];
};

struct bench_ctl {
	__u32 mask;  /* number of sources - 1 (a power of two minus one) */
	__u32 fix_csum;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_MAX_SRCS);
	__type(key, __u32);
	__type(value, struct bench_src);
} bench_srcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_ctl);
} bench_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_iter SEC(".maps");

static __always_inline void fw_bench_ip_csum(struct iphdr *ip)
{
	__u16 *p = (__u16 *)ip;
	__u32 sum = 0;

	ip->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += p[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = (__u16)~sum;
}

static __always_inline void fw_bench_vary(void *data, void *data_end)
{
	__u32 zero = 0;
	struct bench_ctl *ctl = bpf_map_lookup_elem(&bench_ctl, &zero);
	__u32 *it = bpf_map_lookup_elem(&bench_iter, &zero);
	struct ethhdr *eth = data;

	if (!ctl || !it)
		return;
	__u32 idx = (*it)++ & ctl->mask;
	struct bench_src *s = bpf_map_lookup_elem(&bench_srcs, &idx);
	if (!s)
		return;
	if ((void *)(eth + 1) > data_end)
		return;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return;
		ip->saddr = s->v4;
		if (ctl->fix_csum)
			fw_bench_ip_csum(ip);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return;
		__builtin_memcpy(&ip6->saddr, s->v6, 16);
	}
}

#endif /* FW_BENCH_VARY_H */
