/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* UDP ports, and the cheap any-port detector of racing pairs. */
#ifndef DNSPACER_UDP_H
#define DNSPACER_UDP_H

#include <linux/udp.h>
#include "common.h"

#define RECENT_TIME_BITS 48
#define RECENT_TIME_MASK ((1ULL << RECENT_TIME_BITS) - 1)

/* Direct-mapped table of the last packet per 5-tuple hash: one atomic exchange per
 * packet, no hash-map lookup. A word is (16-bit tag << 48) | (48 bits of ns). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DNSPACER_RECENT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} recent SEC(".maps");

static __always_inline enum parse_result
parse_udp(struct packet *pkt, __u32 off)
{
	struct udphdr *udp = pkt->data + off;

	if (off > 0xffff)
		return PARSE_MALFORMED;
	if ((void *)(udp + 1) > pkt->data_end)
		return PARSE_MALFORMED;
	pkt->sport = udp->source;
	pkt->dport = udp->dest;
	pkt->l4_off = off;
	return PARSE_OK;
}

/* MurmurHash3's 64-bit finalizer: every input bit reaches every output bit, which
 * the index, tag and sample bits below need (ports differ only in a few bits). */
static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static __always_inline __u64 tuple_hash(const struct packet *pkt)
{
	__u64 a, b, c, d, ports;

	__builtin_memcpy(&a, pkt->saddr, 8);
	__builtin_memcpy(&b, pkt->saddr + 8, 8);
	__builtin_memcpy(&c, pkt->daddr, 8);
	__builtin_memcpy(&d, pkt->daddr + 8, 8);
	ports = ((__u64)pkt->sport << 16) | pkt->dport | ((__u64)pkt->proto << 32);
	return mix64((a ^ mix64(b)) + (c ^ (d * 0x9e3779b97f4a7c15ULL)) + ports);
}

static __always_inline __u32 tuple_index(__u64 h)
{
	return h & 0xffff;
}

static __always_inline __u64 tuple_tag(__u64 h)
{
	return (h >> 32) & 0xffff;
}

/* Reading the clock is the dearest step for a non-DNS packet (tens of ns in a VM),
 * so the any-port detector times only 1 in 2^shift tuples, chosen by hash bits
 * that neither index nor tag use. */
static __always_inline __u32 sample_shift(__u32 configured)
{
	return configured > 15 ? 15 : configured;
}

static __always_inline bool tuple_sampled(__u64 h, __u32 shift)
{
	if (shift == 0)
		return true;
	return ((h >> 48) & ((1U << shift) - 1)) == 0;
}

/* Swaps in this packet's time; returns the gap to the previous packet of the same
 * tuple, or ~0 when there was none (or another tuple had the slot). Two CPUs at
 * once cannot both miss each other: the exchange orders them. */
static __always_inline __u64 udp_gap_to_previous(__u64 h, __u64 now)
{
	__u32 index = tuple_index(h);
	__u64 tag = tuple_tag(h);
	__u64 word = (tag << RECENT_TIME_BITS) | (now & RECENT_TIME_MASK);
	__u64 *slot, old;

	slot = bpf_map_lookup_elem(&recent, &index);
	if (!slot)
		return ~0ULL;
	old = __sync_lock_test_and_set(slot, word);
	if (old == 0 || (old >> RECENT_TIME_BITS) != tag)
		return ~0ULL;
	return (now - old) & RECENT_TIME_MASK;
}

#endif
