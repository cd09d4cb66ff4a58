/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every fleetwall map, declared identically in each object and pinned by
 * name: the XDP and TC objects share one set of maps. max_entries here are
 * placeholders; the loader sizes the maps before it creates them (the maps
 * of a generation, pinned under gen-<n>/, at the sizes the rules need).
 */
#ifndef FW_MAPS_H
#define FW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "fleetwall_abi.h"

/* The hash of a table: buckets in an ARRAY userspace writes through mmap. */
#define FW_TAB_MAP(name_, bucket_)                     \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY);      \
		__uint(max_entries, 64);               \
		__type(key, __u32);                    \
		__type(value, bucket_);                \
		__uint(map_flags, BPF_F_MMAPABLE);     \
		__uint(pinning, LIBBPF_PIN_BY_NAME);   \
	} name_ SEC(".maps")

/* The blocks of the IPv4 direct /24 index: a u32 per /24 for the /16s that hold entries longer than /16. */
#define FW_D24_MAP(name_)                              \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY);      \
		__uint(max_entries, 16);               \
		__type(key, __u32);                    \
		__type(value, struct fw_d24_block);    \
		__uint(map_flags, BPF_F_MMAPABLE);     \
		__uint(pinning, LIBBPF_PIN_BY_NAME);   \
	} name_ SEC(".maps")

/* The trie and the spill hash: {prefixlen, masked address} -> fw_entry. */
#define FW_PREFIX_MAP(name_, type_, key_)              \
	struct {                                       \
		__uint(type, type_);                   \
		__uint(max_entries, 1024);             \
		__type(key, key_);                     \
		__type(value, struct fw_entry);        \
		__uint(map_flags, BPF_F_NO_PREALLOC);  \
		__uint(pinning, LIBBPF_PIN_BY_NAME);   \
	} name_ SEC(".maps")

FW_TAB_MAP(fw_in4_tab, struct fw_bucket4);
FW_PREFIX_MAP(fw_in4_spill, BPF_MAP_TYPE_HASH, struct fw_key4);
FW_PREFIX_MAP(fw_in4_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key4);
FW_D24_MAP(fw_in4_d24);
FW_TAB_MAP(fw_in6_tab, struct fw_bucket6);
FW_PREFIX_MAP(fw_in6_spill, BPF_MAP_TYPE_HASH, struct fw_key6);
FW_PREFIX_MAP(fw_in6_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key6);
FW_TAB_MAP(fw_eg4_tab, struct fw_bucket4);
FW_PREFIX_MAP(fw_eg4_spill, BPF_MAP_TYPE_HASH, struct fw_key4);
FW_PREFIX_MAP(fw_eg4_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key4);
FW_D24_MAP(fw_eg4_d24);
FW_TAB_MAP(fw_eg6_tab, struct fw_bucket6);
FW_PREFIX_MAP(fw_eg6_spill, BPF_MAP_TYPE_HASH, struct fw_key6);
FW_PREFIX_MAP(fw_eg6_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key6);

/*
 * The table configs, a global of the program (its .bss map, mmapable): read
 * at a constant address, no map lookup per packet. The loader pins it as
 * fw_tblcfg of the generation and binds both objects to it.
 */
struct fw_table_cfg fw_tblcfg[FW_TABLE_COUNT];

/*
 * [cpu * rule_slots + slot], cpu < cpu_rows: one access per counted packet (a
 * per-CPU array costs two); rows in fw_table_cfg. A row is a struct
 * fw_counter followed by the rule's event budget on that row
 * (fw_events_abi.h). The rows no CPU owns are in fw_rule_xcnt.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fw_rule_row);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_rule_cnt SEC(".maps");

/*
 * [row * rule_slots + slot]: the overflow row (if FW_CFG_OVERFLOW_ROW: CPUs
 * numbered cpu_rows or above, atomic adds), then the base row (userspace
 * only: totals carried over from earlier generations). Counters only.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fw_counter);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_rule_xcnt SEC(".maps");

/* [cpu * FW_IF_SLOTS + slot]: the interface totals without a hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fw_if_slot);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_if_cnt SEC(".maps");

/* Interfaces whose fw_if_cnt slot is owned by another interface (no memory until one exists). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct fw_if_key);
	__type(value, struct fw_verdict_cnt);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_if_cntx SEC(".maps");

/* Userspace-only maps, pinned with the rest. */
/* [slot]: the rule that owns each counter slot, sized with fw_rule_cnt. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fw_journal_rule);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_journal SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_TABLE_COUNT);
	__type(key, __u32);
	__type(value, struct fw_lenstat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_lenstat SEC(".maps");

#endif /* FW_MAPS_H */
