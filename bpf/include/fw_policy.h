/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Detection policies in the data path (issue 18): after the rules' verdict,
 * a packet the rules did not drop is counted per (policy, source group) in
 * the policy's count-min sketch for every policy of its direction that
 * matches it. Traffic of a protocol no policy of its direction counts (or of
 * a direction none counts) pays one read in the program itself
 * (fw_policy_wants: fw_pol_cfg[0].class_mask, an array lookup the verifier
 * inlines to an address, against the protocol fw_parse read with the
 * address), which hands the set on. A counted packet is not parsed again:
 * the address and protocol are fw_parse's, the L4 header is read (from the
 * IP header fw_parse found) only when a policy of its direction reads ports
 * or TCP flags (l4_mask), the policies that count it are found by bitmaps of
 * slots (fw_pol_slots, ABI 13: no policy's match fields are read), the clock
 * once per packet that some policy counts (ABI 14: bpf_jiffies64(), one
 * inlined load; a window is a multiply by its reciprocal in jiffies,
 * fw_pol_epoch). The counting is inline in the program
 * (fw_policy_count: no call); only a group over a limit calls a global
 * function, fw_pol_report. Layouts, the sketch and its error bound are in
 * fw_policy_abi.h; the agent's half is node-agent/src/respond/.
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
#include "fw_decide.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_policy_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_cfg SEC(".maps");

/* The sketch: an array of one sketch per policy slot, so its memory is fixed when it is created, whatever the sources. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_POL_MAX);
	__type(key, __u32);
	__type(value, struct fw_pol_sketch);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pol_cms SEC(".maps");

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

/*
 * The window of a policy at jiffies j (ABI 14): j times the reciprocal of
 * the window in jiffies (fw_policy_abi.h). bpf_jiffies64() is one load (the
 * verifier inlines it), the multiply and shift replace the coarse clock's
 * per-CPU cache and a u64 division.
 */
static __always_inline __u64 fw_pol_epoch(const struct fw_policy *p, __u64 j)
{
	return (j * p->window_mul) >> (p->window_shift & 63);
}

/* What a policy matches on and counts. */
struct fw_pol_pkt {
	__u32 family;      /* 4 or 6 */
	__u32 proto;       /* IP protocol (IPv6: the first next header) */
	__u32 l3;          /* fw_parse's offset of the IP header */
	__u32 w[4];        /* the group's address (source on ingress, destination on egress), network order */
	__u64 bytes;
	__u64 jiffies;     /* bpf_jiffies64(): the windows' clock */
};

/*
 * The L4 header of a packet fw_parse parsed (family 4 or 6), or NULL if it
 * has none to read (a later IPv4 fragment; an IP offset the bound refuses).
 * From the IP header fw_parse found (pk->l3: Ethernet and any VLAN tag are
 * not walked again; the bound is the verifier's). The caller checks the
 * L4 header's own length against data_end.
 */
static __always_inline void *fw_pol_l4(void *data, void *data_end, const struct fw_pol_pkt *pk)
{
	__u64 off = pk->l3;

	if (off > sizeof(struct ethhdr) + 4)
		return NULL;
	if (pk->family == 4) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return NULL;
		/* A later fragment has no L4 header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return NULL;
		return (void *)ip + ip->ihl * 4;
	}
	return data + off + sizeof(struct ipv6hdr);
}

/* The group's key: the address masked to the policy's length. */
static __always_inline void fw_pol_key_of(const struct fw_policy *p, const struct fw_pol_pkt *pk, struct fw_pol_key *k)
{
	k->policy = p->id;
	k->family = (__u8)pk->family;
	if (pk->family == 4) {
		__u32 a = pk->w[0];
		if (p->v4_len == 24)
			a &= bpf_htonl(0xffffff00);
		__builtin_memcpy(k->addr, &a, 4);
	} else {
		__builtin_memcpy(k->addr, pk->w, 8);
		if (p->v6_len != 64)
			__builtin_memcpy(k->addr + 8, &pk->w[2], 8);
	}
}

/* Writes one hit record for key k (the group crossed a limit). */
static __always_inline void fw_pol_hit(const struct fw_pol_key *k, __u64 pkts, __u64 by, __u64 start, __u64 now)
{
	__u32 z = 0;
	struct fw_pol_stat *st = bpf_map_lookup_elem(&fw_pol_stat, &z);
	if (!st)
		return;
	__u64 seq = __sync_fetch_and_add(&st->head, 1);
	__u32 slot = (__u32)seq & (FW_POL_HITS - 1);
	struct fw_pol_hit *h = bpf_map_lookup_elem(&fw_pol_hits, &slot);
	if (!h)
		return;
	h->key = *k;
	h->packets = pkts;
	h->bytes = by;
	h->elapsed_ns = now - start;
	h->at_ns = now;
	__sync_lock_test_and_set(&h->seq, seq + 1);
}

#ifdef FW_BENCH_POL_LRU
#include "../bench/pol_lru.h"
#else
/* Row r's cell of group (lo, hi, v4) in a slot's sketch (an index below FW_POL_ROWS * FW_POL_WIDTH). */
static __always_inline __u32 fw_pol_cell_idx(const struct fw_policy_set *ps, int r, __u64 lo, __u64 hi, __u32 v4)
{
	const struct fw_pol_seed *s = &ps->seed[r];

	return r * FW_POL_WIDTH + (__u32)((lo * s->a + hi * s->b + (v4 ? s->c : 0)) >> (64 - FW_POL_WIDTH_BITS));
}

/* The group's two hash words (lo, hi; v4) of address w under policy p (IPv4: lo = the masked u32, hi = 0). */
static __always_inline __u32 fw_pol_words(const struct fw_policy *p, __u32 family, const __u32 *w, __u64 *lo, __u64 *hi)
{
	if (family == 4) {
		__u32 a = w[0];
		if (p->v4_len == 24)
			a &= bpf_htonl(0xffffff00);
		*lo = a;
		*hi = 0;
		return 1;
	}
	*lo = (__u64)w[0] | ((__u64)w[1] << 32);
	*hi = p->v6_len != 64 ? ((__u64)w[2] | ((__u64)w[3] << 32)) : 0;
	return 0;
}

/*
 * Marks the cells of a group that crossed a limit in window `tag`: 1 if one
 * of them was not marked yet (report it), 0 if all were (reported already).
 * *eb: the least bytes of its cells of that window (this packet included).
 */
static __always_inline int fw_pol_mark(const struct fw_policy_set *ps, struct fw_pol_sketch *sk, __u64 lo, __u64 hi, __u32 v4,
				       __u32 tag, __u64 *eb)
{
	int fresh = 0;
	__u64 least = ~0ULL;

#pragma unroll
	for (int r = 0; r < FW_POL_ROWS; r++) {
		struct fw_pol_cell *cell = &sk->c[fw_pol_cell_idx(ps, r, lo, hi, v4) & (FW_POL_ROWS * FW_POL_WIDTH - 1)];
		if (cell->tag != tag) {
			fresh = 1;
			continue;
		}
		if (cell->bytes < least)
			least = cell->bytes;
		if (!(cell->packets & FW_POL_REPORTED)) {
			fresh = 1;
			cell->packets |= FW_POL_REPORTED;
		}
	}
	*eb = least;
	return fresh;
}

/*
 * A group of the policy in slot i whose estimate (ap packets, ab bytes, this
 * packet included; ab only if the policy has a byte limit, else the least of
 * its cells is read here) is over a limit itself: reported if it is over
 * limit + margin too, once per group and window (fw_pol_mark). A global function,
 * verified once, off the hot path: the packet's fields come in pk.
 */
__noinline int fw_pol_report(const struct fw_policy_set *ps, __u32 i, const struct fw_pol_pkt *pk, __u64 ap, __u64 ab)
{
	__u32 z = 0;

	if (!ps || !pk || i >= FW_POL_MAX)
		return 0;
	const struct fw_policy *p = &ps->p[i];
	if (p->window_mul == 0)
		return 0;
	const struct fw_pol_stat *st = bpf_map_lookup_elem(&fw_pol_stat, &z);
	if (!st)
		return 0;
	__u64 lp = p->limit_packets, lb = p->limit_bytes;
	if (!((lp && ap > lp + st->margin_packets[i]) || (lb && ab > lb + st->margin_bytes[i])))
		return 0;
	__u32 slot = i;
	struct fw_pol_sketch *sk = bpf_map_lookup_elem(&fw_pol_cms, &slot);
	if (!sk)
		return 0;
	__u32 shift = p->window_shift & 63;
	__u64 x = pk->jiffies * p->window_mul;
	__u32 tag = (__u32)(x >> shift) + p->id * FW_POL_TAG_MUL;
	__u64 lo, hi;
	__u32 v4 = fw_pol_words(p, pk->family, pk->w, &lo, &hi);
	/* Over: reported once per group and window (its cells' marks). */
	__u64 eb;
	if (!fw_pol_mark(ps, sk, lo, hi, v4, tag, &eb))
		return 0;
	if (!lb)
		ab = eb != ~0ULL ? eb : pk->bytes;
	struct fw_pol_key k = {};
	fw_pol_key_of(p, pk, &k);
	/* The time into the window: its fraction (x's low bits, 16 of them kept) of window_ns (< 2^48). */
	__u64 frac = shift >= 16 ? (x & ((1ULL << shift) - 1)) >> (shift - 16) : 0;
	__u64 now = bpf_ktime_get_coarse_ns();
	fw_pol_hit(&k, ap, ab, now - ((frac * p->window_ns) >> 16), now);
	return 1;
}

/*
 * One matched packet into the rows of group (lo, hi, v4) of a slot's sketch
 * sk: per row, the cell restarts (its tag is not the packet's) or is added
 * to; est_p (and, if wb, est_b) the least of the cells before this packet.
 * Inlined with v4 and wb constant (fw_pol_account): for IPv4, hi = 0 and the
 * index is lo * a + c, one multiply and one add (the same index as
 * lo * a + 0 * b + c); without a byte limit no byte estimate is kept.
 */
static __always_inline void fw_pol_rows(const struct fw_policy_set *ps, struct fw_pol_sketch *sk, __u64 lo, __u64 hi, __u32 v4,
					int wb, __u32 tag, __u64 bytes, __u64 *est_p, __u64 *est_b)
{
	__u64 ep = ~0ULL, eb = ~0ULL;

#pragma unroll
	for (int r = 0; r < FW_POL_ROWS; r++) {
		struct fw_pol_cell *cell = &sk->c[fw_pol_cell_idx(ps, r, lo, hi, v4) & (FW_POL_ROWS * FW_POL_WIDTH - 1)];
		/* One add to the word (the mark rides along: 2^31 packets of one cell in one window wrap it). */
		__u32 word = 0;
		__u64 nb = 0;
		if (cell->tag == tag) {
			word = cell->packets;
			nb = cell->bytes;
		} else {
			cell->tag = tag;
		}
		cell->packets = word + 1;
		cell->bytes = nb + bytes;
		__u32 np = word & ~FW_POL_REPORTED;
		if (np < ep)
			ep = np;
		if (wb && nb < eb)
			eb = nb;
	}
	*est_p = ep;
	*est_b = eb;
}

/*
 * Counts one matched packet for the policy in slot i (inline in the
 * program's counting function: no call, the packet's fields in registers):
 * one lookup for the slot's sketch (an ARRAY of one sketch per slot, which
 * the verifier inlines to an address), one cell per row (plain adds), the
 * estimate the least of them before this packet; over a limit itself, the
 * rest is fw_pol_report's. The family (IPv4: the one-word index) and whether
 * the policy has a byte limit (else no byte estimate here: fw_pol_report
 * takes it from the cells) are tested once, not per row.
 */
static __always_inline void fw_pol_account(const struct fw_policy_set *ps, const struct fw_policy *p, __u32 i,
					   struct fw_pol_pkt *pk)
{
	__u32 slot = i;
	struct fw_pol_sketch *sk = bpf_map_lookup_elem(&fw_pol_cms, &slot);
	if (!sk || p->window_mul == 0)
		return;
	__u32 tag = (__u32)fw_pol_epoch(p, pk->jiffies) + p->id * FW_POL_TAG_MUL;
	__u64 bytes = pk->bytes;
	__u64 lp = p->limit_packets, lb = p->limit_bytes;
	__u64 lo, hi, est_p, est_b;
	if (pk->family == 4) {
		lo = pk->w[0];
		if (p->v4_len == 24)
			lo &= bpf_htonl(0xffffff00);
		if (lb)
			fw_pol_rows(ps, sk, lo, 0, 1, 1, tag, bytes, &est_p, &est_b);
		else
			fw_pol_rows(ps, sk, lo, 0, 1, 0, tag, bytes, &est_p, &est_b);
	} else {
		__u32 v4 = fw_pol_words(p, pk->family, pk->w, &lo, &hi);
		fw_pol_rows(ps, sk, lo, hi, v4, 1, tag, bytes, &est_p, &est_b);
	}
	__u64 ap = est_p + 1, ab = est_b + bytes;
	if ((lp && ap > lp) || (lb && ab > lb))
		fw_pol_report(ps, i, pk, ap, ab);
}
#endif

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
 * May a policy of direction dir count a packet of IP protocol proto? The
 * policy set if so, else NULL: the one read (and test) traffic that no
 * policy counts pays; the counting (fw_policy_count) goes on with the same
 * set, no second lookup.
 */
static __always_inline const struct fw_policy_set *fw_policy_wants(__u32 dir, __u32 proto)
{
	__u32 z = 0;
	const struct fw_policy_set *ps = bpf_map_lookup_elem(&fw_pol_cfg, &z);

	return ps && (ps->class_mask[dir & 1] & fw_pol_class(proto)) ? ps : NULL;
}

/*
 * The slots of a TCP (tcp = 1) or UDP packet's class (cand, not 0) that
 * count it when some policy of direction dir reads ports or TCP flags: those
 * whose ports cover its destination port (a first fragment or unfragmented
 * packet whose header is there) or, without one, those that have no ports;
 * less the SYN-only slots unless it is a TCP SYN without ACK. Inlined once
 * per protocol (tcp constant): each protocol's path is straight.
 */
static __always_inline __u32 fw_pol_ported(const struct fw_policy_set *ps, __u32 dir, void *data, void *data_end,
					   const struct fw_pol_pkt *pk, __u32 cand, int tcp)
{
	void *l4 = fw_pol_l4(data, data_end, pk);

	if (tcp) {
		struct tcphdr *th = l4;
		if (th && (void *)(th + 1) <= data_end) {
			cand &= ps->port_pols[dir][bpf_ntohs(th->dest)];
			return th->syn && !th->ack ? cand : cand & ~(__u32)ps->syn_only[dir];
		}
	} else {
		struct udphdr *uh = l4;
		if (uh && (void *)(uh + 1) <= data_end)
			return cand & ps->port_pols[dir][bpf_ntohs(uh->dest)] & ~(__u32)ps->syn_only[dir];
	}
	return cand & ps->noport[dir] & ~(__u32)ps->syn_only[dir];
}

/*
 * The policy slots of direction dir (bit i = slot i) that count packet pk:
 * its protocol class's slots (ICMP on IPv4 and ICMPv6 on IPv6 are the ICMP
 * class, a policy of protocol icmp counting both; ICMPv6's number on IPv4,
 * or ICMP's on IPv6, is other), and, if some policy of the direction reads
 * ports or TCP flags (l4_mask), those whose ports cover its destination
 * port or, for a packet without one (not TCP or UDP, a later fragment),
 * that have no ports, less the SYN-only slots unless it is a TCP SYN
 * without ACK (fw_pol_ported). Without l4_mask no slot of the direction has
 * ports or SYN-only (noport is all of them, syn_only none).
 */
static __always_inline __u32 fw_pol_slots(const struct fw_policy_set *ps, __u32 dir, void *data, void *data_end,
					  const struct fw_pol_pkt *pk)
{
	__u32 proto = pk->proto, cand;

	if (proto == FW_POL_PROTO_UDP) {
		cand = ps->class_pols[dir][FW_POL_CIDX_UDP];
		return cand && ps->l4_mask[dir] ? fw_pol_ported(ps, dir, data, data_end, pk, cand, 0) : cand;
	}
	if (proto == FW_POL_PROTO_TCP) {
		cand = ps->class_pols[dir][FW_POL_CIDX_TCP];
		return cand && ps->l4_mask[dir] ? fw_pol_ported(ps, dir, data, data_end, pk, cand, 1) : cand;
	}
	if (proto == (pk->family == 6 ? FW_POL_PROTO_ICMP6 : FW_POL_PROTO_ICMP))
		cand = ps->class_pols[dir][FW_POL_CIDX_ICMP];
	else
		cand = ps->class_pols[dir][FW_POL_CIDX_OTHER];
	return ps->l4_mask[dir] ? cand & ps->noport[dir] & ~(__u32)ps->syn_only[dir] : cand;
}

/*
 * Counts a packet the rules passed (fw_parse's address a: the source on
 * ingress, the destination on egress) against the policies of direction
 * dir in set ps (fw_policy_wants'). The caller skips dropped packets (a
 * banned source is not counted again). Inline in each program (no call: the
 * address, the set and the packet stay where the program has them; the
 * verifier walks it after the lookup, which measured fewer instructions than
 * the global function it was: 249k against 371k for the XDP program, 252k
 * against 378k for TC).
 *
 * Classified by bitmaps (ABI 13), not by testing each policy: the slots
 * that count the packet are at most three byte reads ANDed (fw_pol_slots:
 * its class's, its destination port's or "no port"'s, and, unless it is a
 * TCP SYN, the slots that are not SYN-only), so no policy's protocol, flags
 * or port ranges are read. Slot 0 is counted with a constant index (the
 * lookup of its sketch and its fields at fixed offsets: measured faster
 * than the same code in the loop), the others in a loop over the set bits
 * that stops when none is left: one policy, no loop. Two copies of
 * fw_pol_account inline: the verifier walks 277k instructions for the XDP
 * program (ABI 12: 298k measured the same way), 230k for TC (240k).
 *
 * A torn read: the agent rewrites the set with one map update, a copy the
 * program may read halfway (as it could read a policy's fields halfway
 * before ABI 13). The worst case is one packet classified with some bitmaps
 * of the old set and some of the new, or counted for slot i under the
 * other version's window or limit: counted (or not) in one window of the
 * slot's sketch, under the tag of the id it read. A new version has a new id
 * and so new tags (fw_pol_account), so the new policy's cells restart at
 * its own first packets; a stray packet is at most one count in one window
 * of one slot (an empty slot: window_mul 0, nothing counted).
 */
static __always_inline void fw_policy_count(void *data, void *data_end, const struct fw_addr *a, __u32 dir, __u64 bytes,
					    const struct fw_policy_set *ps)
{
	if (!ps || !a)
		return;
	dir &= 1;
	struct fw_pol_pkt pk = {
		.family = a->family,
		.proto = a->proto,
		.bytes = bytes,
		.l3 = a->l3,
	};
	__u32 cand = fw_pol_slots(ps, dir, data, data_end, &pk);
	if (!cand)
		return;
	/* fw_parse writes w[1..3] for IPv6 only: an IPv4 packet's are not read (uninitialized in the caller). */
	pk.w[0] = a->w[0];
	if (pk.family == 6)
		__builtin_memcpy(&pk.w[1], &a->w[1], 12);
	pk.jiffies = bpf_jiffies64();
	/* Slot 0 (the agent fills the slots from 0: a node's only policy is there) with a constant index, then the rest. */
	if (cand & 1)
		fw_pol_account(ps, &ps->p[0], 0, &pk);
	cand >>= 1;
	for (__u32 i = 1; i < FW_POL_MAX && cand; i++) {
		if (cand & 1)
			fw_pol_account(ps, &ps->p[i], i, &pk);
		cand >>= 1;
	}
}

#endif /* FW_POLICY_H */
