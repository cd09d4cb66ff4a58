/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every fleetwall map, declared identically in each object and pinned by
 * name: the XDP and TC objects share one set of maps. max_entries here are
 * placeholders; the loader sizes the maps before it creates them.
 */
#ifndef FW_MAPS_H
#define FW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "fleetwall_abi.h"

#define FW_PREFIX_MAP(name_, type_, key_)              \
	struct {                                       \
		__uint(type, type_);                   \
		__uint(max_entries, 1024);             \
		__type(key, key_);                     \
		__type(value, struct fw_entry);        \
		__uint(map_flags, BPF_F_NO_PREALLOC);  \
		__uint(pinning, LIBBPF_PIN_BY_NAME);   \
	} name_ SEC(".maps")

FW_PREFIX_MAP(fw_in4_hash, BPF_MAP_TYPE_HASH, struct fw_key4);
FW_PREFIX_MAP(fw_in4_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key4);
FW_PREFIX_MAP(fw_in6_hash, BPF_MAP_TYPE_HASH, struct fw_key6);
FW_PREFIX_MAP(fw_in6_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key6);
FW_PREFIX_MAP(fw_eg4_hash, BPF_MAP_TYPE_HASH, struct fw_key4);
FW_PREFIX_MAP(fw_eg4_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key4);
FW_PREFIX_MAP(fw_eg6_hash, BPF_MAP_TYPE_HASH, struct fw_key6);
FW_PREFIX_MAP(fw_eg6_trie, BPF_MAP_TYPE_LPM_TRIE, struct fw_key6);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_TABLE_COUNT);
	__type(key, __u32);
	__type(value, struct fw_table_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_tblcfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fw_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_rule_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct fw_if_key);
	__type(value, struct fw_verdict_cnt);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_if_cnt SEC(".maps");

/* Userspace-only maps, pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct fw_journal_rule);
	__uint(map_flags, BPF_F_NO_PREALLOC);
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
