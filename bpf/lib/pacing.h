/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Departure times for DNS queries: the aaaa and pairs policies, and EDT/mark output. */
#ifndef DNSPACER_PACING_H
#define DNSPACER_PACING_H

#include "common.h"
#include "dns.h"

#define PACE_CAS_TRIES 4

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DNSPACER_MAX_FLOWS);
	__type(key, struct dnspacer_flow_key);
	__type(value, struct dnspacer_flow);
} flows SEC(".maps");

struct pace_decision {
	__u64 departure;      /* == now when the query leaves undelayed */
	__u64 prev_departure;
	__u64 gap;            /* since the previous query of the 5-tuple was seen; ~0 if none */
	__u16 prev_qtype;
	bool  racing;         /* within the window of the previous query */
	bool  left;           /* racing, and the departures stay closer than the gap */
};

static __always_inline bool pace_applies(__u32 action)
{
	return action == DNSPACER_ACTION_PACE || action == DNSPACER_ACTION_MARK;
}

/* Where the policy alone would send this query, given the previous departure. */
static __always_inline __u64 policy_departure(const struct dnspacer_config *cfg, int qtype,
					      __u64 now, __u64 prev, bool have_prev)
{
	if (!pace_applies(cfg->action))
		return now;
	if (cfg->policy == DNSPACER_POLICY_AAAA)
		return qtype == DNS_QTYPE_AAAA ? now + cfg->delay_ns : now;
	/* pairs: only a query leaving within the window after the previous one waits */
	if (have_prev && (__s64)(now - prev) < (__s64)cfg->window_ns) {
		__u64 earliest = prev + cfg->gap_ns;

		return earliest > now ? earliest : now;
	}
	return now;
}

static __always_inline void flow_key_of(const struct packet *pkt, struct dnspacer_flow_key *key)
{
	__builtin_memcpy(key->saddr, pkt->saddr, 16);
	__builtin_memcpy(key->daddr, pkt->daddr, 16);
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->proto = pkt->proto;
	key->_pad[0] = key->_pad[1] = key->_pad[2] = 0;
}

static __always_inline __u64 abs_diff(__u64 a, __u64 b)
{
	return a > b ? a - b : b - a;
}

/* Decides this query's departure. The departure of the latest query per 5-tuple
 * moves only by compare-and-swap, so two CPUs sending on one 5-tuple at once
 * cannot both leave undelayed: the loser re-reads the winner's departure. */
static __always_inline void pace_decide(const struct dnspacer_config *cfg, const struct packet *pkt,
					int qtype, __u64 now, struct pace_decision *d)
{
	struct dnspacer_flow_key key;
	struct dnspacer_flow *flow;
	__u64 prev = 0, prev_seen, departure = now;
	int i;

	d->departure = now;
	d->prev_departure = 0;
	d->gap = ~0ULL;
	d->prev_qtype = 0;
	d->racing = false;
	d->left = false;

	flow_key_of(pkt, &key);
	flow = bpf_map_lookup_elem(&flows, &key);
	if (!flow) {
		struct dnspacer_flow fresh = {
			.departure_ns = policy_departure(cfg, qtype, now, 0, false),
			.seen_ns = now,
			.qtype = qtype,
		};

		if (bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST) == 0) {
			d->departure = fresh.departure_ns;
			return;
		}
		/* Another CPU inserted it first: race it through the CAS below. */
		flow = bpf_map_lookup_elem(&flows, &key);
		if (!flow)
			return;
	}

	prev_seen = *(volatile __u64 *)&flow->seen_ns;
	for (i = 0; i < PACE_CAS_TRIES; i++) {
		prev = flow->departure_ns;
		departure = policy_departure(cfg, qtype, now, prev, true);
		if (__sync_val_compare_and_swap(&flow->departure_ns, prev, departure) == prev)
			break;
	}
	if (i == PACE_CAS_TRIES) {
		/* Lost every round to other CPUs: keep clear of the latest one seen. */
		departure = policy_departure(cfg, qtype, now, flow->departure_ns, true);
		flow->departure_ns = departure;
	}

	d->prev_departure = prev;
	d->prev_qtype = flow->qtype;
	d->gap = now > prev_seen ? now - prev_seen : 0;
	d->racing = d->gap < cfg->window_ns || (__s64)(now - prev) < (__s64)cfg->window_ns;
	d->departure = departure;
	if (d->racing) {
		if (cfg->action == DNSPACER_ACTION_OBSERVE)
			d->left = true;
		else if (pace_applies(cfg->action))
			d->left = abs_diff(departure, prev) < cfg->gap_ns;
	}
	flow->seen_ns = now;
	flow->qtype = qtype;
}

static __always_inline void apply_mark(struct __sk_buff *skb, const struct dnspacer_config *cfg)
{
	skb->mark = (skb->mark & ~cfg->mark_mask) | (cfg->mark_value & cfg->mark_mask);
}

/* Sets the EDT departure time (CLOCK_MONOTONIC, what sch_fq reads). At tc ingress
 * a plain write would be taken as a receive time and cleared on the way; only a
 * DELIVERY_MONO stamp survives. Returns false when the kernel cannot keep it. */
static __always_inline bool apply_departure(struct __sk_buff *skb, __u64 departure, bool ingress)
{
	if (ingress) {
		if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_skb_set_tstamp))
			return false;
		bpf_skb_set_tstamp(skb, departure, BPF_SKB_TSTAMP_DELIVERY_MONO);
		return true;
	}
	/* Never pull a departure time set by someone else earlier. */
	if (skb->tstamp < departure)
		skb->tstamp = departure;
	return true;
}

#endif
