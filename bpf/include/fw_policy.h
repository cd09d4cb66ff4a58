/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Detection policies in the data path (issue 18): after the rules' verdict,
 * a packet the rules did not drop is counted per (policy, source group) for
 * every policy of its direction that matches it. Traffic of a protocol no
 * policy of its direction counts (or of a direction none counts) pays one
 * read in the program itself (fw_policy_wants: fw_pol_cfg[0].class_mask, an
 * array lookup the verifier inlines to an address, against the protocol
 * fw_parse read with the address): no call, no second parse. Layouts and the
 * design are in fw_policy_abi.h; the agent's half is node-agent/src/respond/.
 */
#ifndef FW_POLICY_H
#define FW_POLICY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fleetwall_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_policy_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_cfg SEC(".maps");

/* Preallocated: its memory is fixed when it is created, whatever the sources. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_POL_SOURCES);
	__type(key, struct fw_pol_key);
	__type(value, struct fw_pol_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_POL_HITS);
	__type(key, __u32);
	__type(value, struct fw_pol_hit);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_pol_stat);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_stat SEC(".maps");

/* What a policy matches on, parsed once per packet. */
struct fw_pol_pkt {
	__u32 family;      /* 4 or 6 */
	__u32 proto;       /* IP protocol (IPv6: the first next header) */
	__u32 has_port;    /* a first fragment (or unfragmented) TCP or UDP packet */
	__u32 dport;       /* host order */
	__u32 syn;         /* TCP SYN without ACK */
	__u32 w[4];        /* the group's address (source on ingress, destination on egress), network order */
};

/* Reads the L4 fields. Returns 0 if the packet is IPv4 or IPv6. */
static __always_inline int fw_pol_parse(void *data, void *data_end, int want_src, struct fw_pol_pkt *pk)
{
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return -1;
	__be16 proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		__be16 *vh = data + off;
		if ((void *)(vh + 2) > data_end)
			return -1;
		proto = vh[1];
		off += 4;
	}
	pk->has_port = 0;
	pk->syn = 0;
	pk->dport = 0;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->version != 4 || ip->ihl < 5)
			return -1;
		pk->family = 4;
		pk->proto = ip->protocol;
		pk->w[0] = want_src ? ip->saddr : ip->daddr;
		/* A later fragment has no L4 header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return 0;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (ip6->version != 6)
			return -1;
		pk->family = 6;
		pk->proto = ip6->nexthdr;
		if (want_src)
			__builtin_memcpy(pk->w, &ip6->saddr, 16);
		else
			__builtin_memcpy(pk->w, &ip6->daddr, 16);
		l4 = ip6 + 1;
	} else {
		return -1;
	}
	if (pk->proto == FW_POL_PROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return 0;
		pk->has_port = 1;
		pk->dport = bpf_ntohs(th->dest);
		pk->syn = th->syn && !th->ack;
	} else if (pk->proto == FW_POL_PROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return 0;
		pk->has_port = 1;
		pk->dport = bpf_ntohs(uh->dest);
	}
	return 0;
}

static __always_inline int fw_pol_matches(const struct fw_policy *p, const struct fw_pol_pkt *pk)
{
	if (p->proto != FW_POL_PROTO_ANY) {
		__u32 want = p->proto;
		if (want == FW_POL_PROTO_ICMP && pk->family == 6)
			want = FW_POL_PROTO_ICMP6;
		if (pk->proto != want)
			return 0;
	}
	if ((p->flags & FW_POL_F_SYN_ONLY) && !pk->syn)
		return 0;
	if (p->nports == 0)
		return 1;
	if (!pk->has_port)
		return 0;
#pragma unroll
	for (int i = 0; i < FW_POL_PORT_RANGES; i++) {
		if (i < p->nports && pk->dport >= p->port_lo[i] && pk->dport <= p->port_hi[i])
			return 1;
	}
	return 0;
}

/* Counts one matched packet for policy p; writes a hit when the group crosses a limit (once per window). */
static __always_inline void fw_pol_account(const struct fw_policy *p, const struct fw_pol_pkt *pk, __u64 bytes, __u64 now)
{
	struct fw_pol_key k = { .policy = p->id, .family = (__u8)pk->family };

	if (pk->family == 4) {
		__u32 a = pk->w[0];
		if (p->v4_len == 24)
			a &= bpf_htonl(0xffffff00);
		__builtin_memcpy(k.addr, &a, 4);
	} else {
		__builtin_memcpy(k.addr, pk->w, 8);
		if (p->v6_len != 64)
			__builtin_memcpy(k.addr + 8, &pk->w[2], 8);
	}
	struct fw_pol_count *c = bpf_map_lookup_elem(&fw_pol_src, &k);
	if (!c) {
		struct fw_pol_count n = { .window_start_ns = now };
		__u32 z = 0;
		struct fw_pol_stat *st = bpf_map_lookup_elem(&fw_pol_stat, &z);
		if (bpf_map_update_elem(&fw_pol_src, &k, &n, BPF_NOEXIST) == 0 && st)
			__sync_fetch_and_add(&st->inserts, 1);
		c = bpf_map_lookup_elem(&fw_pol_src, &k);
		if (!c)
			return;
	}
	__u64 start = c->window_start_ns;
	if (now - start >= p->window_ns) {
		/* A new window (two CPUs may both start it: a few packets of the old one are lost, never added twice). */
		start = now;
		c->window_start_ns = now;
		c->packets = 0;
		c->bytes = 0;
	}
	__u64 pkts = __sync_fetch_and_add(&c->packets, 1) + 1;
	__u64 by = __sync_fetch_and_add(&c->bytes, bytes) + bytes;
	if (!((p->limit_packets && pkts > p->limit_packets) || (p->limit_bytes && by > p->limit_bytes)))
		return;
	if (c->reported_ns == start)
		return;
	c->reported_ns = start;
	__u32 z = 0;
	struct fw_pol_stat *st = bpf_map_lookup_elem(&fw_pol_stat, &z);
	if (!st)
		return;
	__u64 seq = __sync_fetch_and_add(&st->head, 1);
	__u32 slot = (__u32)seq & (FW_POL_HITS - 1);
	struct fw_pol_hit *h = bpf_map_lookup_elem(&fw_pol_hits, &slot);
	if (!h)
		return;
	h->key = k;
	h->packets = pkts;
	h->bytes = by;
	h->elapsed_ns = now - start;
	h->at_ns = now;
	__sync_lock_test_and_set(&h->seq, seq + 1);
}

/*
 * Counts one packet for a policy it matched: a global function, verified once
 * for any policy and packet (not once per policy and per path through the
 * parse). The coarse clock (a tick, 1-4 ms) is enough for windows of 100 ms
 * and more, and costs a fraction of bpf_ktime_get_ns().
 */
__noinline int fw_pol_one(const struct fw_policy *p, const struct fw_pol_pkt *pk, __u64 bytes)
{
	if (!p || !pk || p->id == 0)
		return 0;
	fw_pol_account(p, pk, bytes, bpf_ktime_get_coarse_ns());
	return 1;
}

/* The protocol class of IP protocol `proto` (FW_POL_CLASS_*). */
static __always_inline __u32 fw_pol_class(__u32 proto)
{
	if (proto == FW_POL_PROTO_TCP)
		return FW_POL_CLASS_TCP;
	if (proto == FW_POL_PROTO_UDP)
		return FW_POL_CLASS_UDP;
	if (proto == FW_POL_PROTO_ICMP || proto == FW_POL_PROTO_ICMP6)
		return FW_POL_CLASS_ICMP;
	return FW_POL_CLASS_OTHER;
}

/*
 * May a policy of direction dir count a packet of IP protocol proto? Inline
 * in the program, before the call to its counting function: the one read
 * (and test) traffic that no policy counts pays.
 */
static __always_inline int fw_policy_wants(__u32 dir, __u32 proto)
{
	__u32 z = 0;
	const struct fw_policy_set *ps = bpf_map_lookup_elem(&fw_pol_cfg, &z);

	return ps && (ps->class_mask[dir & 1] & fw_pol_class(proto));
}

/*
 * Counts a packet the rules passed against the policies of direction dir.
 * The caller skips dropped packets (a banned source is not counted again).
 * Each program calls it from a global function of its own (fw_policy_xdp,
 * fw_policy_tc): verified once on its own, not once per path through the
 * lookup before it.
 */
static __always_inline void fw_policy_count(void *data, void *data_end, __u32 dir, __u64 bytes)
{
	__u32 z = 0;
	struct fw_policy_set *ps = bpf_map_lookup_elem(&fw_pol_cfg, &z);

	if (!ps || !(ps->dir_mask & (1u << dir)))
		return;
	struct fw_pol_pkt pk = {};
	if (fw_pol_parse(data, data_end, dir == FW_DIR_INGRESS, &pk) != 0)
		return;
	for (int i = 0; i < FW_POL_MAX; i++) {
		const struct fw_policy *p = &ps->p[i];
		if (p->id != 0 && p->direction == dir && fw_pol_matches(p, &pk))
			fw_pol_one(p, &pk, bytes);
	}
}

#endif /* FW_POLICY_H */
