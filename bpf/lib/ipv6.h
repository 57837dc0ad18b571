/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 with hop-by-hop, routing, destination-options and fragment headers.
 * Any other extension header passes untouched; so does a later fragment. */
#ifndef DNSPACER_IPV6_H
#define DNSPACER_IPV6_H

#include <linux/ipv6.h>
#include "common.h"

#define IPV6_MAX_EXT_HEADERS 4

#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP      0
#define NEXTHDR_ROUTING  43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST     60
#endif

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;   /* in 8-byte units, not counting the first 8 */
};

struct ipv6_frag {
	__u8   nexthdr;
	__u8   reserved;
	__be16 frag_off; /* offset in the upper 13 bits */
	__be32 id;
};

static __always_inline enum parse_result
parse_ipv6(struct packet *pkt, __u32 *off)
{
	struct ipv6hdr *ip6 = pkt->data + *off;
	__u32 pos;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > pkt->data_end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
	pkt->family = 6;
	next = ip6->nexthdr;
	pos = *off + sizeof(*ip6);

#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
			struct ipv6_ext *ext = pkt->data + pos;

			if ((void *)(ext + 1) > pkt->data_end)
				return PARSE_MALFORMED;
			next = ext->nexthdr;
			pos += ((__u32)ext->hdrlen + 1) * 8;  /* at most 2048 per header */
		} else if (next == NEXTHDR_FRAGMENT) {
			struct ipv6_frag *frag = pkt->data + pos;

			if ((void *)(frag + 1) > pkt->data_end)
				return PARSE_MALFORMED;
			if (frag->frag_off & bpf_htons(0xfff8))
				return PARSE_PASS;
			next = frag->nexthdr;
			pos += sizeof(*frag);
		} else {
			break;
		}
	}
	pkt->proto = next;
	*off = pos;
	return PARSE_OK;
}

#endif
