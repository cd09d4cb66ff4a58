/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fleetwall TC egress filter: decides on the DESTINATION address. Attached
 * with a TCX link (BPF_TCX_EGRESS) or, on older kernels, as a clsact
 * direct-action classifier. Pass returns TC_ACT_UNSPEC (TCX_NEXT) so
 * programs after ours still run; drop returns TC_ACT_SHOT (TCX_DROP).
 *
 * Two programs, one body specialised at compile time: fw_tc_egress with the
 * sampled drop events, fw_tc_noev without any event code (see
 * xdp_ingress.bpf.c).
 */
#include <linux/pkt_cls.h>
#include "fw_decide.h"
#include "fw_events.h"
#include "fw_policy.h"

/* Ethernet + one VLAN tag + IPv6 header. */
#define FW_MAX_HDR (14 + 4 + 40)

static __always_inline int fw_tc_body(struct __sk_buff *skb, const int events)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct fw_addr a;
	int r = fw_parse(data, data_end, 0, &a);

	if (r < 0 && skb->len > (__u32)(data_end - data)) {
		/* Headers not in the linear area: pull them and parse again. */
		__u32 want = skb->len < FW_MAX_HDR ? skb->len : FW_MAX_HDR;
		if (bpf_skb_pull_data(skb, want) == 0) {
			data = (void *)(long)skb->data;
			data_end = (void *)(long)skb->data_end;
			r = fw_parse(data, data_end, 0, &a);
		}
	}
	if (r != 0)
		return TC_ACT_UNSPEC;
	struct fw_counted k;
	__u32 ifindex = skb->ifindex, len = skb->len;
	int v = fw_decide(&a, 1, ifindex, len, &k);
	if (events && v >= FW_V_DROP)
		fw_ev_tc(skb, v, &k); /* a sampled drop event, within the rule's budget */
	if (v == FW_V_DROP)
		return TC_ACT_SHOT;
	const struct fw_policy_set *ps = fw_policy_wants(FW_DIR_EGRESS, a.proto);
	if (ps) /* the detection policies count what the rules passed */
		fw_policy_count((void *)(long)skb->data, (void *)(long)skb->data_end, &a, FW_DIR_EGRESS, skb->len, ps);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int fw_tc_egress(struct __sk_buff *skb)
{
	return fw_tc_body(skb, 1);
}

SEC("tc")
int fw_tc_noev(struct __sk_buff *skb)
{
	return fw_tc_body(skb, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
