/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Departure times for DNS queries: the aaaa and pairs policies, and EDT/mark output. */
#ifndef DNSPACER_PACING_H
#define DNSPACER_PACING_H

#include "common.h"
#include "dns.h"

#define PACE_CAS_TRIES 4
#define DEPARTURE_BITS 48
#define DEPARTURE_MASK ((1ULL << DEPARTURE_BITS) - 1)

_Static_assert(DNSPACER_MAX_FLOWS == 65536, "flows is indexed by 16 hash bits");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DNSPACER_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct dnspacer_flow);
} flows SEC(".maps");

struct pace_decision {
	__u64 departure;      /* == now when the query leaves undelayed */
	__u64 gap;            /* since the previous packet of the 5-tuple; ~0 if none */
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

/* A 48-bit departure back to full width: the one nearest to now (±39 hours). */
static __always_inline __u64 departure_unpack(__u64 word, __u64 now)
{
	__u64 diff = ((word & DEPARTURE_MASK) - now) & DEPARTURE_MASK;

	if (diff & (1ULL << (DEPARTURE_BITS - 1)))
		return now - ((~diff + 1) & DEPARTURE_MASK);
	return now + diff;
}

static __always_inline __u64 departure_pack(__u64 tag, __u64 departure)
{
	return (tag << DEPARTURE_BITS) | (departure & DEPARTURE_MASK);
}

static __always_inline __u64 abs_diff(__u64 a, __u64 b)
{
	return a > b ? a - b : b - a;
}

/* Decides this query's departure. The latest departure per 5-tuple moves only by
 * compare-and-swap of one word that also holds the tuple's tag, so two CPUs on
 * one 5-tuple cannot both leave undelayed: the loser re-reads the winner's. A slot
 * taken over from another tuple just starts afresh. */
static __always_inline void pace_decide(const struct dnspacer_config *cfg, __u64 h, int qtype,
					__u64 now, __u64 gap, struct pace_decision *d)
{
	__u32 index = tuple_index(h);
	__u64 tag = tuple_tag(h);
	struct dnspacer_flow *flow;
	__u64 old = 0, prev = 0, departure = now;
	bool have_prev = false;
	int i;

	d->departure = now;
	d->gap = gap;
	d->prev_qtype = 0;
	d->racing = gap < cfg->window_ns;
	d->left = false;

	flow = bpf_map_lookup_elem(&flows, &index);
	if (!flow)
		return;

	for (i = 0; i < PACE_CAS_TRIES; i++) {
		old = *(volatile __u64 *)&flow->departure;
		have_prev = old != 0 && (old >> DEPARTURE_BITS) == tag;
		prev = have_prev ? departure_unpack(old, now) : 0;
		departure = policy_departure(cfg, qtype, now, prev, have_prev);
		if (__sync_val_compare_and_swap(&flow->departure, old, departure_pack(tag, departure)) == old)
			break;
	}
	if (i == PACE_CAS_TRIES) {
		/* Lost every round to other CPUs: keep clear of the latest one seen. */
		old = *(volatile __u64 *)&flow->departure;
		have_prev = (old >> DEPARTURE_BITS) == tag;
		prev = have_prev ? departure_unpack(old, now) : 0;
		departure = policy_departure(cfg, qtype, now, prev, have_prev);
		flow->departure = departure_pack(tag, departure);
	}

	if (have_prev) {
		d->prev_qtype = flow->qtype;
		/* a previous query still waiting to leave, or gone within W, races this one */
		if ((__s64)(now - prev) < (__s64)cfg->window_ns)
			d->racing = true;
	}
	flow->qtype = qtype;
	d->departure = departure;
	if (d->racing) {
		if (cfg->action == DNSPACER_ACTION_OBSERVE)
			d->left = true;
		else if (pace_applies(cfg->action))
			d->left = !have_prev || abs_diff(departure, prev) < cfg->gap_ns;
	}
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
