/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Detection policies (issue 18): the structs, constants and map names of the
 * per-source counting the agent's responder reads. Included by
 * fleetwall_abi.h (mirrored by node-agent/src/datapath/abi.ts like the rest).
 *
 * The agent writes up to FW_POL_MAX policies into fw_pol_cfg (one value:
 * which directions any policy counts, then the policies). A packet a policy
 * of its direction matches (protocol, destination port ranges, TCP SYN only)
 * and that the rules did not drop is counted per (policy, source group) in
 * fw_pol_src, an LRU hash of FW_POL_SOURCES groups whose memory is fixed at
 * load whatever the number of sources: a flood of random sources evicts
 * groups (counted in fw_pol_stat.inserts), never grows it. Counting is in
 * fixed windows per group (window_ns, from the group's first packet); the
 * packet that takes a group over a policy's limit in a window writes one
 * record into the hit ring fw_pol_hits (once per window), which is all the
 * agent reads. Bans are NOT here: a ban is an ordinary deny rule in the
 * rule tables (agent-local at once, then the control plane's).
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
#define FW_POL_SOURCES 65536    /* groups fw_pol_src holds (LRU: the least recently counted go) */
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

/* fw_policy.flags */
#define FW_POL_F_SYN_ONLY 1     /* TCP segments with SYN set and ACK clear only */

/* One policy as the kernel counts it; id 0 = an empty slot. */
struct fw_policy {
	__u32 id;             /* the agent's number for this policy version (in every key and hit) */
	__u8 direction;       /* enum fw_direction: ingress groups by source, egress by destination */
	__u8 proto;           /* FW_POL_PROTO_* */
	__u8 flags;           /* FW_POL_F_* */
	__u8 nports;          /* port ranges used; 0 = every port (and packets without ports) */
	__u8 v4_len;          /* source group of IPv4: 32 or 24 */
	__u8 v6_len;          /* IPv6: 128 or 64 */
	__u8 pad[6];
	__u64 window_ns;      /* the counting window */
	__u64 limit_packets;  /* a group with more packets than this in one window is reported (0: none) */
	__u64 limit_bytes;    /* same for bytes (0: none) */
	__u16 port_lo[FW_POL_PORT_RANGES];  /* host order, inclusive */
	__u16 port_hi[FW_POL_PORT_RANGES];
};

/* fw_pol_cfg[0]. */
struct fw_policy_set {
	__u32 dir_mask;       /* bit (1 << direction): some policy counts that direction */
	__u16 count;          /* policies in p[] (the rest are id 0) */
	__u8 class_mask[2];   /* [direction]: FW_POL_CLASS_* some policy of that direction counts (the one read unmatched traffic pays) */
	struct fw_policy p[FW_POL_MAX];
};

/* fw_pol_src key: a source group. addr is masked to the policy's length (4 bytes used for IPv4). */
struct fw_pol_key {
	__u32 policy;         /* fw_policy.id */
	__u8 family;          /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

/* fw_pol_src value: the group's current window. */
struct fw_pol_count {
	__u64 window_start_ns;  /* bpf_ktime_get_coarse_ns() of the window's first packet */
	__u64 packets;          /* in this window */
	__u64 bytes;
	__u64 reported_ns;      /* window_start_ns of the window already reported (one hit per window) */
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
	__u64 packets;        /* in the window when the limit was crossed */
	__u64 bytes;
	__u64 elapsed_ns;     /* since the window's first packet */
	__u64 at_ns;          /* bpf_ktime_get_coarse_ns() of the crossing packet */
};

/* fw_pol_stat[0]: shared, atomic adds. */
struct fw_pol_stat {
	__u64 head;           /* hit records written so far */
	__u64 inserts;        /* groups created in fw_pol_src (each may have evicted one: the churn) */
};

#define FW_MAP_POL_CFG   "fw_pol_cfg"
#define FW_MAP_POL_SRC   "fw_pol_src"
#define FW_MAP_POL_HITS  "fw_pol_hits"
#define FW_MAP_POL_STAT  "fw_pol_stat"

#endif /* FW_POLICY_ABI_H */
