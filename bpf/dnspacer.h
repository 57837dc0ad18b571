/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structs and constants shared by the classifier and user space.
 * User space (src/datapath/layout.ts) mirrors these byte for byte; keep both
 * in step and keep every field naturally aligned with explicit padding.
 */
#ifndef DNSPACER_H
#define DNSPACER_H

#include <linux/types.h>

#define DNSPACER_MAX_SLOTS     4096   /* attachments that keep their own counters */
#define DNSPACER_MAX_FLOWS     65536  /* DNS 5-tuple slots for pair pacing (direct-mapped) */
#define DNSPACER_RECENT_SLOTS  65536  /* direct-mapped table for any-port UDP pairs */
#define DNSPACER_MAX_PREFIXES  256
#define DNSPACER_RINGBUF_BYTES (256 * 1024)

/* Maps user space addresses by name:
 *   config    ARRAY[1]        struct dnspacer_config
 *   instance  ARRAY[1]        struct dnspacer_instance (not shared between copies)
 *   ports     ARRAY[65536]    __u8, 1 if the host-order port is a DNS port
 *   prefixes  LPM_TRIE        struct dnspacer_prefix_key -> __u8
 *   counters  PERCPU_ARRAY[DNSPACER_MAX_SLOTS] struct dnspacer_counters
 *   flows     ARRAY[DNSPACER_MAX_FLOWS] struct dnspacer_flow, indexed by 5-tuple hash
 *   recent    ARRAY[DNSPACER_RECENT_SLOTS] __u64 (tag << 48 | seen_ns & 2^48-1)
 * Both tables are direct-mapped by the same 5-tuple hash (low 16 bits index, a
 * 16-bit tag above): an inlined array lookup and one atomic per packet, where a
 * hash map would cost a full key hash and compare.
 *   events    RINGBUF         struct dnspacer_event
 *   trace_budget PERCPU_ARRAY[1] rate-limit state
 */

/* config.policy */
enum dnspacer_policy {
	DNSPACER_POLICY_AAAA  = 0, /* every AAAA query departs at now + delay */
	DNSPACER_POLICY_PAIRS = 1, /* a query racing the previous one on its 5-tuple departs >= prev + gap */
};

/* config.action: what happens to a packet the policy selects */
enum dnspacer_action {
	DNSPACER_ACTION_OBSERVE   = 0, /* count and trace only */
	DNSPACER_ACTION_PACE      = 1, /* EDT departure time in skb->tstamp (+ mark) */
	DNSPACER_ACTION_MARK      = 2, /* mark only; a prio/fw/netem qdisc delays it */
	DNSPACER_ACTION_SERIALIZE = 3, /* every DNS query goes through one IFB */
};

/* instance.serialize_via */
enum dnspacer_serialize_via {
	DNSPACER_SERIALIZE_REDIRECT = 0, /* bpf_redirect(ifb) from direct-action */
	DNSPACER_SERIALIZE_CLASSIFY = 1, /* return -1 (match) so a tc mirred action redirects */
};

/* Global, live-tunable config: map "config", one entry. */
struct dnspacer_config {
	__u32 enabled;          /* 0: the classifier returns at once, counting nothing */
	__u32 policy;           /* enum dnspacer_policy */
	__u32 action;           /* enum dnspacer_action */
	__u32 match_prefixes;   /* 1: a query must also be toward a "prefixes" entry */
	__u64 delay_ns;         /* D: aaaa policy */
	__u64 window_ns;        /* W: two packets of one 5-tuple closer than this race */
	__u64 gap_ns;           /* G: pairs policy spacing */
	__u32 mark_value;       /* set under mark_mask on every paced/marked packet */
	__u32 mark_mask;
	__u32 trace_per_sec;    /* ring-buffer events per second per CPU; 0 = none */
	__u32 udp_sample_shift; /* time 1 in 2^n non-DNS UDP 5-tuples for racing_udp_pairs (0: all) */
};

/* Per-attachment config: map "instance", private to each loaded copy. */
struct dnspacer_instance {
	__u32 slot;             /* index into the "counters" map */
	__u32 ingress;          /* 1 at tc ingress: tstamp needs DELIVERY_MONO */
	__u32 redirect_ifindex; /* serialize: the IFB */
	__u32 serialize_via;    /* enum dnspacer_serialize_via */
};

/* Per-CPU, per-slot counters: map "counters" (PERCPU_ARRAY, DNSPACER_MAX_SLOTS). */
struct dnspacer_counters {
	__u64 packets;          /* every packet the classifier saw while enabled */
	__u64 udp;              /* parsed UDP packets (IPv4 or IPv6, first fragments) */
	__u64 queries_a;
	__u64 queries_aaaa;
	__u64 queries_other;
	__u64 paced;            /* packets whose tstamp or mark this program set */
	__u64 delay_ns;         /* sum of departure - now over paced packets */
	__u64 racing_udp_pairs; /* any port: a packet within W of the previous one of its 5-tuple;
				 * exact for DNS queries, estimated (each sampled pair adds 2^shift) for the rest */
	__u64 racing_dns_pairs; /* the same among DNS queries */
	__u64 racing_left;      /* racing DNS pairs whose departures stay closer than G */
	__u64 malformed;        /* headers cut short or not parseable */
	__u64 serialized;       /* DNS queries sent through the IFB */
	__u64 tstamp_unsupported; /* wanted to pace at ingress, kernel lacks bpf_skb_set_tstamp */
	__u64 trace_dropped;    /* events rate-limited or ring buffer full */
};

/* Key of the "prefixes" LPM trie: IPv4 as ::ffff:a.b.c.d, prefixlen + 96. */
struct dnspacer_prefix_key {
	__u32 prefixlen;
	__u8  addr[16];
};

/* Value of the "flows" array: the latest departure given on a DNS 5-tuple.
 * departure = tag << 48 | (departure_ns & 2^48-1), moved only by compare-and-swap,
 * so two CPUs on one 5-tuple cannot both take the same departure. */
struct dnspacer_flow {
	__u64 departure;
	__u16 qtype;            /* of the latest query; for trace events only */
	__u16 _pad[3];
};

/* trace event action */
enum dnspacer_trace_action {
	DNSPACER_TRACE_NONE      = 0, /* observed or not selected by the policy */
	DNSPACER_TRACE_PACED     = 1,
	DNSPACER_TRACE_MARKED    = 2,
	DNSPACER_TRACE_SERIALIZED = 3,
};

/* Ring buffer "events": one per racing pair, rate-limited. */
struct dnspacer_event {
	__u64 ts_ns;            /* bpf_ktime_get_ns() of the second packet */
	__u64 gap_ns;           /* between the two packets as seen */
	__u64 delay_ns;         /* added to the second packet (0 if none) */
	__u8  saddr[16];
	__u8  daddr[16];
	__u16 sport;            /* host byte order */
	__u16 dport;            /* host byte order */
	__u16 qtype_prev;       /* 0 when not DNS */
	__u16 qtype;            /* 0 when not DNS */
	__u32 slot;
	__u8  family;           /* 4 or 6 */
	__u8  is_dns;
	__u8  action;           /* enum dnspacer_trace_action */
	__u8  _pad;
};

#endif
