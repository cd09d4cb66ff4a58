/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fleetwall kernel ABI: every struct, enum and map name that TypeScript also
 * reads (node-agent/src/datapath/abi.ts mirrors it; test/dataplane/abi.test.ts
 * compiles this header and compares sizes and offsets).
 *
 * Four lookup tables: ingress (XDP, source address) and egress (TC,
 * destination address) x IPv4 and IPv6. Each table is
 *   - one bucketed two-choice hash table in an mmapable ARRAY (fw_*_tab)
 *     holding the "hot" prefix lengths listed in its fw_table_cfg (probed
 *     longest first); the programs hash in BPF and read one cache line per
 *     probe, userspace writes the slots through mmap with single atomic
 *     stores (no syscall, no torn entry);
 *   - IPv4: a direct index of every /24 in two levels, written by userspace
 *     through mmap: one u32 per /16 in the table's config (fw_table_cfg.d16)
 *     that answers for the whole /16, or points to a block of 256 /24 words
 *     in a pool (fw_*4_d24) for the /16s that hold entries longer than /16.
 *     A /24 word holds the longest entry of length <= 24 that covers the
 *     /24, and whether any longer entry lies inside it. One or two loads
 *     decide every packet whose /24 holds no longer entry; only the others
 *     probe the hash lengths above 24 (and the trie);
 *   - one small kernel HASH (fw_*_spill) for the rare key whose two buckets
 *     are both full (the first bucket carries a flag, so only addresses that
 *     hash there ever look it up);
 *   - one LPM_TRIE with every other length.
 * Trie and spill values carry their own prefix length.
 *
 * Sizes follow the rules held (ABI 6): the hashes, the /24 block pools, the
 * rule counters and the journal are created small and replaced by larger or
 * smaller ones as rules come and go (a "generation": maps pinned under
 * gen-<n>/, programs bound to them swapped in on every pinned link; see
 * bpf/README.md, "Sizes that follow the rules").
 *
 * Bump FW_ABI_VERSION on any incompatible change: pinned state of another
 * version is refused at open.
 */
#ifndef FLEETWALL_ABI_H
#define FLEETWALL_ABI_H

#include <linux/types.h>

#define FW_ABI_VERSION 15

/* Bytes of store id the sync meta holds (a control plane's store ids are UUIDs: 36). */
#define FW_STORE_ID_MAX 64

/* Prefix lengths one table may probe in its hash (the rest go to the trie). */
#define FW_MAX_HASH_LENS 8
/* Prefix lengths 0..128. */
#define FW_LEN_SLOTS 129
/* Rule counter slots at most (a /24 index word has 24 bits for it). */
#define FW_MAX_RULE_SLOTS (1 << 24)

/*
 * Hash table geometry. Bucket i1 = range(h1), i2 = range(h2) with (u32 arithmetic)
 *   IPv4: h1 = (a ^ seed ^ len * FW_HASH_MUL) * FW_HASH_MUL4, a = masked address (host order)
 *   IPv6: h1 = fmix32(seed ^ len * FW_HASH_MUL ^ m0 * FW_HASH_MUL6_0 ^ ... ^ m3 * FW_HASH_MUL6_3),
 *         m0..m3 = the masked address words as loaded (little-endian u32 of network bytes)
 *   h2 = fmix32(h1 ^ FW_HASH_SEED2); range(x) = (x * nbuckets) >> 32 (the high bits:
 *   multiplicative hashing mixes every input bit into them).
 * A key goes to its first bucket if a slot is free, else to its second (the
 * first bucket gets FW_*_OVF), else to the spill hash (first bucket gets
 * FW_*_SPILL). Slots never move while the programs may read them.
 */
#define FW_HASH_MUL 0x9E3779B1u
#define FW_HASH_MUL4 0x85EBCA6Bu
#define FW_HASH_MUL6_0 0xC2B2AE35u
#define FW_HASH_MUL6_1 0x27D4EB2Fu
#define FW_HASH_MUL6_2 0x165667B1u
#define FW_HASH_MUL6_3 0xD3A2646Du
#define FW_HASH_SEED2 0x5BD1E995u
#define FW_B4_WORDS 8
#define FW_B4_SLOTS 7
#define FW_B6_SLOTS 5
/* IPv4 slot tag: 0x80 | (h1 * FW_TAG4_MUL) >> 25 (u32 arithmetic): 7 bits of the whole hash. */
#define FW_TAG4_MUL 0xCC9E2D51u

/*
 * IPv4 bucket (one 64-byte line): w[0] is the tag word, w[1..7] the slots.
 *   tag word: byte i-1 = the tag of slot i (0 = empty; a tag always has
 *             bit 7 set), bits 62, 63 = bucket flags: spill, overflow.
 *   A probe compares the key's tag with all seven bytes at once (SWAR) and
 *   reads only the slot of the lowest match; the full scan runs only when
 *   that slot is another key and more bytes matched (a 1-in-128 collision).
 * IPv4 slot word (u64): 0 = empty. Its low half is a match in the /24
 * word's format (below: slot, verdict, a nonzero length field), so a probe
 * that finds it returns it as read, with nothing to convert (ABI 15):
 *   bits  0..23  rule counter slot (FW_D24_SLOT_MASK)
 *   bits 24..25  verdict: enum fw_slot_verdict (allow -> pass, deny -> drop or
 *                would-drop by mode): the index into struct fw_verdict_cnt
 *   bits 26..30  length code, never 0: len - 24 for lengths 25..32 (the only
 *                ones a program probes), FW_S4_CODE_SHORT for lengths 0..24
 *                (kept in the hash for userspace only: the /24 index answers
 *                for them)
 *   bit  31      mode monitor (read back by userspace; the verdict already says it)
 *   bits 32..63  the masked address (host order); for lengths 0..24 with a
 *                marker bit at 31 - len (inside the host bits: the prefix
 *                bits, a 1, then zeros), so every a/len has its own key
 * The key is bits 26..30 and 32..63 (FW_S4_KEY_MASK): a probe of length len
 * compares (a << 32 | (len - 24) << 26) under it. An empty slot never
 * matches (its code is 0).
 * Userspace writes a slot word, then its tag (release); it clears a tag
 * before the slot word. The program reads the slot through an address
 * dependency on the tag word, so a tag is never paired with an older slot.
 */
#define FW_S4_KEY_MASK (0xffffffff00000000ULL | (31ULL << 26))
#define FW_S4_SLOT_MASK ((1u << 24) - 1)
#define FW_S4_VERDICT_SHIFT 24
#define FW_S4_CODE_SHIFT 26
#define FW_S4_CODE_SHORT 31
#define FW_S4_MONITOR (1ULL << 31)
#define FW_S4_ADDR_SHIFT 32
#define FW_S4_SPILL (1ULL << 62) /* in the tag word */
#define FW_S4_OVF (1ULL << 63)   /* in the tag word */

/*
 * IPv4 direct /24 index, two levels (a = the address in host order):
 *   w16 = fw_table_cfg.d16[a >> 16]   one u32 per /16 (in the table's config:
 *                                     read with it, no extra map lookup)
 *   FW_D16_BLOCK clear: w16 is the /24 word of every /24 of that /16 (no
 *     entry longer than /16 lies inside it; LONGER is never set here);
 *   FW_D16_BLOCK set: the /24 word is fw_in4_d24 / fw_eg4_d24[w16 &
 *     FW_D16_INDEX_MASK].w[(a >> 8) & 255], a block of the table's pool (an
 *     ARRAY sized to the blocks in use, at most FW_D24_BLOCKS).
 * A /24 word, 0 = nothing there:
 *   bits  0..23  rule counter slot of the longest entry of length <= 24 that
 *                covers this /24
 *   bits 24..25  its verdict (enum fw_slot_verdict)
 *   bits 26..30  its length + 1 (0: no entry of length <= 24 covers it)
 *   bit  31      LONGER: some entry of length > 24 lies inside this /24
 * Derived from the entries (the hash and the trie keep every entry, for
 * userspace); userspace writes each u32 with one store. A block is filled
 * (every word = the /16's answer) before its /16 word points to it, and a
 * /16 word gets its answer back before its block is freed; a freed block is
 * reused only after an RCU grace period. A program reads the /24 word,
 * probes the hash lengths above 24 (and the trie) only if LONGER is set,
 * and otherwise has its answer.
 */
#define FW_D16_WORDS (1 << 16)    /* /16 words: one per /16 */
#define FW_D16_BLOCK (1u << 31)   /* the /16 word points to a block */
#define FW_D16_INDEX_MASK ((1u << 24) - 1)
#define FW_D24_BLOCKS (1 << 16)   /* blocks a pool holds at most: one per /16 */
#define FW_D24_SLOT_MASK ((1u << 24) - 1)
#define FW_D24_VERDICT_SHIFT 24
#define FW_D24_LEN_SHIFT 26
#define FW_D24_LONGER (1u << 31)

/*
 * IPv6 slot: hi/lo = the masked address as two little-endian u64 loads of
 * its network bytes; meta: bits 0..7 prefix length, bit 8 valid, bits 9..10
 * verdict (enum fw_slot_verdict), bit 11 mode monitor, bits 32..57 rule
 * counter slot; 0 = empty.
 * Userspace writes hi/lo of an empty slot, then meta (release); the program
 * reads meta first and the address through a dependency on it. A freed
 * slot is reused only after an RCU grace period (membarrier).
 */
#define FW_M6_LEN_MASK 0xffULL
#define FW_M6_VALID (1ULL << 8)
#define FW_M6_VERDICT_SHIFT 9
#define FW_M6_MONITOR (1ULL << 11)
#define FW_M6_SLOT_SHIFT 32
#define FW_B6_OVF 1ULL
#define FW_B6_SPILL 2ULL

/* Interface counter slots per CPU: (ifindex % (FW_IF_SLOTS / 2)) * 2 + direction. */
#define FW_IF_SLOTS 1024
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

/* The verdict a slot word carries (the order of struct fw_verdict_cnt). */
enum fw_slot_verdict {
	FW_SV_PASS = 0,        /* allow */
	FW_SV_DROP = 1,        /* deny, enforce */
	FW_SV_WOULD_DROP = 2,  /* deny, monitor */
};

enum fw_default_action {
	FW_DEFAULT_PASS = 0,
	FW_DEFAULT_DROP = 1,
};

/* Key of the trie and the spill hash (the LPM trie key format). addr is masked. */
struct fw_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct fw_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of the trie and the spill hash. */
struct fw_entry {
	__u32 slot;      /* index into fw_rule_cnt */
	__u8 action;     /* enum fw_action */
	__u8 mode;       /* enum fw_mode */
	__u8 prefixlen;  /* same as the key's, so a trie hit knows its length */
	__u8 flags;      /* reserved, 0 */
};

struct fw_bucket4 {
	__u64 w[FW_B4_WORDS];  /* one 64-byte line: tag word, 7 slot words */
};

struct fw_slot6 {
	__u64 hi;
	__u64 lo;
	__u64 meta;
};

struct fw_bucket6 {
	struct fw_slot6 s[FW_B6_SLOTS];
	__u64 flags;  /* FW_B6_OVF, FW_B6_SPILL */
};

/* A fw_*4_d24 value (a block): the /24 words of the 256 /24s of one /16. */
struct fw_d24_block {
	__u32 w[256];
};

/* One published set of hash lengths (descending). */
struct fw_lenset {
	__u8 n_hash;                   /* lengths used in lens[] */
	__u8 use_trie;                 /* 1 if the trie may hold entries */
	__u8 pad[2];
	__u8 lens[FW_MAX_HASH_LENS];   /* descending */
};

/*
 * fw_tblcfg[table]: the programs' global (their .bss map, mmapable, pinned
 * as each generation's fw_tblcfg): read at a constant address, no map
 * lookup per packet. The length sets are double-buffered. Userspace writes the inactive set, then flips `active`
 * with a release store: a program never reads a half-written set.
 */
struct fw_table_cfg {
	__u32 active;          /* 0 or 1: which set[] the programs read */
	__u32 default_action;  /* enum fw_default_action, written at creation */
	__u32 nbuckets;        /* buckets in the table's hash (fixed per generation) */
	__u32 seed;            /* hash seed (random, fixed per generation) */
	__u32 rule_slots;      /* counter slots per row of fw_rule_cnt */
	__u32 cpu_rows;        /* CPUs 0..cpu_rows-1 count in their own row of fw_rule_cnt */
	__u32 flags;           /* FW_CFG_OVERFLOW_ROW */
	__u32 pad;
	struct fw_lenset set[2];
	__u32 d16[FW_D16_WORDS];  /* IPv4 tables: the /16 level of the /24 index; IPv6: unused */
};

/*
 * A CPU numbered cpu_rows or above (brought online after the generation was
 * made) counts in the overflow row (fw_rule_xcnt) with atomic adds; without
 * this flag it does not count rules (only when no CPU can come online:
 * possible == online).
 */
#define FW_CFG_OVERFLOW_ROW 1

/*
 * The rule counters of a generation, two maps (ABI 10):
 *   fw_rule_cnt[row * rule_slots + slot], cpu_rows CPU rows (plain adds, each
 *     by its own CPU), each a struct fw_rule_row: this counter, then the
 *     rule's event budget on that row (fw_events_abi.h);
 *   fw_rule_xcnt[row * rule_slots + slot], struct fw_counter only (no event
 *     budget: a CPU without a row of its own writes no event): the overflow
 *     row if FW_CFG_OVERFLOW_ROW (atomic adds), then the base row, userspace
 *     only: the totals carried over from earlier generations.
 * A slot's total is the sum of its rows in both. The two are created, kept
 * and replaced together.
 */
struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

/* fw_if_cntx key (interfaces whose fw_if_cnt slot another interface owns). */
struct fw_if_key {
	__u32 ifindex;
	__u32 direction;  /* enum fw_direction */
};

/* Verdict totals of one interface and direction on one CPU. */
struct fw_verdict_cnt {
	struct fw_counter pass;
	struct fw_counter drop;
	struct fw_counter would_drop;
};

/* fw_if_cnt[cpu * FW_IF_SLOTS + slot]: owner written to every CPU's copy at attach. */
struct fw_if_slot {
	__u32 ifindex;  /* owner, 0 = free */
	__u32 flags;    /* FW_IFS_FALLBACK */
	__u64 pad;
	struct fw_verdict_cnt c;
};

/* Another interface mapping to this slot counts in fw_if_cntx. */
#define FW_IFS_FALLBACK 1

/*
 * fw_journal[slot]: the desired rule that owns counter slot `slot` (an ARRAY
 * sized with the counters). Userspace only; each element is written whole
 * by one syscall (a batch update), so a crash never leaves half a rule.
 */
struct fw_journal_rule {
	__u64 id;              /* rule id */
	__u64 expire_unix_ms;  /* 0 = never */
	__u8 addr[16];         /* 4 bytes used for IPv4 */
	__u8 prefixlen;
	__u8 family;           /* 4 or 6; 0 = no rule owns this slot */
	__u8 direction;        /* enum fw_direction */
	__u8 action;           /* enum fw_action */
	__u8 mode;             /* enum fw_mode */
	__u8 pad[3];
};

/*
 * fw_meta[0]. Userspace only. abi_version comes first from ABI 3 on, so any
 * later build can read the version of pins it cannot reuse (ABI 2 had a
 * 56-byte value with abi_version at offset 24, after a 16-byte store id).
 */
struct fw_meta {
	__u32 abi_version;     /* FW_ABI_VERSION of the creator */
	__u32 default_action;  /* enum fw_default_action: kept across reopen */
	__u64 revision;
	__u32 max_hash_lens;   /* K: how many lengths a table may put in its hash */
	__u32 dirty;           /* 1 while an apply() is in flight */
	__u64 created_unix_ms;
	__u32 prefixes_per_table;  /* the most prefixes a table may hold (its maps grow up to it) */
	__u32 rule_slots;          /* the most counter slots */
	__u8 store_id[FW_STORE_ID_MAX];  /* UTF-8, NUL-padded */
	__u32 gen;                 /* the generation in force: its maps are pinned under gen-<gen>/ */
	__u32 next_gen;            /* 0, or a complete generation being swapped in (a restart finishes it) */
};

/* fw_lenstat[table]: entries per prefix length. Userspace only. */
struct fw_lenstat {
	__u32 count[FW_LEN_SLOTS];
	__u32 pad;
};

/*
 * Map names (<= 15 chars), pinned by name: the maps of a generation (the
 * hashes, spill hashes, /24 block pools, fw_tblcfg, fw_rule_cnt,
 * fw_rule_xcnt, fw_journal)
 * under gen-<n>/, the others (tries, interface counters, meta, lenstat) at
 * the top of the pin directory.
 */
#define FW_MAP_IN4_TAB   "fw_in4_tab"
#define FW_MAP_IN4_SPILL "fw_in4_spill"
#define FW_MAP_IN4_TRIE  "fw_in4_trie"
#define FW_MAP_IN4_D24   "fw_in4_d24"
#define FW_MAP_IN6_TAB   "fw_in6_tab"
#define FW_MAP_IN6_SPILL "fw_in6_spill"
#define FW_MAP_IN6_TRIE  "fw_in6_trie"
#define FW_MAP_EG4_TAB   "fw_eg4_tab"
#define FW_MAP_EG4_SPILL "fw_eg4_spill"
#define FW_MAP_EG4_TRIE  "fw_eg4_trie"
#define FW_MAP_EG4_D24   "fw_eg4_d24"
#define FW_MAP_EG6_TAB   "fw_eg6_tab"
#define FW_MAP_EG6_SPILL "fw_eg6_spill"
#define FW_MAP_EG6_TRIE  "fw_eg6_trie"
#define FW_MAP_TBLCFG   "fw_tblcfg"
#define FW_MAP_RULE_CNT "fw_rule_cnt"
#define FW_MAP_RULE_XCNT "fw_rule_xcnt"
#define FW_MAP_IF_CNT   "fw_if_cnt"
#define FW_MAP_IF_CNTX  "fw_if_cntx"
#define FW_MAP_JOURNAL  "fw_journal"
#define FW_MAP_META     "fw_meta"
#define FW_MAP_LENSTAT  "fw_lenstat"

/*
 * Program names: each object holds its program with the sampled drop events
 * and one without any event code. At most 15 characters: the kernel keeps
 * that much of a name (bpf_prog_info.name), so what an interface runs reads whole.
 */
#define FW_PROG_XDP      "fw_xdp_ingress"
#define FW_PROG_TC       "fw_tc_egress"
#define FW_PROG_XDP_NOEV "fw_xdp_noev"
#define FW_PROG_TC_NOEV  "fw_tc_noev"

/* Sampled drop events: their structs and maps (ABI 7; the budgets in the counter rows and a node budget: ABI 9). */
#include "fw_events_abi.h"

/* Detection policies: counting per source group (issue 18, ABI 8). */
#include "fw_policy_abi.h"

#endif /* FLEETWALL_ABI_H */
