/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Is this UDP packet a DNS query we care about, and of which QTYPE? */
#ifndef DNSPACER_DNS_H
#define DNSPACER_DNS_H

#include "common.h"

#define DNS_HDR_LEN      12
#define DNS_MAX_NAME     255  /* wire length, label lengths and the root byte included */
#define DNS_MAX_LABEL    63
#define DNS_MAX_LABELS   128  /* 127 one-byte labels + root fill 255 bytes */
#define DNS_MAX_L4_OFF   4096 /* deeper than this (IPv6 extension headers) passes untouched */

#define DNS_FLAG_QR      0x8000
#define DNS_OPCODE_MASK  0x7800

#define DNS_QTYPE_A      1
#define DNS_QTYPE_AAAA   28

/* dns_question() results below zero */
#define DNS_NOT_QUERY    -1  /* a response, another opcode, no question */
#define DNS_MALFORMED    -2  /* cut short, oversized name or label, pointer in the question */

struct dnshdr {
	__be16 id;
	__be16 flags;
	__be16 qdcount;
	__be16 ancount;
	__be16 nscount;
	__be16 arcount;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DNSPACER_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dnspacer_prefix_key);
	__type(value, __u8);
} prefixes SEC(".maps");

static __always_inline bool dns_port(__u16 dport_be)
{
	__u32 port = bpf_ntohs(dport_be);
	__u8 *on = bpf_map_lookup_elem(&ports, &port);

	return on && *on;
}

static __always_inline bool dns_destination(const struct packet *pkt)
{
	struct dnspacer_prefix_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, pkt->daddr, 16);
	return bpf_map_lookup_elem(&prefixes, &key) != NULL;
}

/* Returns the QTYPE of the first question of a DNS query, or DNS_NOT_QUERY /
 * DNS_MALFORMED. A global function on purpose: the verifier checks it once on its
 * own, so the name walk's many exits do not multiply the states of the caller. */
__noinline int dns_question(struct __sk_buff *skb, __u32 l4_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct dnshdr *dns;
	__u32 name_off, name_len = 0;
	__u8 *p;
	int i;

	if (l4_off > DNS_MAX_L4_OFF)
		return DNS_NOT_QUERY;
	dns = data + l4_off + 8;
	if ((void *)(dns + 1) > data_end)
		return DNS_MALFORMED;
	if (dns->flags & bpf_htons(DNS_FLAG_QR | DNS_OPCODE_MASK))
		return DNS_NOT_QUERY;
	if (dns->qdcount == 0)
		return DNS_NOT_QUERY;
	name_off = l4_off + 8 + DNS_HDR_LEN;

	for (i = 0; i < DNS_MAX_LABELS; i++) {
		__u8 len;

		p = data + name_off + name_len;
		if ((void *)(p + 1) > data_end)
			return DNS_MALFORMED;
		len = *p;
		if (len == 0) {
			name_len += 1;
			goto qtype;
		}
		/* 0b11: compression pointer, 0b01/0b10: extended label types */
		if (len > DNS_MAX_LABEL)
			return DNS_MALFORMED;
		name_len += len + 1;
		if (name_len >= DNS_MAX_NAME)  /* the root byte must still fit */
			return DNS_MALFORMED;
	}
	return DNS_MALFORMED;

qtype:
	p = data + name_off + name_len;
	if ((void *)(p + 4) > data_end)
		return DNS_MALFORMED;
	return ((int)p[0] << 8) | p[1];
}

#endif
