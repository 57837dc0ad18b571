/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters, one set per attachment slot. */
#ifndef DNSPACER_METRICS_H
#define DNSPACER_METRICS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNSPACER_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct dnspacer_counters);
} counters SEC(".maps");

static __always_inline struct dnspacer_counters *counters_for(__u32 slot)
{
	if (slot >= DNSPACER_MAX_SLOTS)
		slot = 0;
	return bpf_map_lookup_elem(&counters, &slot);
}

static __always_inline void count_query(struct dnspacer_counters *c, int qtype)
{
	if (qtype == DNS_QTYPE_A)
		c->queries_a++;
	else if (qtype == DNS_QTYPE_AAAA)
		c->queries_aaaa++;
	else
		c->queries_other++;
}

#endif
