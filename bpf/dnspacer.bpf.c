// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* dnspacer's tc classifier (direct-action).
 *
 * Recognises DNS queries toward the configured ports (and prefixes), detects racing
 * pairs (two packets of one 5-tuple within the window) and, by config:
 *   observe   - counts and traces only;
 *   pace      - gives the query an EDT departure time (skb->tstamp, read by sch_fq);
 *   mark      - sets a mark for a prio/fw/netem qdisc to delay;
 *   serialize - sends every DNS query through one IFB, which re-injects them one at
 *               a time before conntrack.
 * It never drops a packet nor changes its bytes: only tstamp and mark change.
 */
#include "lib/common.h"
#include "lib/eth.h"
#include "lib/ipv4.h"
#include "lib/ipv6.h"
#include "lib/udp.h"
#include "lib/dns.h"
#include "lib/metrics.h"
#include "lib/trace.h"
#include "lib/pacing.h"

/* Small datagrams a socket built in pieces are made linear once, so the DNS
 * question can be read with direct packet access. Bytes stay as they are. */
#define PULL_MAX_LEN 1024

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dnspacer_config);
} config SEC(".maps");

/* Private to each loaded copy of the program: which attachment this is. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dnspacer_instance);
} instance SEC(".maps");

static __always_inline enum parse_result parse_to_udp(struct __sk_buff *skb, struct packet *pkt)
{
	enum parse_result r;
	__be16 l3;
	__u32 off;

	pkt->data = (void *)(long)skb->data;
	pkt->data_end = (void *)(long)skb->data_end;
	r = parse_eth(pkt, &off, &l3);
	if (r != PARSE_OK)
		return r;
	if (l3 == bpf_htons(ETH_P_IP))
		r = parse_ipv4(pkt, &off);
	else if (l3 == bpf_htons(ETH_P_IPV6))
		r = parse_ipv6(pkt, &off);
	else
		return PARSE_PASS;
	if (r != PARSE_OK)
		return r;
	if (pkt->proto != IPPROTO_UDP)
		return PARSE_PASS;
	return parse_udp(pkt, off);
}

static __always_inline __u8 trace_action_of(__u32 action, bool delayed)
{
	if (action == DNSPACER_ACTION_SERIALIZE)
		return DNSPACER_TRACE_SERIALIZED;
	if (!delayed)
		return DNSPACER_TRACE_NONE;
	return action == DNSPACER_ACTION_PACE ? DNSPACER_TRACE_PACED : DNSPACER_TRACE_MARKED;
}

SEC("tc")
int dnspacer_classify(struct __sk_buff *skb)
{
	const struct dnspacer_instance *inst;
	const struct dnspacer_config *cfg;
	struct dnspacer_counters *c;
	struct pace_decision d;
	struct packet pkt = {};
	enum parse_result r;
	__u32 zero = 0, slot = 0;
	__u64 now, udp_gap, h;
	bool delayed = false;
	int qtype;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->enabled)
		return TC_ACT_OK;
	inst = bpf_map_lookup_elem(&instance, &zero);
	if (inst)
		slot = inst->slot;
	c = counters_for(slot);
	if (!c)
		return TC_ACT_OK;
	c->packets++;

	if (skb->len <= PULL_MAX_LEN && skb->data_end - skb->data < skb->len)
		bpf_skb_pull_data(skb, skb->len);

	r = parse_to_udp(skb, &pkt);
	if (r != PARSE_OK) {
		if (r == PARSE_MALFORMED)
			c->malformed++;
		return TC_ACT_OK;
	}
	c->udp++;
	h = tuple_hash(&pkt);

	qtype = DNS_NOT_QUERY;
	if (dns_port(pkt.dport) && (!cfg->match_prefixes || dns_destination(&pkt))) {
		qtype = dns_question(skb, pkt.l4_off);
		if (qtype == DNS_MALFORMED)
			c->malformed++;
	}
	if (qtype < 0) {
		/* Any other UDP: racing pairs are counted on a sample of tuples, each
		 * sampled pair standing for 2^shift, so the clock is read rarely. */
		if (!tuple_sampled(h, sample_shift(cfg->udp_sample_shift)))
			return TC_ACT_OK;
		now = bpf_ktime_get_ns();
		udp_gap = udp_gap_to_previous(h, now);
		if (udp_gap < cfg->window_ns) {
			struct trace_pair pair = { .gap_ns = udp_gap };

			c->racing_udp_pairs += 1ULL << sample_shift(cfg->udp_sample_shift);
			trace_racing_pair(cfg, c, &pkt, slot, now, &pair);
		}
		return TC_ACT_OK;
	}

	now = bpf_ktime_get_ns();
	udp_gap = udp_gap_to_previous(h, now);
	if (udp_gap < cfg->window_ns)
		c->racing_udp_pairs++;
	count_query(c, qtype);

	pace_decide(cfg, h, qtype, now, udp_gap, &d);
	if (d.racing)
		c->racing_dns_pairs++;
	if (d.left)
		c->racing_left++;

	if (cfg->action == DNSPACER_ACTION_SERIALIZE) {
		c->serialized++;
	} else if (d.departure > now) {
		if (cfg->action == DNSPACER_ACTION_PACE) {
			if (apply_departure(skb, d.departure, inst && inst->ingress)) {
				apply_mark(skb, cfg);
				c->paced++;
				c->delay_ns += d.departure - now;
				delayed = true;
			} else {
				c->tstamp_unsupported++;
			}
		} else if (cfg->action == DNSPACER_ACTION_MARK) {
			apply_mark(skb, cfg);
			c->paced++;
			delayed = true;
		}
	}

	if (d.racing) {
		struct trace_pair pair = {
			.gap_ns = d.gap,
			.delay_ns = delayed ? d.departure - now : 0,
			.qtype_prev = d.prev_qtype,
			.qtype = qtype,
			.is_dns = 1,
			.action = trace_action_of(cfg->action, delayed),
		};

		trace_racing_pair(cfg, c, &pkt, slot, now, &pair);
	}

	/* At host placement DNS queries go through the IFB: to be serialized, or (pace)
	 * to wait in the fq on the IFB for the departure time set above. */
	if ((cfg->action == DNSPACER_ACTION_SERIALIZE || (cfg->action == DNSPACER_ACTION_PACE && inst && inst->ingress)) && inst) {
		if (inst->serialize_via == DNSPACER_SERIALIZE_CLASSIFY)
			return TC_ACT_UNSPEC; /* "matched": the filter's mirred action redirects */
		if (inst->redirect_ifindex)
			return bpf_redirect(inst->redirect_ifindex, 0);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
