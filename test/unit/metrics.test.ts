import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, type ClassifierCounters, type MetricsSources, type SerializeQueue } from '../../src/metrics.js';
import { startServer, type MetricsServer } from '../../src/server.js';

function counters(overrides: Partial<ClassifierCounters>): ClassifierCounters {
  const zero = {
    packets: 0n, udp: 0n, queriesA: 0n, queriesAaaa: 0n, queriesOther: 0n, paced: 0n, delayNs: 0n,
    racingUdpPairs: 0n, racingDnsPairs: 0n, racingLeft: 0n, malformed: 0n, serialized: 0n,
    tstampUnsupported: 0n, traceDropped: 0n,
  };
  return { ...zero, ...overrides };
}

function sources(state: { racing: bigint; clash: number; queue?: SerializeQueue | null }): MetricsSources {
  return {
    attachments: () => [
      {
        labels: { interface: 'veth1', direction: 'ingress', netns: '', namespace: 'default', pod: 'web-1' },
        counters: counters({ packets: 10n, queriesA: 3n, queriesAaaa: 2n, racingDnsPairs: state.racing, delayNs: 1_500_000n }),
      },
    ],
    conntrack: async () => [{ netns: '', clashResolve: state.clash, insertFailed: 1, drop: 0, earlyDrop: 0 }],
    info: () => ({ mode: 'serialize', placement: 'host', policy: 'pairs', version: '0.1.0', kernel: '6.18.0' }),
    probe: () => ({ fq: false, ifb: true }),
    serializeQueue: () => state.queue ?? null,
  };
}

let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('metrics', () => {
  it('exports classifier counters, conntrack statistics, mode and probe results', async () => {
    const text = await createMetrics(sources({ racing: 4n, clash: 7 })).metrics();
    const labels = 'interface="veth1",direction="ingress",netns="",namespace="default",pod="web-1"';
    expect(text).toContain(`dnspacer_packets_total{${labels}} 10`);
    expect(text).toContain(`dnspacer_dns_queries_total{${labels},qtype="AAAA"} 2`);
    expect(text).toContain(`dnspacer_racing_dns_pairs_total{${labels}} 4`);
    expect(text).toContain(`dnspacer_added_delay_seconds_total{${labels}} 0.0015`);
    expect(text).toContain('dnspacer_conntrack_clash_resolve_total{netns=""} 7');
    expect(text).toContain('dnspacer_conntrack_insert_failed_total{netns=""} 1');
    expect(text).toContain('dnspacer_info{mode="serialize",placement="host",policy="pairs",version="0.1.0",kernel="6.18.0"} 1');
    expect(text).toContain('dnspacer_probe_supported{feature="fq"} 0');
    expect(text).toContain('# TYPE dnspacer_racing_dns_pairs_total counter');
  });

  it("exports the serializing IFB's drops and queue only when there is one", async () => {
    const state = { racing: 0n, clash: 0, queue: { interface: 'dnsp-ifb0', dropped: 5, queued: 2 } as SerializeQueue | null };
    const registry = createMetrics(sources(state));
    let text = await registry.metrics();
    expect(text).toContain('dnspacer_serialize_dropped_total{interface="dnsp-ifb0"} 5\n');
    expect(text).toContain('dnspacer_serialize_backlog_packets{interface="dnsp-ifb0"} 2\n');
    state.queue = null;
    text = await registry.metrics();
    expect(text).not.toMatch(/^dnspacer_serialize_dropped_total[{ ]/m);
    expect(text).not.toMatch(/^dnspacer_serialize_backlog_packets[{ ]/m);
  });

  it('reads the sources again at every scrape', async () => {
    const state = { racing: 1n, clash: 1 };
    const registry = createMetrics(sources(state));
    await registry.metrics();
    state.racing = 9n;
    state.clash = 12;
    const text = await registry.metrics();
    expect(text).toMatch(/dnspacer_racing_dns_pairs_total\{[^}]*\} 9\n/);
    expect(text).toContain('dnspacer_conntrack_clash_resolve_total{netns=""} 12');
  });

  it('serves /metrics, /healthz and /readyz on loopback', async () => {
    let ready = false;
    server = await startServer({
      host: '127.0.0.1',
      port: 0,
      registry: createMetrics(sources({ racing: 2n, clash: 3 })),
      ready: () => (ready ? { ready } : { ready, reason: 'applying serialize' }),
    });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${server.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toBe('not ready: applying serialize\n');
    ready = true;
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await metrics.text()).toContain('dnspacer_conntrack_clash_resolve_total{netns=""} 3');
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
  });

  it('names the address when it cannot listen', async () => {
    server = await startServer({ host: '127.0.0.1', port: 0, registry: createMetrics(sources({ racing: 0n, clash: 0 })), ready: () => ({ ready: true }) });
    const port = Number(new URL(server.url).port);
    await expect(startServer({ host: '127.0.0.1', port, registry: createMetrics(sources({ racing: 0n, clash: 0 })), ready: () => ({ ready: true }) })).rejects.toThrow(
      `cannot listen on metricsAddress 127.0.0.1:${port}: EADDRINUSE`,
    );
  });
});
