/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fleetwall kernel ABI: every struct, enum and map name that TypeScript also
 * reads (node-agent/src/datapath/abi.ts mirrors it; test/dataplane/abi.test.ts
 * compiles this header and compares sizes and offsets).
 *
 * Four lookup tables: ingress (XDP, source address) and egress (TC,
 * destination address) x IPv4 and IPv6. Each table is
 *   - one HASH   keyed by {prefixlen, masked address} holding the "hot"
 *     prefix lengths listed in its fw_table_cfg (probed longest first),
 *   - one LPM_TRIE with the same key layout holding every other length.
 * A value carries its own prefix length so the program can compare a trie
 * hit with hash lengths.
 *
 * Bump FW_ABI_VERSION on any incompatible change: pinned state of another
 * version is refused at open.
 */
#ifndef FLEETWALL_ABI_H
#define FLEETWALL_ABI_H

#include <linux/types.h>

#define FW_ABI_VERSION 1

/* Prefix lengths one table may probe in its hash (the rest go to the trie). */
#define FW_MAX_HASH_LENS 8
/* Prefix lengths 0..128. */
#define FW_LEN_SLOTS 129

enum fw_table_id {
	FW_TABLE_IN4 = 0,
	FW_TABLE_IN6 = 1,
	FW_TABLE_EG4 = 2,
	FW_TABLE_EG6 = 3,
	FW_TABLE_COUNT = 4,
};

enum fw_direction {
	FW_DIR_INGRESS = 0,
	FW_DIR_EGRESS = 1,
};

/* 0 is never a valid action or mode: a zeroed value is recognisable. */
enum fw_action {
	FW_ACTION_DENY = 1,
	FW_ACTION_ALLOW = 2,
};

enum fw_mode {
	FW_MODE_ENFORCE = 1,
	FW_MODE_MONITOR = 2,
};

enum fw_default_action {
	FW_DEFAULT_PASS = 0,
	FW_DEFAULT_DROP = 1,
};

/* Key of the hash and the trie (the LPM trie key format). addr is masked. */
struct fw_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct fw_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of the hash and the trie. */
struct fw_entry {
	__u32 slot;      /* index into fw_rule_cnt */
	__u8 action;     /* enum fw_action */
	__u8 mode;       /* enum fw_mode */
	__u8 prefixlen;  /* same as the key's, so a trie hit knows its length */
	__u8 flags;      /* reserved, 0 */
};

/* One published set of hash lengths (descending). */
struct fw_lenset {
	__u8 n_hash;                   /* lengths used in lens[] */
	__u8 use_trie;                 /* 1 if the trie may hold entries */
	__u8 pad[2];
	__u8 lens[FW_MAX_HASH_LENS];   /* descending */
};

/*
 * fw_tblcfg[table]: double-buffered. Userspace rewrites the inactive set
 * (the active one with identical bytes), then flips `active` in a second
 * write: a program never reads a half-written set.
 */
struct fw_table_cfg {
	__u32 active;          /* 0 or 1: which set[] the programs read */
	__u32 default_action;  /* enum fw_default_action, written at creation */
	struct fw_lenset set[2];
};

/* fw_rule_cnt[slot], per CPU. */
struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

/* fw_if_cnt key; the entry is created at attach time. */
struct fw_if_key {
	__u32 ifindex;
	__u32 direction;  /* enum fw_direction */
};

/* fw_if_cnt value, per CPU. */
struct fw_verdict_cnt {
	struct fw_counter pass;
	struct fw_counter drop;
	struct fw_counter would_drop;
};

/* fw_journal: rule id (u64) -> desired rule. Userspace only. */
struct fw_journal_rule {
	__u32 prefixlen;
	__u8 addr[16];      /* 4 bytes used for IPv4 */
	__u8 family;        /* 4 or 6 */
	__u8 direction;     /* enum fw_direction */
	__u8 action;        /* enum fw_action */
	__u8 mode;          /* enum fw_mode */
	__u32 slot;
	__u64 expire_unix_ms;  /* 0 = never */
};

/* fw_meta[0]. Userspace only. */
struct fw_meta {
	__u64 revision;
	__u8 store_id[16];     /* NUL-padded */
	__u32 abi_version;     /* FW_ABI_VERSION of the creator */
	__u32 default_action;  /* enum fw_default_action: kept across reopen */
	__u32 max_hash_lens;   /* K: how many lengths a table may put in its hash */
	__u32 dirty;           /* 1 while an apply() is in flight */
	__u64 created_unix_ms;
};

/* fw_lenstat[table]: entries per prefix length. Userspace only. */
struct fw_lenstat {
	__u32 count[FW_LEN_SLOTS];
	__u32 pad;
};

/* Map names (<= 15 chars), pinned by name under the pin directory. */
#define FW_MAP_IN4_HASH "fw_in4_hash"
#define FW_MAP_IN4_TRIE "fw_in4_trie"
#define FW_MAP_IN6_HASH "fw_in6_hash"
#define FW_MAP_IN6_TRIE "fw_in6_trie"
#define FW_MAP_EG4_HASH "fw_eg4_hash"
#define FW_MAP_EG4_TRIE "fw_eg4_trie"
#define FW_MAP_EG6_HASH "fw_eg6_hash"
#define FW_MAP_EG6_TRIE "fw_eg6_trie"
#define FW_MAP_TBLCFG   "fw_tblcfg"
#define FW_MAP_RULE_CNT "fw_rule_cnt"
#define FW_MAP_IF_CNT   "fw_if_cnt"
#define FW_MAP_JOURNAL  "fw_journal"
#define FW_MAP_META     "fw_meta"
#define FW_MAP_LENSTAT  "fw_lenstat"

/* Program names. */
#define FW_PROG_XDP     "fw_xdp_ingress"
#define FW_PROG_TC      "fw_tc_egress"

#endif /* FLEETWALL_ABI_H */
