/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* One ring-buffer event per racing pair, rate-limited per CPU. */
#ifndef DNSPACER_TRACE_H
#define DNSPACER_TRACE_H

#include "common.h"

#define NSEC_PER_SEC 1000000000ULL

struct trace_budget {
	__u64 window_start;
	__u64 sent;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DNSPACER_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_budget);
} trace_budget SEC(".maps");

/* At most per_sec events per CPU in any one-second window. */
static __always_inline bool trace_allowed(__u32 per_sec, __u64 now)
{
	__u32 zero = 0;
	struct trace_budget *b;

	if (per_sec == 0)
		return false;
	b = bpf_map_lookup_elem(&trace_budget, &zero);
	if (!b)
		return false;
	if (now - b->window_start >= NSEC_PER_SEC) {
		b->window_start = now;
		b->sent = 0;
	}
	if (b->sent >= per_sec)
		return false;
	b->sent++;
	return true;
}

struct trace_pair {
	__u64 gap_ns;
	__u64 delay_ns;
	__u16 qtype_prev;
	__u16 qtype;
	__u8  is_dns;
	__u8  action;
};

static __always_inline void trace_racing_pair(const struct dnspacer_config *cfg,
					      struct dnspacer_counters *c,
					      const struct packet *pkt, __u32 slot,
					      __u64 now, const struct trace_pair *pair)
{
	struct dnspacer_event *e;

	if (cfg->trace_per_sec == 0)  /* tracing off: nothing is dropped */
		return;
	if (!trace_allowed(cfg->trace_per_sec, now)) {
		c->trace_dropped++;
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		c->trace_dropped++;
		return;
	}
	e->ts_ns = now;
	e->gap_ns = pair->gap_ns;
	e->delay_ns = pair->delay_ns;
	__builtin_memcpy(e->saddr, pkt->saddr, 16);
	__builtin_memcpy(e->daddr, pkt->daddr, 16);
	e->sport = bpf_ntohs(pkt->sport);
	e->dport = bpf_ntohs(pkt->dport);
	e->qtype_prev = pair->qtype_prev;
	e->qtype = pair->qtype;
	e->slot = slot;
	e->family = pkt->family;
	e->is_dns = pair->is_dns;
	e->action = pair->action;
	e->_pad = 0;
	bpf_ringbuf_submit(e, 0);
}

#endif
