// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The baseline for benchmarks and the load probe: accepts every packet. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
