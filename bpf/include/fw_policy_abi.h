/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Detection policies (issue 18): the structs, constants and map names of the
 * per-source counting the agent's responder reads. Included by
 * fleetwall_abi.h (mirrored by node-agent/src/datapath/policy-abi.ts like the rest).
 *
 * The agent writes up to FW_POL_MAX policies into fw_pol_cfg (one value:
 * which directions any policy counts, the policy slots that count each
 * protocol class, port and flag (ABI 13: the programs classify a packet by
 * these bitmaps, never by a policy's match fields), the sketch's hash seeds,
 * the policies). A packet a policy of its direction matches (protocol,
 * destination port ranges, TCP SYN only) and that the rules did not drop is
 * counted per (policy, source group) in a count-min sketch (ABI 11): policy
 * slot i owns FW_POL_ROWS rows of FW_POL_WIDTH cells, value i of fw_pol_cms
 * (ABI 12: one value per slot, so one lookup per packet and policy), an
 * mmapable ARRAY whose memory is fixed at load whatever the number of
 * sources (FW_POL_MAX x FW_POL_ROWS x FW_POL_WIDTH x 16 bytes = 8 MiB).
 *
 * Row r's cell of a group: the top FW_POL_WIDTH_BITS bits of
 * lo * a_r + hi * b_r (+ c_r for IPv4), u64 arithmetic, (lo, hi) = the
 * masked address as two little-endian u64 loads (IPv4: lo = the u32, hi =
 * 0: the programs compute lo * a_r + c_r), seeds random per agent process (an attacker who does not know them
 * cannot pick sources that collide with a victim in every row). A cell is
 * tagged with its window: tag = (u32)epoch + id * FW_POL_TAG_MUL, epoch =
 * (jiffies * window_mul) >> window_shift (ABI 14: bpf_jiffies64(), one load
 * the verifier inlines, and a multiply by the reciprocal of the window in
 * jiffies, which the agent computes from window_ns and the kernel's HZ:
 * node-agent/src/datapath/kernel-clock.ts, policy-window.ts); a cell whose
 * tag is not the packet's restarts at this packet, so a new window or a new
 * policy version needs no clearing. Windows are aligned (the same epochs for
 * every group of a policy) and begin at a tick, as they did on the coarse
 * clock before ABI 14: a window of w jiffies (w = window_ns * HZ / 1e9, not
 * always whole: 10 ms at HZ 250 is 2.5) lasts floor(w') or ceil(w') jiffies,
 * w' = 2^window_shift / window_mul, within 2^-24 of w, so over n windows
 * the mean is w to within w * 2^-24 + 1/n jiffies. jiffies * window_mul < 2^64
 * while jiffies64 < 2^40 (34 years of uptime at HZ 1000).
 *
 * The group's estimate is the least of its cells (before this packet; plain,
 * non-atomic adds: two CPUs adding to one cell at once may lose one of the
 * adds, an undercount, never an overcount). Count-min overestimates: with
 * N packets (bytes) in the policy's window, estimate <= true + e * N / w with
 * probability >= 1 - e^-FW_POL_ROWS per group (the textbook bound). The
 * agent writes a measured margin for each policy at each poll instead,
 * fw_pol_stat.margin_* (node-agent/src/datapath/sketch-margin.ts): the least
 * m such that at most 1 cell in 64 of the policy's first row holds more than
 * m in the window. The seeds being secret and independent per row, a group
 * below its limit is then over limit + m with probability <= 64^-4 per
 * window, whatever the traffic's shape. The kernel reports a group when its
 * estimate is over limit + margin: a lone source (or a few: margin 0, no
 * other group in its cells) is reported exactly when it passes the limit,
 * and one below the limit never is. The first packet over it writes
 * one record into the hit ring fw_pol_hits, which is all the agent reads,
 * and marks the group's cells (FW_POL_REPORTED): a group whose cells are all
 * marked is not reported again in the window. So the margin may move (down
 * or up) between a group's packets: a group over limit + margin is reported
 * once, at its first packet over it. (Rarely, reported groups cover all of a
 * group's cells: a later report, never a wrong one.) Bans are
 * NOT here: a ban is an ordinary deny rule in the rule tables (agent-local at
 * once, then the control plane's).
 *
 * These maps are fixed-size, so they live outside the generations: pinned
 * once at the top of the pin directory, shared by every generation's
 * programs.
 */
#ifndef FW_POLICY_ABI_H
#define FW_POLICY_ABI_H

#include <linux/types.h>

#define FW_POL_MAX 8            /* policies a node counts at once */
#define FW_POL_PORT_RANGES 8    /* destination port ranges per policy */
#define FW_POL_ROWS 4           /* count-min rows (hash functions) per policy */
#define FW_POL_WIDTH_BITS 14
#define FW_POL_WIDTH (1 << FW_POL_WIDTH_BITS)  /* cells per row */
#define FW_POL_CELLS (FW_POL_MAX * FW_POL_ROWS * FW_POL_WIDTH)  /* fw_pol_cms entries */
#define FW_POL_TAG_MUL 0x9E3779B1u  /* a cell's tag: (u32)epoch + policy id * this */
#define FW_POL_REPORTED 0x80000000u  /* fw_pol_cell.packets: a group of this cell was reported in its window */
#define FW_POL_HITS 4096        /* records in the hit ring (a power of two) */

/* fw_policy.proto: an IP protocol number, or any. ICMP matches ICMPv6 on IPv6. */
#define FW_POL_PROTO_ANY 0
#define FW_POL_PROTO_ICMP 1
#define FW_POL_PROTO_TCP 6
#define FW_POL_PROTO_UDP 17
#define FW_POL_PROTO_ICMP6 58

/*
 * Protocol classes (fw_policy_set.class_mask): the programs test the packet's
 * IP protocol against the classes some policy of its direction counts
 * before anything else, so traffic no policy could match pays one read.
 */
#define FW_POL_CLASS_ICMP 1     /* ICMP, or ICMPv6 on IPv6 */
#define FW_POL_CLASS_TCP 2
#define FW_POL_CLASS_UDP 4
#define FW_POL_CLASS_OTHER 8    /* any other protocol (only policies of any protocol count it) */

/* fw_policy_set.class_pols' second index: the class's bit number (FW_POL_CLASS_x == 1 << FW_POL_CIDX_x). */
#define FW_POL_CIDX_ICMP 0
#define FW_POL_CIDX_TCP 1
#define FW_POL_CIDX_UDP 2
#define FW_POL_CIDX_OTHER 3

/* fw_policy.flags */
#define FW_POL_F_SYN_ONLY 1     /* TCP segments with SYN set and ACK clear only */

/* One policy as the kernel counts it; id 0 = an empty slot. Its index in fw_policy_set.p is its sketch slot. */
struct fw_policy {
	__u32 id;             /* the agent's number for this policy version (in every tag and hit) */
	__u8 direction;       /* enum fw_direction: ingress groups by source, egress by destination */
	__u8 proto;           /* FW_POL_PROTO_* */
	__u8 flags;           /* FW_POL_F_* */
	__u8 nports;          /* port ranges used; 0 = every port (and packets without ports) */
	__u8 v4_len;          /* source group of IPv4: 32 or 24 */
	__u8 v6_len;          /* IPv6: 128 or 64 */
	__u8 window_shift;    /* ABI 14: epoch = (jiffies * window_mul) >> window_shift (16..63) */
	__u8 pad;
	__u32 window_mul;     /* round(2^window_shift / window in jiffies), in [2^23, 2^24); 0 = an empty slot */
	__u64 window_ns;      /* the counting window in ns (what window_mul encodes; a hit's elapsed time) */
	__u64 limit_packets;  /* a group with more packets than this in one window is reported (0: none; < 2^32 - 1) */
	__u64 limit_bytes;    /* same for bytes (0: none) */
	__u16 port_lo[FW_POL_PORT_RANGES];  /* host order, inclusive */
	__u16 port_hi[FW_POL_PORT_RANGES];
};

/* One row's hash seeds (a odd). */
struct fw_pol_seed {
	__u64 a;
	__u64 b;
	__u64 c;
};

/*
 * fw_pol_cfg[0]. ABI 13: the programs classify a packet by bitmaps of policy
 * slots (bit i = slot i), not by testing each policy: the slots that may
 * count it are class_pols[dir][class] & (a port read ? port_pols[dir][dport]
 * : noport[dir]) & (a TCP SYN ? all : ~syn_only[dir]), each policy's
 * direction, protocol (ICMP on IPv4, ICMPv6 on IPv6), port ranges and
 * SYN-only flag folded in by the agent (policy-maps.ts); p[i] is read only
 * for a slot whose bit is set (its id, window, limits, grouping).
 */
struct fw_policy_set {
	__u32 dir_mask;       /* bit (1 << direction): some policy counts that direction */
	__u16 count;          /* policies in p[] (the rest are id 0) */
	__u8 class_mask[2];   /* [direction]: FW_POL_CLASS_* some policy of that direction counts (the one read unmatched traffic pays) */
	__u8 l4_mask[2];      /* [direction]: 1 if some policy of it reads ports or TCP flags (else the L4 header is never read) */
	__u8 syn_only[2];     /* [direction]: the slots with FW_POL_F_SYN_ONLY */
	__u8 noport[2];       /* [direction]: the slots with nports == 0 (they count packets without ports too) */
	__u8 class_pols[2][4];  /* [direction][FW_POL_CIDX_*]: the slots that count that protocol class (any: every class) */
	__u8 pad[2];
	struct fw_pol_seed seed[FW_POL_ROWS];
	struct fw_policy p[FW_POL_MAX];
	__u8 port_pols[2][65536];  /* [direction][destination port]: the slots whose port ranges cover it (nports == 0: every port) */
};

/* One counter of the sketch. */
struct fw_pol_cell {
	__u32 tag;            /* the window (and policy version) it counts: not the packet's = 0 */
	__u32 packets;        /* FW_POL_REPORTED | packets (31 bits; one add per packet to the word: 2^31 in one window wrap into the mark) */
	__u64 bytes;
};

/* fw_pol_cms[slot]: one policy slot's sketch, c[row * FW_POL_WIDTH + h] (one lookup per packet and policy). */
struct fw_pol_sketch {
	struct fw_pol_cell c[FW_POL_ROWS * FW_POL_WIDTH];
};

/* A source group as reported. addr is masked to the policy's length (4 bytes used for IPv4). */
struct fw_pol_key {
	__u32 policy;         /* fw_policy.id */
	__u8 family;          /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

/*
 * fw_pol_hits[seq % FW_POL_HITS]: the program reserves seq with an atomic add
 * on fw_pol_stat.head, writes the record, then stores seq + 1 in it with an
 * atomic exchange (a full barrier): a reader takes a record whose seq is the
 * one it expects and skips (counts as lost) one the ring overwrote.
 */
struct fw_pol_hit {
	__u64 seq;            /* this record's sequence number + 1 (0: never written) */
	struct fw_pol_key key;
	__u64 packets;        /* the estimate when the limit was crossed (this packet included) */
	__u64 bytes;
	__u64 elapsed_ns;     /* since the window began (its fraction of window_ns, to 2^-16 of it) */
	__u64 at_ns;          /* the crossing packet's clock (bpf_ktime_get_coarse_ns(): a tick's resolution) */
};

/* fw_pol_stat[0] (mmapped by the agent). */
struct fw_pol_stat {
	__u64 head;           /* hit records written so far (atomic adds) */
	__u64 pad[7];         /* the margins on a cache line of their own */
	__u64 margin_packets[FW_POL_MAX];  /* [slot]: floor(e * N / w), written by the agent */
	__u64 margin_bytes[FW_POL_MAX];
};

#define FW_MAP_POL_CFG   "fw_pol_cfg"
#define FW_MAP_POL_CMS   "fw_pol_cms"
#define FW_MAP_POL_HITS  "fw_pol_hits"
#define FW_MAP_POL_STAT  "fw_pol_stat"

#endif /* FW_POLICY_ABI_H */
