/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4, options included. Later fragments pass untouched. */
#ifndef DNSPACER_IPV4_H
#define DNSPACER_IPV4_H

#include <linux/ip.h>
#include "common.h"

#define IPV4_FRAG_OFFSET_MASK 0x1fff

static __always_inline enum parse_result
parse_ipv4(struct packet *pkt, __u32 *off)
{
	struct iphdr *ip = pkt->data + *off;
	__u32 hdr_len;

	if ((void *)(ip + 1) > pkt->data_end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	hdr_len = ip->ihl * 4;  /* 20..60 */
	if ((void *)ip + hdr_len > pkt->data_end)
		return PARSE_MALFORMED;
	/* Only the first fragment carries the transport header. */
	if (ip->frag_off & bpf_htons(IPV4_FRAG_OFFSET_MASK))
		return PARSE_PASS;

	pkt->family = 4;
	pkt->proto = ip->protocol;
	set_v4_mapped(pkt->saddr, ip->saddr);
	set_v4_mapped(pkt->daddr, ip->daddr);
	*off += hdr_len;
	return PARSE_OK;
}

#endif
