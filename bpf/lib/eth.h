/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ethernet and up to two VLAN tags. */
#ifndef DNSPACER_ETH_H
#define DNSPACER_ETH_H

#include "common.h"

#define ETH_MAX_VLAN_TAGS 2

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

/* Returns the L3 protocol (network order) and sets *off past the L2 header. */
static __always_inline enum parse_result
parse_eth(const struct packet *pkt, __u32 *off, __be16 *l3_proto)
{
	struct ethhdr *eth = pkt->data;
	__be16 proto;
	__u32 pos = sizeof(*eth);
	int i;

	if ((void *)(eth + 1) > pkt->data_end)
		return PARSE_MALFORMED;
	proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < ETH_MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		tag = pkt->data + pos;
		if ((void *)(tag + 1) > pkt->data_end)
			return PARSE_MALFORMED;
		proto = tag->proto;
		pos += sizeof(*tag);
	}
	*off = pos;
	*l3_proto = proto;
	return PARSE_OK;
}

#endif
