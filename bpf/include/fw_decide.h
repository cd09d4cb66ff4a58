/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-packet decision shared by the XDP and TC programs: parse, look up
 * one table (hash lengths longest first, then the trie), count, verdict.
 */
#ifndef FW_DECIDE_H
#define FW_DECIDE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fleetwall_abi.h"
#include "fw_maps.h"

struct fw_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

enum fw_verdict {
	FW_V_NONE = 0,       /* not an IPv4/IPv6 packet we could parse: pass, uncounted */
	FW_V_PASS = 1,
	FW_V_DROP = 2,
	FW_V_WOULD_DROP = 3,
};

/* Parsed address: family 0 (not IP / too short), 4 or 6. Words in network order. */
struct fw_addr {
	__u32 family;
	__u32 w[4];
};

/*
 * Parses Ethernet, one 802.1Q/802.1AD tag, IPv4 or IPv6 and copies the
 * source (want_src) or destination address. Returns 0 when parsed, -1 when
 * the frame is too short for its headers (caller may pull and retry), 1 when
 * it is not IP (or an invalid IPv4 header).
 */
static __always_inline int fw_parse(void *data, void *data_end, int want_src, struct fw_addr *out)
{
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	__be16 proto;

	out->family = 0;
	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct fw_vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->encap_proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->version != 4 || ip->ihl < 5)
			return 1;
		out->family = 4;
		out->w[0] = want_src ? ip->saddr : ip->daddr;
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (ip6->version != 6)
			return 1;
		out->family = 6;
		if (want_src) {
			__builtin_memcpy(out->w, &ip6->saddr, 16);
		} else {
			__builtin_memcpy(out->w, &ip6->daddr, 16);
		}
		return 0;
	}
	return 1;
}

/* Network-order mask of the first `bits` (0..32) bits of a 32-bit word. */
static __always_inline __u32 fw_mask32(__u32 bits)
{
	return bpf_htonl((__u32)(0xffffffff00000000ULL >> bits));
}

static __always_inline __u32 fw_clamp_bits(int bits)
{
	return bits <= 0 ? 0 : bits >= 32 ? 32 : (__u32)bits;
}

static __always_inline struct fw_entry *
fw_match4(void *hash, void *trie, const struct fw_lenset *set, __u32 addr)
{
	struct fw_key4 k;
	struct fw_entry *hit = 0;
	int lt = -1;
	__u32 n = set->n_hash;

	if (set->use_trie) {
		k.prefixlen = 32;
		__builtin_memcpy(k.addr, &addr, 4);
		hit = bpf_map_lookup_elem(trie, &k);
		if (hit)
			lt = hit->prefixlen;
	}
	for (int i = 0; i < FW_MAX_HASH_LENS; i++) {
		if (i >= n)
			break;
		__u32 len = set->lens[i];
		if ((int)len <= lt)
			break;
		if (len > 32)
			continue;
		__u32 a = addr & fw_mask32(len);
		k.prefixlen = len;
		__builtin_memcpy(k.addr, &a, 4);
		struct fw_entry *v = bpf_map_lookup_elem(hash, &k);
		if (v)
			return v;
	}
	return hit;
}

static __always_inline struct fw_entry *
fw_match6(void *hash, void *trie, const struct fw_lenset *set, const __u32 *w)
{
	struct fw_key6 k;
	struct fw_entry *hit = 0;
	int lt = -1;
	__u32 n = set->n_hash;

	if (set->use_trie) {
		k.prefixlen = 128;
		__builtin_memcpy(k.addr, w, 16);
		hit = bpf_map_lookup_elem(trie, &k);
		if (hit)
			lt = hit->prefixlen;
	}
	for (int i = 0; i < FW_MAX_HASH_LENS; i++) {
		if (i >= n)
			break;
		__u32 len = set->lens[i];
		if ((int)len <= lt)
			break;
		if (len > 128)
			continue;
		__u32 m[4];
		m[0] = w[0] & fw_mask32(fw_clamp_bits((int)len));
		m[1] = w[1] & fw_mask32(fw_clamp_bits((int)len - 32));
		m[2] = w[2] & fw_mask32(fw_clamp_bits((int)len - 64));
		m[3] = w[3] & fw_mask32(fw_clamp_bits((int)len - 96));
		k.prefixlen = len;
		__builtin_memcpy(k.addr, m, 16);
		struct fw_entry *v = bpf_map_lookup_elem(hash, &k);
		if (v)
			return v;
	}
	return hit;
}

static __always_inline void fw_count(struct fw_counter *c, __u64 bytes)
{
	c->packets += 1;
	c->bytes += bytes;
}

/*
 * Decides one parsed packet against table `tbl` (FW_TABLE_IN4.. EG6 minus the
 * family offset is chosen by the caller) and updates the counters.
 */
static __always_inline int fw_decide(const struct fw_addr *a, int egress, __u32 ifindex, __u64 bytes)
{
	__u32 tbl = (egress ? FW_TABLE_EG4 : FW_TABLE_IN4) + (a->family == 6 ? 1 : 0);
	struct fw_table_cfg *cfg = bpf_map_lookup_elem(&fw_tblcfg, &tbl);
	struct fw_entry *e;
	int verdict;

	if (!cfg)
		return FW_V_PASS;
	const struct fw_lenset *set = &cfg->set[cfg->active & 1];

	if (a->family == 4) {
		if (egress)
			e = fw_match4(&fw_eg4_hash, &fw_eg4_trie, set, a->w[0]);
		else
			e = fw_match4(&fw_in4_hash, &fw_in4_trie, set, a->w[0]);
	} else {
		if (egress)
			e = fw_match6(&fw_eg6_hash, &fw_eg6_trie, set, a->w);
		else
			e = fw_match6(&fw_in6_hash, &fw_in6_trie, set, a->w);
	}

	if (e) {
		__u32 slot = e->slot;
		struct fw_counter *rc = bpf_map_lookup_elem(&fw_rule_cnt, &slot);
		if (rc)
			fw_count(rc, bytes);
		if (e->action == FW_ACTION_ALLOW)
			verdict = FW_V_PASS;
		else if (e->mode == FW_MODE_MONITOR)
			verdict = FW_V_WOULD_DROP;
		else
			verdict = FW_V_DROP;
	} else {
		verdict = cfg->default_action == FW_DEFAULT_DROP ? FW_V_DROP : FW_V_PASS;
	}

	struct fw_if_key ik = { .ifindex = ifindex, .direction = egress ? FW_DIR_EGRESS : FW_DIR_INGRESS };
	struct fw_verdict_cnt *vc = bpf_map_lookup_elem(&fw_if_cnt, &ik);
	if (vc) {
		if (verdict == FW_V_DROP)
			fw_count(&vc->drop, bytes);
		else if (verdict == FW_V_WOULD_DROP)
			fw_count(&vc->would_drop, bytes);
		else
			fw_count(&vc->pass, bytes);
	}
	return verdict;
}

#endif /* FW_DECIDE_H */
