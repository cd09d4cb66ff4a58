/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-packet decision shared by the XDP and TC programs: parse, look up
 * one table (IPv4: the direct /24 index, its /16 word and, where the /16
 * holds longer entries, its block's /24 word; then, only where a longer
 * entry lies in that /24, the longer hash lengths and the trie; IPv6: the
 * trie if it holds entries, then the hash lengths longest first), count,
 * verdict.
 */
#ifndef FW_DECIDE_H
#define FW_DECIDE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fleetwall_abi.h"
#include "fw_maps.h"
#ifdef FW_BENCH_VARIANTS
#include "../bench/variants.h"
#endif

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
	__u32 proto;    /* IP protocol (IPv6: the first next header), for the detection policies' first test */
	__u32 w[4];
	__u32 l3;       /* offset of the IP header (14, or 18 after a VLAN tag): the detection policies' L4 read starts there */
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
	/* One 16-bit load (struct ethhdr is packed: its field reads as two bytes). */
	proto = *(__be16 *)(data + offsetof(struct ethhdr, h_proto));
	if (proto != bpf_htons(ETH_P_IP) && (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))) {
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
		/* version 4 and ihl >= 5: the first byte is 0x45..0x4f */
		if ((__u8)(*(__u8 *)ip - 0x45) > 0x0a)
			return 1;
		out->family = 4;
		out->proto = ip->protocol;
		out->l3 = off;
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
		out->proto = ip6->nexthdr;
		out->l3 = off;
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

/* murmur3's 32-bit finaliser (the second bucket's hash; userspace computes the same). */
static __always_inline __u32 fw_fmix(__u32 x)
{
	x ^= x >> 16;
	x *= 0x85EBCA6Bu;
	x ^= x >> 13;
	x *= 0xC2B2AE35u;
	x ^= x >> 16;
	return x;
}

/* Maps a 32-bit hash onto [0, n) by its high bits. */
static __always_inline __u32 fw_range(__u32 x, __u32 n)
{
	return (__u32)(((__u64)x * n) >> 32);
}

/*
 * A match, as the program's decision carries it: the /24 index word format
 * (fleetwall_abi.h: slot in bits 0..23, verdict at FW_D24_VERDICT_SHIFT),
 * nonzero; 0 = no match. An index hit is its /24 word as read (its length
 * field is never 0; LONGER may be set, nothing reads it after the match):
 * the common hit is returned as loaded and the counter reads it directly. An
 * IPv4 hash hit is its slot word's low half as read (ABI 14: the same fields;
 * its length code is never 0, bit 31 is the monitor mark, read by nobody
 * here). The spill, trie and IPv6 paths (the slower ones already) convert to
 * it, with FW_HIT (a length field of 1) so that slot 0 allow is not 0. Slots
 * fit in 24 bits: the agent creates at most FW_MAX_RULE_SLOTS.
 */
#define FW_HIT (1u << FW_D24_LEN_SHIFT)
#define FW_HIT_SLOT_MASK FW_D24_SLOT_MASK
_Static_assert(FW_MAX_RULE_SLOTS <= FW_D24_SLOT_MASK + 1, "a rule counter slot fits in a /24 word");
_Static_assert(FW_S4_SLOT_MASK == FW_D24_SLOT_MASK && FW_S4_VERDICT_SHIFT == FW_D24_VERDICT_SHIFT &&
		       FW_S4_CODE_SHIFT == FW_D24_LEN_SHIFT,
	       "an IPv4 slot word's low half is a match in the /24 word's format");

static __always_inline __u32 fw_entry_hit(const struct fw_entry *e)
{
	__u32 v = e->action == FW_ACTION_ALLOW ? FW_SV_PASS : e->mode == FW_MODE_MONITOR ? FW_SV_WOULD_DROP : FW_SV_DROP;
	return FW_HIT | (e->slot & FW_HIT_SLOT_MASK) | (v << FW_D24_VERDICT_SHIFT);
}

/* ---- IPv4 */

/* SWAR constants for the tag word: lanes 0..6 are the tags of slots 1..7. */
#define FW_LANES_7F 0x7f7f7f7f7f7f7f7fULL
#define FW_LANES_80 0x0080808080808080ULL /* bit 7 of lanes 0..6 */
#define FW_LANES_01 0x0001010101010101ULL /* a byte copied into lanes 0..6 */
/* Top byte of (1 << 8k) * FW_LANE_OFF = 8 * (k + 1): the byte offset of slot k + 1. */
#define FW_LANE_OFF 0x0810182028303840ULL

/*
 * The slot word of `key` in bucket b, or 0, without a branch: all seven slot
 * words are compared (xor, mask, shift right by one so that a mismatch is
 * below 2^63, minus one: bit 63 is set iff their key bits matched), and the
 * word that matched (at most one can; an empty slot never does, a key's
 * length code is never 0) is or-ed into the result
 * through an all-ones mask. Only for the rare bucket where a tag matched
 * more than one slot.
 */
static __always_inline __u64 fw_scan4(const struct fw_bucket4 *b, __u64 key)
{
	__u64 r = 0;
#pragma unroll
	for (int i = 1; i < FW_B4_WORDS; i++) {
		__u64 w = b->w[i];
		__u64 t = (((w ^ key) & FW_S4_KEY_MASK) >> 1) - 1;
		/* all ones iff bit 63 is set; as asm, or clang turns the select back into a branch */
		asm volatile("%[t] s>>= 63" : [t] "+r"(t));
		r |= w & t;
	}
	return r;
}

/*
 * The slot word of `key` in bucket b (tag word tw, the key's tag copied into
 * every lane: lanes), or 0. The seven tags are compared at once: a lane of
 * d = tw ^ lanes is 0 iff the tag matched (occupied lanes differ in bits
 * 0..6, empty ones in bit 7), and m gets bit 7 of every zero lane (no carry
 * crosses a lane). Only the lowest match's slot is read, through an address
 * computed from the tag word (so never older than the tag); the full scan
 * runs only if that slot holds another key and more lanes matched. Replaces
 * a compare of all eight slots on every probe (the per-packet cost of the
 * table was mostly that scan).
 */
static __always_inline __u64 fw_find4(const struct fw_bucket4 *b, __u64 tw, __u64 key, __u64 lanes)
{
	__u64 d = tw ^ lanes;
	__u64 m = ((((d & FW_LANES_7F) + FW_LANES_7F) | d) & FW_LANES_80) ^ FW_LANES_80;

	if (!m)
		return 0;
	__u64 low = m & -m; /* bit 7 of the lowest matching lane k: 1 << (8k + 7) */
	__u32 off = (__u32)(((low >> 7) * FW_LANE_OFF) >> 56) & 0x38;
	__u64 w = *(const __u64 *)((const void *)b + off);
	if (!((w ^ key) & FW_S4_KEY_MASK))
		return w;
	if (m & (m - 1))
		return fw_scan4(b, key);
	return 0;
}

/*
 * One prefix length (25..32: fw_match4 probes no other): first bucket, second
 * if flagged, spill if flagged. h = address, host order. A match (FW_HIT
 * format: a slot word's low half as read) or 0.
 */
static __always_inline __u32
fw_probe4(void *tab, void *spill, const struct fw_table_cfg *cfg, __u32 h, __u32 len)
{
	__u32 a = h & (__u32)(0xffffffff00000000ULL >> len); /* len 0: 0 */
	__u64 key = ((__u64)a << FW_S4_ADDR_SHIFT) | ((__u64)(len - 24) << FW_S4_CODE_SHIFT);
	__u32 x = (a ^ cfg->seed ^ (len * FW_HASH_MUL)) * FW_HASH_MUL4;
	__u64 lanes = (__u64)(((x * FW_TAG4_MUL) >> 25) | 0x80) * FW_LANES_01;
	__u32 i = fw_range(x, cfg->nbuckets);
	const struct fw_bucket4 *b = bpf_map_lookup_elem(tab, &i);
	__u64 w;

	if (!b)
		return 0;
	__u64 tw = b->w[0];
	w = fw_find4(b, tw, key, lanes);
	if (w)
		return (__u32)w;
	if (tw & FW_S4_OVF) {
		__u32 i2 = fw_range(fw_fmix(x ^ FW_HASH_SEED2), cfg->nbuckets);
		const struct fw_bucket4 *b2 = bpf_map_lookup_elem(tab, &i2);
		if (b2) {
			w = fw_find4(b2, b2->w[0], key, lanes);
			if (w)
				return (__u32)w;
		}
	}
	if (tw & FW_S4_SPILL) {
		struct fw_key4 k = { .prefixlen = len };
		__u32 an = bpf_htonl(a);
		__builtin_memcpy(k.addr, &an, 4);
		struct fw_entry *e = bpf_map_lookup_elem(spill, &k);
		if (e)
			return fw_entry_hit(e);
	}
	return 0;
}

/*
 * The /24 word of host-order address h: the /16 word from the table's config
 * (already loaded: no map lookup), and, if that /16 has a block, the word in
 * the block (one array lookup). 0 if the block is missing (never, by the
 * write order: a /16 word points only to a filled block of the pool).
 */
static __always_inline __u32 fw_index_word(const struct fw_table_cfg *cfg, void *pool, __u32 h)
{
#ifdef FW_BENCH_D24_ONE_LEVEL
	(void)cfg;
	(void)pool;
	return fw_bench_flat_word(h);
#elif defined(FW_BENCH_D24_DIRECT) || defined(FW_BENCH_D24_HASHED) || defined(FW_BENCH_D24_EXPECT) || \
	defined(FW_BENCH_D24_GLOBAL)
	return fw_bench_index_word(cfg, pool, h);
#else
	__u32 w = cfg->d16[h >> 16];

	if (w & FW_D16_BLOCK) {
		__u32 b = w & FW_D16_INDEX_MASK;
		const struct fw_d24_block *blk = bpf_map_lookup_elem(pool, &b);
		if (!blk)
			return 0;
		w = blk->w[(h >> 8) & 255];
	}
	return w;
#endif
}

/*
 * IPv4: the /24 index word decides, unless a longer entry lies inside the
 * /24 (LONGER): then the hash lengths above 24 are probed longest first (and
 * the trie, if it holds entries), and the index word's own answer is the
 * fallback. Returns a match in the FW_HIT format or 0: a word without LONGER
 * is 0 or holds an entry (fleetwall_abi.h), so it is returned as read.
 */
static __always_inline __u32
fw_match4(void *tab, void *spill, void *trie, void *pool, const struct fw_table_cfg *cfg,
	  const struct fw_lenset *set, __u32 addr)
{
	__u32 h = bpf_ntohl(addr);
	__u32 e = fw_index_word(cfg, pool, h);

	if (e & FW_D24_LONGER) {
		__u32 hit = 0;
		int lt = 24;
		__u32 n = set->n_hash;

		if (set->use_trie) {
			struct fw_key4 k = { .prefixlen = 32 };
			__builtin_memcpy(k.addr, &addr, 4);
			struct fw_entry *te = bpf_map_lookup_elem(trie, &k);
			if (te && te->prefixlen > 24) {
				hit = fw_entry_hit(te);
				lt = te->prefixlen;
			}
		}
#pragma clang loop unroll(disable)
		for (int i = 0; i < FW_MAX_HASH_LENS; i++) {
			if (i >= n)
				break;
			__u32 len = set->lens[i];
			if ((int)len <= lt)
				break;
			__u32 w = fw_probe4(tab, spill, cfg, h, len);
			if (w)
				return w;
		}
		if (hit)
			return hit;
		if (!((e >> FW_D24_LEN_SHIFT) & 31))
			return 0;
	}
	return e;
}

/* ---- IPv6 */

static __always_inline __u32 fw_scan6(const struct fw_bucket6 *b, __u64 want, __u64 hi, __u64 lo)
{
#pragma unroll
	for (int i = 0; i < FW_B6_SLOTS; i++) {
		__u64 m = b->s[i].meta;
		if ((m & (FW_M6_VALID | FW_M6_LEN_MASK)) != want)
			continue;
		/*
		 * Read the address through a dependency on meta (bit 63 is never
		 * set, d = 0): ordered after the meta load on any CPU, so a valid
		 * meta is never paired with an older address.
		 */
		__u64 d = (m >> 63) << 3;
		const __u64 *p = (const void *)&b->s[i].hi + d;
		if (p[0] == hi && p[1] == lo)
			return FW_HIT | ((__u32)(m >> FW_M6_SLOT_SHIFT) & FW_HIT_SLOT_MASK) |
			       (((__u32)(m >> FW_M6_VERDICT_SHIFT) & 3) << FW_D24_VERDICT_SHIFT);
	}
	return 0;
}

static __always_inline __u32
fw_probe6(void *tab, void *spill, const struct fw_table_cfg *cfg, const __u32 *w, __u32 len)
{
	__u32 m[4];
	m[0] = w[0] & fw_mask32(fw_clamp_bits((int)len));
	m[1] = w[1] & fw_mask32(fw_clamp_bits((int)len - 32));
	m[2] = w[2] & fw_mask32(fw_clamp_bits((int)len - 64));
	m[3] = w[3] & fw_mask32(fw_clamp_bits((int)len - 96));
	__u32 x = fw_fmix(cfg->seed ^ (len * FW_HASH_MUL) ^ (m[0] * FW_HASH_MUL6_0) ^ (m[1] * FW_HASH_MUL6_1) ^
			  (m[2] * FW_HASH_MUL6_2) ^ (m[3] * FW_HASH_MUL6_3));
	__u64 hi = ((__u64)m[1] << 32) | m[0];
	__u64 lo = ((__u64)m[3] << 32) | m[2];
	__u64 want = FW_M6_VALID | len;
	__u32 i = fw_range(x, cfg->nbuckets);
	const struct fw_bucket6 *b = bpf_map_lookup_elem(tab, &i);
	__u32 r;

	if (!b)
		return 0;
	r = fw_scan6(b, want, hi, lo);
	if (r)
		return r;
	__u64 flags = b->flags;
	if (flags & FW_B6_OVF) {
		__u32 i2 = fw_range(fw_fmix(x ^ FW_HASH_SEED2), cfg->nbuckets);
		const struct fw_bucket6 *b2 = bpf_map_lookup_elem(tab, &i2);
		if (b2) {
			r = fw_scan6(b2, want, hi, lo);
			if (r)
				return r;
		}
	}
	if (flags & FW_B6_SPILL) {
		struct fw_key6 k = { .prefixlen = len };
		__builtin_memcpy(k.addr, m, 16);
		struct fw_entry *e = bpf_map_lookup_elem(spill, &k);
		if (e)
			return fw_entry_hit(e);
	}
	return 0;
}

static __always_inline __u32
fw_match6(void *tab, void *spill, void *trie, const struct fw_table_cfg *cfg, const struct fw_lenset *set,
	  const __u32 *w)
{
	__u32 hit = 0;
	int lt = -1;
	__u32 n = set->n_hash;

	if (set->use_trie) {
		struct fw_key6 k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, w, 16);
		struct fw_entry *e = bpf_map_lookup_elem(trie, &k);
		if (e) {
			hit = fw_entry_hit(e);
			lt = e->prefixlen;
		}
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < FW_MAX_HASH_LENS; i++) {
		if (i >= n)
			break;
		__u32 len = set->lens[i];
		if ((int)len <= lt)
			break;
		if (len > 128)
			continue;
		__u32 r = fw_probe6(tab, spill, cfg, w, len);
		if (r)
			return r;
	}
	return hit;
}

/*
 * What decided a packet, for the event path: the rule's counter slot (or
 * FW_EV_NO_SLOT when the table's default decided) and the CPU row it was
 * just counted in (NULL when it was not counted in a CPU row: the default,
 * a CPU beyond the generation's rows, a slot past its counters).
 */
struct fw_counted {
	__u32 slot;
	struct fw_rule_row *row;
};

/*
 * Counts a decision and returns its verdict: the rule's counter on a match
 * (fw_rule_cnt[cpu][slot], a plain add by the only CPU that writes that row;
 * a CPU beyond the generation's rows adds atomically to the overflow row in
 * fw_rule_xcnt, if there is one), and the interface's totals (fw_if_cnt[cpu][slot of ifindex,
 * direction], or fw_if_cntx for an interface whose slot another one owns).
 */
static __always_inline int fw_count_verdict(const struct fw_table_cfg *cfg, __u32 hit, __u32 dir, __u32 ifindex,
					    __u64 bytes, struct fw_counted *out)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 vi; /* index into fw_verdict_cnt: 0 pass, 1 drop, 2 would-drop */

	out->row = 0;
	if (hit) {
		__u32 slot = hit & FW_HIT_SLOT_MASK;
		out->slot = slot;
#if defined(FW_BENCH_CNT_SHARED) || defined(FW_BENCH_CNT_HYBRID)
		fw_bench_count_rule(cpu, slot, bytes);
#else
		if (slot < cfg->rule_slots) {
			if (cpu < cfg->cpu_rows) {
				__u32 idx = cpu * cfg->rule_slots + slot;
				struct fw_rule_row *rc = bpf_map_lookup_elem(&fw_rule_cnt, &idx);
				if (rc) {
					rc->c.packets += 1;
					rc->c.bytes += bytes;
					out->row = rc;
				}
			} else if (cfg->flags & FW_CFG_OVERFLOW_ROW) {
				/* fw_rule_xcnt's first row */
				struct fw_counter *rc = bpf_map_lookup_elem(&fw_rule_xcnt, &slot);
				if (rc) {
					__sync_fetch_and_add(&rc->packets, 1);
					__sync_fetch_and_add(&rc->bytes, bytes);
				}
			}
		}
#endif
		vi = (hit >> FW_D24_VERDICT_SHIFT) & 3;
	} else {
		out->slot = FW_EV_NO_SLOT;
		vi = cfg->default_action == FW_DEFAULT_DROP ? 1 : 0;
	}

	__u32 is = cpu * FW_IF_SLOTS + (((ifindex & (FW_IF_SLOTS / 2 - 1)) << 1) | dir);
	struct fw_if_slot *s = bpf_map_lookup_elem(&fw_if_cnt, &is);
	if (s) {
		struct fw_verdict_cnt *vc = 0;
		if (s->ifindex == ifindex) {
			vc = &s->c;
		} else if (s->flags & FW_IFS_FALLBACK) {
			struct fw_if_key ik = { .ifindex = ifindex, .direction = dir };
			vc = bpf_map_lookup_elem(&fw_if_cntx, &ik);
		}
		if (vc && vi < 3) {
			struct fw_counter *c = &vc->pass + vi;
			c->packets += 1;
			c->bytes += bytes;
		}
	}
	return (int)vi + FW_V_PASS;
}

/* Decides one IPv4 packet (addr = the source on ingress, the destination on egress). */
static __always_inline int fw_decide4(__u32 addr, int egress, __u32 ifindex, __u64 bytes, struct fw_counted *out)
{
#ifdef FW_BENCH_CFG_MAP
	__u32 tbl = egress ? FW_TABLE_EG4 : FW_TABLE_IN4;
	const struct fw_table_cfg *cfg = bpf_map_lookup_elem(&bench_tblcfg, &tbl);
	if (!cfg) {
		/*
		 * Never taken, but *slot must be set here too: left undefined on this
		 * path, clang stored a register the helper call had clobbered as the
		 * slot, which the verifier refuses (R1 !read_ok).
		 */
		out->slot = FW_EV_NO_SLOT;
		out->row = 0;
		return FW_V_PASS;
	}
#else
	const struct fw_table_cfg *cfg = &fw_tblcfg[egress ? FW_TABLE_EG4 : FW_TABLE_IN4];
#endif
	__u32 hit;

	const struct fw_lenset *set = &cfg->set[cfg->active & 1];
	if (egress)
		hit = fw_match4(&fw_eg4_tab, &fw_eg4_spill, &fw_eg4_trie, &fw_eg4_d24, cfg, set, addr);
	else
		hit = fw_match4(&fw_in4_tab, &fw_in4_spill, &fw_in4_trie, &fw_in4_d24, cfg, set, addr);
	return fw_count_verdict(cfg, hit, egress ? FW_DIR_EGRESS : FW_DIR_INGRESS, ifindex, bytes, out);
}

static __always_inline int fw_decide6(const __u32 *w, int egress, __u32 ifindex, __u64 bytes, struct fw_counted *out)
{
	const struct fw_table_cfg *cfg = &fw_tblcfg[egress ? FW_TABLE_EG6 : FW_TABLE_IN6];
	__u32 hit;

	const struct fw_lenset *set = &cfg->set[cfg->active & 1];
	if (egress)
		hit = fw_match6(&fw_eg6_tab, &fw_eg6_spill, &fw_eg6_trie, cfg, set, w);
	else
		hit = fw_match6(&fw_in6_tab, &fw_in6_spill, &fw_in6_trie, cfg, set, w);
	return fw_count_verdict(cfg, hit, egress ? FW_DIR_EGRESS : FW_DIR_INGRESS, ifindex, bytes, out);
}

/* Decides one parsed packet against the table of its direction and family and counts it. */
/* *out: the deciding rule's slot (or FW_EV_NO_SLOT: the table's default decided) and its counter row. */
static __always_inline int fw_decide(const struct fw_addr *a, int egress, __u32 ifindex, __u64 bytes, struct fw_counted *out)
{
	if (a->family == 4)
		return fw_decide4(a->w[0], egress, ifindex, bytes, out);
	return fw_decide6(a->w, egress, ifindex, bytes, out);
}

#endif /* FW_DECIDE_H */
