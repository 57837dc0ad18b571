// Prometheus metrics: the classifier's counters per attachment, the node's conntrack
// statistics (the race's own evidence), the chosen mode and the probe's findings.
// Values are pulled at scrape time from sources the agent registers, so a scrape
// always shows the kernel's current numbers and nothing is cached twice.
import { Counter, Gauge, Registry } from 'prom-client';

/** Sum over CPUs of struct dnspacer_counters, field names in camelCase. */
export interface ClassifierCounters {
  packets: bigint;
  udp: bigint;
  queriesA: bigint;
  queriesAaaa: bigint;
  queriesOther: bigint;
  paced: bigint;
  delayNs: bigint;
  racingUdpPairs: bigint;
  racingDnsPairs: bigint;
  racingLeft: bigint;
  malformed: bigint;
  serialized: bigint;
  tstampUnsupported: bigint;
  traceDropped: bigint;
}

export interface AttachmentLabels {
  interface: string;
  direction: 'ingress' | 'egress';
  /** netns path, "" for the host's own */
  netns: string;
  /** Kubernetes namespace/pod where known */
  namespace: string;
  pod: string;
}

export interface ConntrackSample {
  /** netns path, "" for the host's own */
  netns: string;
  clashResolve: number | null;
  insertFailed: number;
  drop: number;
  earlyDrop: number;
}

/** The serializing IFB's root qdisc: what it dropped because it was full, what waits in it. */
export interface SerializeQueue {
  interface: string;
  dropped: number;
  queued: number;
}

export interface MetricsSources {
  attachments(): { labels: AttachmentLabels; counters: ClassifierCounters }[];
  conntrack(): Promise<ConntrackSample[]>;
  info(): { mode: string; placement: string; policy: string; version: string; kernel: string };
  probe(): Record<string, boolean>;
  /** the serializing IFB's queue, under serialize and edt at host placement; null otherwise */
  serializeQueue(): SerializeQueue | null;
}

const ATTACHMENT_LABELS = ['interface', 'direction', 'netns', 'namespace', 'pod'] as const;

/** [metric name, help, field, scale]: scale turns ns into seconds. */
const CLASSIFIER_COUNTERS: [string, string, keyof ClassifierCounters, number][] = [
  ['dnspacer_packets_total', 'Packets the classifier saw.', 'packets', 1],
  ['dnspacer_udp_packets_total', 'UDP packets (first fragments) the classifier parsed.', 'udp', 1],
  ['dnspacer_paced_packets_total', 'DNS queries given a departure time or a mark.', 'paced', 1],
  ['dnspacer_added_delay_seconds_total', 'Sum of the delay added to paced queries.', 'delayNs', 1e-9],
  ['dnspacer_racing_udp_pairs_total', 'UDP packets (any port) sent within the race window after the previous one of their 5-tuple.', 'racingUdpPairs', 1],
  ['dnspacer_racing_dns_pairs_total', 'DNS queries sent within the race window after the previous query of their 5-tuple.', 'racingDnsPairs', 1],
  ['dnspacer_racing_pairs_left_total', 'Racing DNS pairs whose departures stayed closer than the gap (not mitigated).', 'racingLeft', 1],
  ['dnspacer_malformed_packets_total', 'Packets whose headers were cut short or could not be parsed.', 'malformed', 1],
  ['dnspacer_serialized_queries_total', 'DNS queries sent through the serializing IFB.', 'serialized', 1],
  ['dnspacer_tstamp_unsupported_total', 'Queries that could not be paced at ingress because the kernel lacks bpf_skb_set_tstamp.', 'tstampUnsupported', 1],
  ['dnspacer_trace_events_dropped_total', 'Racing-pair trace events left out by the rate limit or a full ring buffer.', 'traceDropped', 1],
];

/** One read of a source shared by the `readers` metrics that show it in one scrape. */
function oncePerScrape<T>(read: () => T, readers: number): () => T {
  let current: { value: T } | undefined;
  let served = 0;
  return () => {
    current ??= { value: read() };
    const { value } = current;
    if (++served === readers) {
      served = 0;
      current = undefined;
    }
    return value;
  };
}

/** A counter whose value is the source's value at scrape time. */
function mirrorCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], read: (set: (labels: Record<L, string>, value: number) => void) => Promise<void> | void): void {
  const metric: Counter<L> = new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      metric.reset();
      await read((labels, value) => metric.inc(labels, value));
    },
  });
}

export function createMetrics(sources: MetricsSources): Registry {
  const registry = new Registry();

  for (const [name, help, field, scale] of CLASSIFIER_COUNTERS) {
    mirrorCounter(registry, name, help, ATTACHMENT_LABELS, (set) => {
      for (const a of sources.attachments()) set({ ...a.labels }, Number(a.counters[field]) * scale);
    });
  }
  mirrorCounter(registry, 'dnspacer_dns_queries_total', 'DNS queries the classifier recognised, by QTYPE.', [...ATTACHMENT_LABELS, 'qtype'], (set) => {
    for (const a of sources.attachments()) {
      set({ ...a.labels, qtype: 'A' }, Number(a.counters.queriesA));
      set({ ...a.labels, qtype: 'AAAA' }, Number(a.counters.queriesAaaa));
      set({ ...a.labels, qtype: 'other' }, Number(a.counters.queriesOther));
    }
  });

  // The node's conntrack statistics: clash_resolve counts the race resolved by the kernel
  // (>= 5.6 inserts the clashing entry), insert_failed the clashes it could not resolve.
  const conntrack: [string, string, (s: ConntrackSample) => number | null][] = [
    ['dnspacer_conntrack_clash_resolve_total', 'Conntrack clashes resolved (clash_resolve, "clashres" in /proc/net/stat/nf_conntrack).', (s) => s.clashResolve],
    ['dnspacer_conntrack_insert_failed_total', 'Conntrack entries that could not be inserted (unresolved clashes).', (s) => s.insertFailed],
    ['dnspacer_conntrack_drop_total', 'Packets conntrack dropped.', (s) => s.drop],
    ['dnspacer_conntrack_early_drop_total', 'Conntrack entries dropped early to make room.', (s) => s.earlyDrop],
  ];
  // one read of the statistics serves the four metrics of a scrape
  const conntrackNow = oncePerScrape(() => sources.conntrack(), conntrack.length);
  for (const [name, help, pick] of conntrack) {
    mirrorCounter(registry, name, help, ['netns'] as const, async (set) => {
      for (const sample of await conntrackNow()) {
        const v = pick(sample);
        if (v !== null) set({ netns: sample.netns }, v);
      }
    });
  }

  const info: Gauge<'mode' | 'placement' | 'policy' | 'version' | 'kernel'> = new Gauge({
    name: 'dnspacer_info',
    help: 'The running mode, placement, policy, version and kernel (value 1).',
    labelNames: ['mode', 'placement', 'policy', 'version', 'kernel'],
    registers: [registry],
    collect() {
      info.reset();
      info.set(sources.info(), 1);
    },
  });
  const probe: Gauge<'feature'> = new Gauge({
    name: 'dnspacer_probe_supported',
    help: 'What the start-up probe found this kernel can do (1) or not (0).',
    labelNames: ['feature'],
    registers: [registry],
    collect() {
      probe.reset();
      for (const [feature, ok] of Object.entries(sources.probe())) probe.set({ feature }, ok ? 1 : 0);
    },
  });
  const serializeQueueNow = oncePerScrape(() => sources.serializeQueue(), 2);
  // One IFB serializes the node's DNS: past what one CPU hands over (npm run bench) its
  // queue overflows and queries are lost, which is the moment to spread the load.
  mirrorCounter(registry, 'dnspacer_serialize_dropped_total', "DNS queries the serializing IFB's queue dropped because it was full.", ['interface'] as const, (set) => {
    const q = serializeQueueNow();
    if (q) set({ interface: q.interface }, q.dropped);
  });
  const backlog: Gauge<'interface'> = new Gauge({
    name: 'dnspacer_serialize_backlog_packets',
    help: 'DNS queries waiting in the serializing IFB queue at scrape time.',
    labelNames: ['interface'],
    registers: [registry],
    collect() {
      backlog.reset();
      const q = serializeQueueNow();
      if (q) backlog.set({ interface: q.interface }, q.queued);
    },
  });
  const attachments: Gauge = new Gauge({
    name: 'dnspacer_attachments',
    help: 'Interfaces the classifier is attached to.',
    registers: [registry],
    collect() {
      attachments.set(sources.attachments().length);
    },
  });
  return registry;
}
