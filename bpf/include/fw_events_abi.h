/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sampled drop events (issue 17): the structs, constants and map names of
 * the event path, included by fleetwall_abi.h (mirrored in
 * node-agent/src/datapath/events-abi.ts, checked by test/dataplane/abi.test.ts).
 *
 * A dropped or would-drop packet may emit one fw_event into the fw_events
 * ring buffer. The rate is bounded twice, per CPU row: by the rule's budget
 * (a token bucket in the rule's own counter row, fw_rule_cnt[row * slots +
 * slot].ev: the line the drop has just been counted in; fw_ev_cpu[cpu].dflt
 * for drops by the table default) and by the node's (fw_ev_cpu[cpu], a
 * token bucket of the node-wide rate's share of this CPU, whatever rules are
 * hit; looked at once the rule's has a token, and a drop it refuses leaves
 * the rule's tokens alone). An event carries a weight: the drops of its
 * rule on its CPU since the previous event of that rule and CPU, this one
 * included: the row's packet counter (low 32 bits) minus ev.mark, the
 * counter at the row's last event; the mark then moves on by the weight. So
 * the weights of a rule add up to its drop counter minus what is still
 * pending (counter - mark, per row), and a drop refused by either budget
 * writes nothing at all (ABI 10; before, each added 1 to a pending weight).
 * An event the ring had no room for is counted in ev.lost and its drops
 * stay pending (the next event carries them). The agent sets every mark to
 * its row's counter when it turns events on (nothing moves a mark while they
 * are off), so the first events do not carry the drops of that time.
 */
#ifndef FW_EVENTS_ABI_H
#define FW_EVENTS_ABI_H

#include <linux/types.h>

/* fw_event.kind: a sampled drop (later kinds, e.g. a detection, reuse the record). */
#define FW_EV_KIND_DROP 1
/* fw_event.slot of a drop decided by the table's default (no rule matched). */
#define FW_EV_NO_SLOT 0xffffffffu
/* Packet bytes an event may carry at most (fw_ev_cfg.snap_len). */
#define FW_EV_SNAP_MAX 256
/* fw_ev_state.last, fw_ev_cpu.last: coarse monotonic time in units of 2^FW_EV_TICK_SHIFT ns (~1.05 ms). */
#define FW_EV_TICK_SHIFT 20
/* Tokens are kept in thousandths. */
#define FW_EV_MILLI 1000
/*
 * A rule (CPU row) with more than FW_EV_CLOCK_QUIET drops pending (its
 * budgets refused them, or the ring had no room) looks at its budgets, and
 * the clock, only once every FW_EV_CLOCK_EVERY of its drops: a flood pays
 * for the look on 1 drop in 128; a quiet rule looks on each. So a rule the
 * node's budget refused gets its next chance within 128 of its drops, even
 * if another rule's drop refilled the node's tokens meanwhile.
 */
#define FW_EV_CLOCK_QUIET 4
#define FW_EV_CLOCK_EVERY 128
/* fw_ev_cfg.flags */
#define FW_EV_F_ENABLED 1
/* fw_ev_cfg.flags: the node budget (node_refill, node_burst) applies */
#define FW_EV_F_NODE 2

/* fw_ev_cfg[0]: written by the agent at load (and when its settings change). */
struct fw_ev_cfg {
	__u32 flags;           /* FW_EV_F_ENABLED: 0 = no event, no budget state touched */
	__u32 snap_len;        /* packet bytes copied into each event, 0..FW_EV_SNAP_MAX */
	__u32 refill;          /* thousandths of a token added per tick, per rule and CPU row */
	__u32 burst;           /* thousandths of a token at most, per rule and CPU row */
	__u32 full_ticks;      /* ticks after which a bucket is full whatever it held */
	__u32 node_refill;     /* FW_EV_F_NODE: thousandths of a token added per tick to each CPU's node budget */
	__u32 node_burst;      /* FW_EV_F_NODE: thousandths of a token at most in each CPU's node budget */
	__u32 node_full_ticks; /* the same as full_ticks, for the node budget */
};

/* One rule's budget on one CPU row: fw_rule_cnt[row * rule_slots + slot].ev (or fw_ev_cpu[cpu].dflt). */
struct fw_ev_state {
	__u32 last;    /* tick of the last refill */
	__u32 tokens;  /* thousandths of a token */
	__u32 mark;    /* the row's drop count (low 32 bits) at its last event: pending = count - mark (u32) */
	__u32 lost;    /* events the ring had no room for (wraps; read as deltas) */
};

/*
 * fw_rule_cnt[row * rule_slots + slot]: the rule's counter (read and written
 * as a struct fw_counter by fw_decide.h: it comes first) and, on the same
 * cache line, its event budget on that row (every row of fw_rule_cnt is a
 * CPU's; the overflow and base rows are in fw_rule_xcnt, counters only).
 */
struct fw_rule_row {
	struct fw_counter c;
	struct fw_ev_state ev;
};

/*
 * fw_ev_cpu[cpu]: a cache line per CPU, written only by that CPU. The node
 * budget's share of this CPU, and the budget of the drops decided by a
 * table's default (no rule, no counter row: they are counted here, in
 * drops, while events are on).
 */
struct fw_ev_cpu {
	__u32 last;      /* tick of the node budget's last refill */
	__u32 tokens;    /* thousandths of a token */
	__u64 drops;     /* the default's drops on this CPU while events were on (dflt.mark follows it) */
	struct fw_ev_state dflt;
	__u8 pad2[32];
};

/* One ring buffer record (followed by cap_len packet bytes when snap_len > 0). */
struct fw_event {
	__u64 time_ns;    /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u16 kind;       /* FW_EV_KIND_DROP */
	__u8 verdict;     /* enum fw_slot_verdict: FW_SV_DROP or FW_SV_WOULD_DROP */
	__u8 direction;   /* enum fw_direction */
	__u32 ifindex;
	__u32 slot;       /* counter slot of the deciding rule, or FW_EV_NO_SLOT */
	__u32 weight;     /* drops this event stands for (>= 1) */
	__u32 pkt_len;    /* bytes of the packet (XDP: the frame; TC: skb->len) */
	__u16 cap_len;    /* packet bytes that follow the record */
	__u8 family;      /* 4 or 6 */
	__u8 ip_proto;    /* IPPROTO_*; 0 if the L4 header could not be read */
	__u16 sport;      /* host order; ICMP/ICMPv6: type */
	__u16 dport;      /* host order; ICMP/ICMPv6: code */
	__u8 tcp_flags;
	__u8 pad[3];
	__u8 saddr[16];   /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

#define FW_MAP_EVENTS    "fw_events"
#define FW_MAP_EV_CFG    "fw_ev_cfg"
#define FW_MAP_EV_CPU    "fw_ev_cpu"

#endif /* FW_EVENTS_ABI_H */
