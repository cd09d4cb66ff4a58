/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sampled drop events: the programs call fw_ev_xdp() / fw_ev_tc() only for
 * a packet already decided drop or would-drop (passes and unmatched traffic
 * pay nothing). Two token buckets per CPU row, plain stores (each CPU writes
 * only its own): the rule's (in the rule's counter row, the cache line the
 * drop was just counted in) and the node's (fw_ev_cpu[cpu]: a bound on the
 * node's event rate however many rules are hit). An event is written into
 * the fw_events ring buffer when both have a token; its weight is the row's
 * drops since the row's mark (the count at its last event), and the mark
 * moves on. A refused drop writes nothing: it stays pending in the counter.
 * A flood's refused drop is told inline (fw_ev_quiet(): two words of the
 * row); the rest, budgets and ring, is a subprogram (fw_ev_xdp_emit() /
 * fw_ev_tc_emit()) that reads the frame's fields from the context itself,
 * so the program keeps only ctx and the counted row live across the
 * decision for it. See fw_events_abi.h and bpf/README.md ("Sampled drop events").
 */
#ifndef FW_EVENTS_H
#define FW_EVENTS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fleetwall_abi.h"
#include "fw_maps.h"
#include "fw_decide.h"

/* The ring: its size (a power of two, >= a page) is set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_ev_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_ev_cfg SEC(".maps");

/* [cpu]: the node budget's share of each CPU, and the default's budget (sized to the possible CPUs by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_ev_cpu);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_ev_cpu SEC(".maps");

/* Refills a bucket to `now` (ticks). */
static __always_inline void fw_ev_refill(__u32 *last, __u32 *tokens, __u32 refill, __u32 burst, __u32 full_ticks, __u32 now)
{
	__u32 el = now - *last;
	if (el) {
		__u64 t = el >= full_ticks ? burst : *tokens + (__u64)el * refill;
		*tokens = t > burst ? burst : (__u32)t;
		*last = now;
	}
}

/*
 * The budgets of the drop just counted (k: its slot and CPU row): NULL if no
 * event is to be written now (the drop then stays pending: a rule's pending
 * drops are its row's packets since the row's mark, nothing is written for
 * it), else the budget state to settle once the ring write is known to have
 * worked or not (both tokens are already spent); *w = the event's weight.
 * A rule with more than FW_EV_CLOCK_QUIET drops pending looks at its budgets
 * only on every FW_EV_CLOCK_EVERY-th drop: a flood's refused drop reads two
 * words of its counter row and writes nothing (the programs make that test
 * inline, fw_ev_quiet(), and call the subprogram with this only past it);
 * the ev config and its flags are read past it.
 * Otherwise the rule's budget first (on that same line), then the node's
 * (fw_ev_cpu[cpu]); the clock is read only to refill an empty one.
 */
static __always_inline struct fw_ev_state *fw_ev_budget(const struct fw_counted *k, const struct fw_ev_cfg **cfg_out,
							__u32 *w)
{
	__u32 zero = 0;
	const struct fw_ev_cfg *ec;
	struct fw_ev_cpu *cs = 0;
	struct fw_ev_state *st;
	__u32 n;
	struct fw_rule_row *row = k->row;
	if (row) {
		st = &row->ev;
		/* The drops since this row's last event, this one included: the counter fw_decide() has just added it to. */
		n = (__u32)row->c.packets - st->mark;
		/*
		 * More than FW_EV_CLOCK_QUIET drops pending: the budgets refused the
		 * last ones (or the ring had no room); look at them again only once
		 * every FW_EV_CLOCK_EVERY drops. A flood's refused drop stops here,
		 * having read two words of the line it was just counted in and
		 * written nothing; the ev config is read only past this test (a row
		 * reads and writes nothing of it before the flag says events are on).
		 */
		if (n > FW_EV_CLOCK_QUIET && (n & (FW_EV_CLOCK_EVERY - 1)))
			return 0;
		ec = bpf_map_lookup_elem(&fw_ev_cfg, &zero);
		if (!ec || !(ec->flags & FW_EV_F_ENABLED))
			return 0;
	} else {
		ec = bpf_map_lookup_elem(&fw_ev_cfg, &zero);
		if (!ec || !(ec->flags & FW_EV_F_ENABLED))
			return 0;
		const struct fw_table_cfg *tc = &fw_tblcfg[0];
		/* A rule's drop counted outside the CPU rows (a CPU beyond them): no event. */
		if (k->slot < tc->rule_slots)
			return 0;
		__u32 cpu = bpf_get_smp_processor_id();
		if (cpu >= tc->cpu_rows)
			return 0;
		cs = bpf_map_lookup_elem(&fw_ev_cpu, &cpu);
		if (!cs)
			return 0;
		/* The default's drops: counted here (no rule counter), while events are on. */
		cs->drops += 1;
		st = &cs->dflt;
		n = (__u32)cs->drops - st->mark;
		/* The same test for the default's pending drops. */
		if (n > FW_EV_CLOCK_QUIET && (n & (FW_EV_CLOCK_EVERY - 1)))
			return 0;
	}
	__u32 now = 0;
	int clock = 0;
	if (st->tokens < FW_EV_MILLI) {
		now = (__u32)(bpf_ktime_get_coarse_ns() >> FW_EV_TICK_SHIFT);
		clock = 1;
		fw_ev_refill(&st->last, &st->tokens, ec->refill, ec->burst, ec->full_ticks, now);
		if (st->tokens < FW_EV_MILLI)
			return 0;
	}
	if (ec->flags & FW_EV_F_NODE) {
		if (!cs) {
			/* A CPU row was counted in: this CPU is below cpu_rows, so within fw_ev_cpu. */
			__u32 cpu = bpf_get_smp_processor_id();
			cs = bpf_map_lookup_elem(&fw_ev_cpu, &cpu);
			if (!cs)
				return 0;
		}
		/* A drop the node's budget refuses leaves the rule's tokens alone (its drops stay pending). */
		if (cs->tokens < FW_EV_MILLI) {
			if (!clock)
				now = (__u32)(bpf_ktime_get_coarse_ns() >> FW_EV_TICK_SHIFT);
			fw_ev_refill(&cs->last, &cs->tokens, ec->node_refill, ec->node_burst, ec->node_full_ticks, now);
			if (cs->tokens < FW_EV_MILLI)
				return 0;
		}
		cs->tokens -= FW_EV_MILLI;
	}
	/* Tokens are spent whether or not the ring takes the event: lost counts events, not packets. */
	st->tokens -= FW_EV_MILLI;
	*cfg_out = ec;
	*w = n;
	return st;
}

/* The ring had no room: the event is lost (counted), its drops stay pending (the mark stays). */
static __always_inline void fw_ev_lost(struct fw_ev_state *st)
{
	st->lost += 1;
}

/* Fills an event's fields from the packet (direct access; L4 fields stay 0 when not in the linear data). */
static __always_inline void fw_ev_fill(struct fw_event *e, void *data, void *data_end, __u32 dir, int verdict,
				       __u32 slot, __u32 ifindex, __u32 pkt_len, __u32 w)
{
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	__u8 proto = 0;
	void *l4 = 0;

	e->time_ns = bpf_ktime_get_ns();
	e->kind = FW_EV_KIND_DROP;
	e->verdict = verdict == FW_V_WOULD_DROP ? FW_SV_WOULD_DROP : FW_SV_DROP;
	e->direction = dir;
	e->ifindex = ifindex;
	e->slot = slot;
	e->weight = w;
	e->pkt_len = pkt_len;
	e->cap_len = 0;
	e->family = 0;
	e->ip_proto = 0;
	e->sport = 0;
	e->dport = 0;
	e->tcp_flags = 0;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	__builtin_memset(e->saddr, 0, 16);
	__builtin_memset(e->daddr, 0, 16);
	if ((void *)(eth + 1) > data_end)
		return;
	__be16 h = eth->h_proto;
	if (h == bpf_htons(ETH_P_8021Q) || h == bpf_htons(ETH_P_8021AD)) {
		struct fw_vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return;
		h = vh->encap_proto;
		off += sizeof(*vh);
	}
	if (h == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return;
		e->family = 4;
		__builtin_memcpy(e->saddr, &ip->saddr, 4);
		__builtin_memcpy(e->daddr, &ip->daddr, 4);
		proto = ip->protocol;
		/* L4 only in the first fragment */
		if (!(ip->frag_off & bpf_htons(0x1fff)))
			l4 = (void *)ip + ((ip->ihl & 0xf) << 2);
	} else if (h == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return;
		e->family = 6;
		__builtin_memcpy(e->saddr, &ip6->saddr, 16);
		__builtin_memcpy(e->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr; /* no extension headers walked */
		l4 = ip6 + 1;
	} else {
		return;
	}
	e->ip_proto = proto;
	if (!l4)
		return;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > data_end)
			return;
		e->sport = bpf_ntohs(t->source);
		e->dport = bpf_ntohs(t->dest);
		e->tcp_flags = ((__u8 *)t)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) > data_end)
			return;
		e->sport = bpf_ntohs(u->source);
		e->dport = bpf_ntohs(u->dest);
	} else if (proto == IPPROTO_ICMP || proto == 58 /* IPPROTO_ICMPV6 */) {
		__u8 *c = l4;
		if ((void *)(c + 2) > data_end)
			return;
		e->sport = c[0];
		e->dport = c[1];
	}
}

/* Packet bytes to copy: min(snap, packet, FW_EV_SNAP_MAX), bounded for the verifier. */
static __always_inline __u32 fw_ev_caplen(__u32 snap, __u32 pkt_len)
{
	__u32 n = snap < pkt_len ? snap : pkt_len;
	return n > FW_EV_SNAP_MAX ? FW_EV_SNAP_MAX : n;
}

/*
 * Writes one event through the ring (reserve, fill, optional packet bytes
 * with the program type's load helper, submit), or counts it lost. The
 * packet's fields (data_, data_end_, ifindex_, pkt_len_: expressions on the
 * context) are read only once the budgets have said yes: nothing of the
 * packet but the decision stays live across fw_decide() for a refused drop.
 */
#define FW_EV_EMIT(ctx_, load_bytes_, data_, data_end_, dir_, v_, k_, ifindex_, pkt_len_)                        \
	do {                                                                                                   \
		const struct fw_ev_cfg *ec_ = 0;                                                               \
		__u32 w_ = 0;                                                                                  \
		struct fw_ev_state *st_ = fw_ev_budget((k_), &ec_, &w_);                                       \
		if (!st_ || !ec_)                                                                              \
			break;                                                                                 \
		__u32 slot_ = (k_)->slot;                                                                      \
		void *d_ = (data_);                                                                            \
		void *de_ = (data_end_);                                                                       \
		__u32 len_ = (pkt_len_);                                                                       \
		__u32 if_ = (ifindex_);                                                                        \
		__u32 n_ = fw_ev_caplen(ec_->snap_len, len_);                                                  \
		if (n_ > 0) {                                                                                  \
			struct fw_event *e_ = bpf_ringbuf_reserve(&fw_events, sizeof(*e_) + FW_EV_SNAP_MAX, 0);  \
			if (!e_) {                                                                             \
				fw_ev_lost(st_);                                                               \
				break;                                                                         \
			}                                                                                      \
			fw_ev_fill(e_, d_, de_, (dir_), (v_), slot_, if_, len_, w_);                           \
			if (n_ > FW_EV_SNAP_MAX)                                                               \
				n_ = FW_EV_SNAP_MAX;                                                           \
			if (load_bytes_((ctx_), 0, (void *)(e_ + 1), n_) == 0)                                 \
				e_->cap_len = n_;                                                              \
			bpf_ringbuf_submit(e_, 0);                                                             \
		} else {                                                                                       \
			struct fw_event *e_ = bpf_ringbuf_reserve(&fw_events, sizeof(*e_), 0);                 \
			if (!e_) {                                                                             \
				fw_ev_lost(st_);                                                               \
				break;                                                                         \
			}                                                                                      \
			fw_ev_fill(e_, d_, de_, (dir_), (v_), slot_, if_, len_, w_);                           \
			bpf_ringbuf_submit(e_, 0);                                                             \
		}                                                                                              \
		st_->mark += w_; /* the drops it carries are no longer pending */                              \
	} while (0)

/*
 * A flood's refused drop, told inline: the rule's row has more than
 * FW_EV_CLOCK_QUIET drops pending and this is not an FW_EV_CLOCK_EVERY-th
 * one (fw_ev_budget() makes the same test; the default's drops, with no row,
 * go on to it). Two words of the line the drop was just counted in.
 */
static __always_inline int fw_ev_quiet(const struct fw_counted *k)
{
	const struct fw_rule_row *row = k->row;
	if (!row)
		return 0;
	__u32 n = (__u32)row->c.packets - row->ev.mark;
	return n > FW_EV_CLOCK_QUIET && (n & (FW_EV_CLOCK_EVERY - 1));
}

/*
 * The rest of the event path, a subprogram (a BPF-to-BPF call): the budgets,
 * the ring write. Its registers are its own, so the program keeps nothing
 * live across fw_decide() for it but the context and the counted row. The
 * frame's fields are read from the context here (a pointer into the context
 * kept across the call would be refused by the verifier).
 */
static __noinline int fw_ev_xdp_emit(struct xdp_md *ctx, int v, __u32 slot, struct fw_rule_row *row)
{
	struct fw_counted k = { .slot = slot, .row = row };
	const struct fw_counted *kp = &k;
	FW_EV_EMIT(ctx, bpf_xdp_load_bytes, (void *)(long)ctx->data, (void *)(long)ctx->data_end, FW_DIR_INGRESS, v,
		   kp, ctx->ingress_ifindex, (__u32)(ctx->data_end - ctx->data));
	return 0;
}

static __noinline int fw_ev_tc_emit(struct __sk_buff *skb, int v, __u32 slot, struct fw_rule_row *row)
{
	struct fw_counted k = { .slot = slot, .row = row };
	const struct fw_counted *kp = &k;
	FW_EV_EMIT(skb, bpf_skb_load_bytes, (void *)(long)skb->data, (void *)(long)skb->data_end, FW_DIR_EGRESS, v, kp,
		   skb->ifindex, skb->len);
	return 0;
}

/* XDP: a drop or would-drop decided for this frame. */
static __always_inline void fw_ev_xdp(struct xdp_md *ctx, int v, const struct fw_counted *k)
{
	if (!fw_ev_quiet(k))
		fw_ev_xdp_emit(ctx, v, k->slot, k->row);
}

/* TC egress: a drop or would-drop decided for this skb. */
static __always_inline void fw_ev_tc(struct __sk_buff *skb, int v, const struct fw_counted *k)
{
	if (!fw_ev_quiet(k))
		fw_ev_tc_emit(skb, v, k->slot, k->row);
}

#endif /* FW_EVENTS_H */
