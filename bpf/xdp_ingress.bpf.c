/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fleetwall XDP ingress filter: decides on the SOURCE address.
 * Allow -> XDP_PASS; deny enforce -> XDP_DROP; deny monitor -> XDP_PASS
 * counted as would-drop; no match -> the node default. Non-IP frames and
 * frames too short for their headers pass.
 *
 * Two programs, one body specialised at compile time (as Cilium specialises
 * its datapath by its config): fw_xdp_ingress with the sampled drop events
 * (issue 17), fw_xdp_noev without any event code (no fw_ev_* call,
 * no hand-over of the counted row). Same maps, verdicts and counters; the
 * agent loads the one its events setting names (node-agent/src/datapath).
 */
#include "fw_decide.h"
#include "fw_events.h"
#include "fw_policy.h"

#ifdef FW_BENCH_VARY
#include "../bench/vary.h"
#endif

static __always_inline int fw_xdp_body(struct xdp_md *ctx, const int events)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct fw_addr a;

#ifdef FW_BENCH_VARY
	fw_bench_vary(data, data_end);
#endif
	if (fw_parse(data, data_end, 1, &a) != 0)
		return XDP_PASS;
	struct fw_counted k;
	__u32 ifindex = ctx->ingress_ifindex;
	int v = fw_decide(&a, 0, ifindex, (__u64)(data_end - data), &k);
	if (events && v >= FW_V_DROP)
		fw_ev_xdp(ctx, v, &k); /* a sampled drop event, within the rule's budget */
	if (v == FW_V_DROP)
		return XDP_DROP;
	const struct fw_policy_set *ps = fw_policy_wants(FW_DIR_INGRESS, a.proto);
	if (ps) /* the detection policies count what the rules passed */
		fw_policy_count(data, data_end, &a, FW_DIR_INGRESS, (__u64)(data_end - data), ps);
	return XDP_PASS;
}

SEC("xdp")
int fw_xdp_ingress(struct xdp_md *ctx)
{
	return fw_xdp_body(ctx, 1);
}

SEC("xdp")
int fw_xdp_noev(struct xdp_md *ctx)
{
	return fw_xdp_body(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
