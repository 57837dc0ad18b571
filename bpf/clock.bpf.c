// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark baseline: an empty tc program plus one clock read, to show how much of
 * the classifier's cost is bpf_ktime_get_ns() on a given machine. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

volatile __u64 sink;

SEC("tc")
int clock_read(struct __sk_buff *skb)
{
	sink = bpf_ktime_get_ns();
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
