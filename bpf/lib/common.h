/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Includes, the parsed-packet context and small helpers every header shares. */
#ifndef DNSPACER_COMMON_H
#define DNSPACER_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "../dnspacer.h"

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Parse outcome: keep going, or stop and let the packet pass untouched. */
enum parse_result {
	PARSE_OK = 0,
	PARSE_PASS,      /* not ours (other protocol, later fragment, ...) */
	PARSE_MALFORMED, /* cut short or inconsistent headers */
};

/* What the parsers learn about one packet. Addresses are IPv4-mapped for IPv4. */
struct packet {
	void *data;
	void *data_end;
	__u32 l4_off;     /* offset of the UDP header from data */
	__u8  family;     /* 4 or 6 */
	__u8  proto;
	__u16 sport;      /* network byte order */
	__u16 dport;      /* network byte order */
	__u8  saddr[16];
	__u8  daddr[16];
};

static __always_inline void set_v4_mapped(__u8 *dst, __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

#endif
