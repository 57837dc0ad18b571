// The classifier on crafted packets through BPF_PROG_TEST_RUN: verdicts, marks,
// departure times and every counter, on the real kernel verifier and JIT.
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { Classifier, defaultClassifierConfig } from '../../src/datapath/datapath.js';
import { type ClassifierConfig, type Counters, COUNTER_FIELDS, zeroCounters } from '../../src/datapath/layout.js';
import { type L4Spec, ETH_HLEN, ETH_P_ARP, ethernet, frame } from '../../src/packet.js';
import { QTYPE, buildQuery, nameOfWireLength } from '../../src/dns.js';
import { describeRoot, monotonicNs, slow } from '../helpers/root.js';

const TC_ACT_OK = 0;
const TC_ACT_UNSPEC = -1;
const TC_ACT_REDIRECT = 7;
const MS = 1_000_000n;

let classifier: Classifier;
let nextPort = 20000;

/** A fresh source port per packet family keeps flows and the recent table apart between cases. */
function freshPort(): number {
  return nextPort++;
}

function query(qtype: number, over: Partial<L4Spec> = {}, name = 'kubernetes.default.svc.cluster.local'): Buffer {
  return frame({
    src: '198.18.0.2',
    dst: '198.18.0.10',
    sport: over.sport ?? freshPort(),
    dport: 53,
    payload: buildQuery({ name, qtype }),
    ...over,
  });
}

function v6query(qtype: number, over: Partial<L4Spec> = {}): Buffer {
  return query(qtype, { src: '2001:2::2', dst: '2001:2::a', ...over });
}

function configure(over: Partial<ClassifierConfig> = {}, ports = [53]): void {
  classifier.configure(defaultClassifierConfig({ tracePerSec: 0, udpSampleShift: 0, ...over }), ports, []);
}

function run(data: Buffer, ctx: { mark?: number; tstamp?: bigint } = {}) {
  return classifier.testRun({ data, ctx: { mark: ctx.mark ?? 0, tstamp: ctx.tstamp ?? 0n } });
}

/** Counter changes caused by fn, on slot 0 (the loaded copy used by test runs). */
function delta(fn: () => void): Counters {
  const before = classifier.counters(0);
  fn();
  const after = classifier.counters(0);
  const d = zeroCounters();
  for (const f of COUNTER_FIELDS) d[f] = after[f] - before[f];
  return d;
}

function expectOnly(d: Counters, expected: Partial<Counters>): void {
  const want = { ...zeroCounters(), ...expected };
  expect(d).toEqual(want);
}

describeRoot('classifier (BPF_PROG_TEST_RUN)', () => {
  beforeAll(() => {
    classifier = Classifier.load();
  });
  afterAll(() => classifier?.close());
  beforeEach(() => configure());

  it('counts A, AAAA, HTTPS and SRV queries over IPv4 and IPv6, and passes each untouched when alone', () => {
    const cases: [number, keyof Counters][] = [
      [QTYPE.A, 'queriesA'],
      [QTYPE.AAAA, 'queriesAaaa'],
      [QTYPE.HTTPS, 'queriesOther'],
      [QTYPE.SRV, 'queriesOther'],
    ];
    for (const build of [query, v6query]) {
      for (const [qtype, counter] of cases) {
        const data = build(qtype);
        let out!: ReturnType<typeof run>;
        const d = delta(() => (out = run(data, { mark: 0x5 })));
        expect(out.retval).toBe(TC_ACT_OK);
        expect(out.ctx.tstamp).toBe(0n);
        expect(out.ctx.mark).toBe(0x5);
        expect(out.data.equals(data)).toBe(true);
        expectOnly(d, { packets: 1n, udp: 1n, [counter]: 1n });
      }
    }
  });

  it('aaaa policy: every AAAA departs at least D after now and is marked; A is untouched', () => {
    configure({ policy: 'aaaa', delayNs: 3n * MS });
    const before = monotonicNs();
    let aaaa!: ReturnType<typeof run>;
    const d = delta(() => (aaaa = run(query(QTYPE.AAAA), { mark: 0x4000 })));
    const after = monotonicNs();
    expect(aaaa.retval).toBe(TC_ACT_OK);
    expect(aaaa.ctx.tstamp).toBeGreaterThanOrEqual(before + 3n * MS);
    expect(aaaa.ctx.tstamp).toBeLessThanOrEqual(after + 3n * MS);
    // the mark is set under its mask and kube-proxy's bit survives
    expect(aaaa.ctx.mark).toBe(0x5000);
    expect(d.paced).toBe(1n);
    expect(d.delayNs).toBe(3n * MS);

    const a = run(query(QTYPE.A));
    expect(a.ctx.tstamp).toBe(0n);
    expect(a.ctx.mark).toBe(0);
  });

  it('pairs policy: the second query of a racing pair departs at least G after the first; a lone one keeps tstamp 0', () => {
    configure({ policy: 'pairs', gapNs: 40n * MS, windowNs: 500n * MS });
    const sport = freshPort();
    let first!: ReturnType<typeof run>;
    let second!: ReturnType<typeof run>;
    const t0 = monotonicNs();
    const d = delta(() => {
      first = run(query(QTYPE.A, { sport }));
      second = run(query(QTYPE.HTTPS, { sport }));
    });
    const elapsed = monotonicNs() - t0;
    expect(first.ctx.tstamp).toBe(0n); // first departs now: no tstamp written
    expect(first.ctx.mark).toBe(0);
    expect(second.ctx.tstamp).toBeGreaterThanOrEqual(t0 + 40n * MS);
    expect(second.ctx.tstamp).toBeLessThanOrEqual(monotonicNs() + 40n * MS);
    expect(second.ctx.mark).toBe(0x1000);
    expectOnly(d, {
      packets: 2n,
      udp: 2n,
      queriesA: 1n,
      queriesOther: 1n,
      paced: 1n,
      delayNs: d.delayNs,
      racingUdpPairs: 1n,
      racingDnsPairs: 1n,
    });
    // the second waits out what is left of G after the first: G minus the time between them
    expect(d.delayNs).toBeGreaterThanOrEqual(40n * MS - elapsed);
    expect(d.delayNs).toBeLessThanOrEqual(40n * MS);

    // a third query chains after the second's departure, not the first's
    const third = run(query(QTYPE.AAAA, { sport }));
    expect(third.ctx.tstamp).toBeGreaterThanOrEqual(second.ctx.tstamp + 40n * MS);

    // the other port of the same pair of hosts is another 5-tuple: not delayed
    const other = run(query(QTYPE.AAAA));
    expect(other.ctx.tstamp).toBe(0n);
  });

  it('pairs policy: queries further apart than W are not delayed nor counted as racing', async () => {
    configure({ policy: 'pairs', gapNs: 40n * MS, windowNs: 1n * MS });
    const sport = freshPort();
    run(query(QTYPE.A, { sport }));
    await new Promise((r) => setTimeout(r, 5));
    let second!: ReturnType<typeof run>;
    const d = delta(() => (second = run(query(QTYPE.AAAA, { sport }))));
    expect(second.ctx.tstamp).toBe(0n);
    expectOnly(d, { packets: 1n, udp: 1n, queriesAaaa: 1n });
  });

  it('observe counts racing pairs as left and changes nothing; mark only marks', () => {
    configure({ action: 'observe', gapNs: 40n * MS, windowNs: 500n * MS });
    let sport = freshPort();
    let second!: ReturnType<typeof run>;
    let d = delta(() => {
      run(query(QTYPE.A, { sport }));
      second = run(query(QTYPE.AAAA, { sport }));
    });
    expect(second.ctx.tstamp).toBe(0n);
    expect(second.ctx.mark).toBe(0);
    expectOnly(d, { packets: 2n, udp: 2n, queriesA: 1n, queriesAaaa: 1n, racingUdpPairs: 1n, racingDnsPairs: 1n, racingLeft: 1n });

    configure({ action: 'mark', gapNs: 40n * MS, windowNs: 500n * MS, markValue: 0x20, markMask: 0xf0 });
    sport = freshPort();
    d = delta(() => {
      run(query(QTYPE.A, { sport }));
      second = run(query(QTYPE.AAAA, { sport }, 'x.test'), { mark: 0x1f });
    });
    expect(second.ctx.tstamp).toBe(0n);
    expect(second.ctx.mark).toBe(0x2f);
    expect(d.paced).toBe(1n);
    expect(d.racingLeft).toBe(0n);
  });

  it('at egress never pulls an earlier departure over a later one already set', () => {
    configure({ policy: 'aaaa', delayNs: 1n * MS });
    const later = monotonicNs() + 10_000n * MS;
    const out = run(query(QTYPE.AAAA), { tstamp: later });
    expect(out.ctx.tstamp).toBe(later);
  });

  it('at ingress sets a DELIVERY_MONO departure with bpf_skb_set_tstamp', () => {
    configure({ policy: 'aaaa', delayNs: 2n * MS });
    classifier.setInstance({ slot: 0, ingress: true, redirectIfindex: 0, serializeVia: 'redirect' });
    try {
      const before = monotonicNs();
      let out!: ReturnType<typeof run>;
      const d = delta(() => (out = run(query(QTYPE.AAAA))));
      expect(out.ctx.tstamp).toBeGreaterThanOrEqual(before + 2n * MS);
      expect(d.paced).toBe(1n);
      expect(d.tstampUnsupported).toBe(0n);
    } finally {
      classifier.setInstance({ slot: 0, ingress: false, redirectIfindex: 0, serializeVia: 'redirect' });
    }
  });

  it('serialize: DNS queries only are handed to the IFB, by verdict or by redirect', () => {
    configure({ action: 'serialize' });
    classifier.setInstance({ slot: 0, ingress: true, redirectIfindex: 0, serializeVia: 'classify' });
    try {
      let d = delta(() => expect(run(query(QTYPE.A)).retval).toBe(TC_ACT_UNSPEC));
      expectOnly(d, { packets: 1n, udp: 1n, queriesA: 1n, serialized: 1n });
      const other = frame({ src: '198.18.0.2', dst: '198.18.0.10', sport: freshPort(), dport: 80, payload: Buffer.alloc(10) });
      expect(run(other).retval).toBe(TC_ACT_OK);
      const response = query(QTYPE.A, { payload: buildQuery({ name: 'a.test', qtype: 1, flags: 0x8180 }) });
      expect(run(response).retval).toBe(TC_ACT_OK);

      classifier.setInstance({ slot: 0, ingress: true, redirectIfindex: 1, serializeVia: 'redirect' });
      d = delta(() => expect(run(v6query(QTYPE.AAAA)).retval).toBe(TC_ACT_REDIRECT));
      expect(d.serialized).toBe(1n);
      expect(run(other).retval).toBe(TC_ACT_OK);
    } finally {
      classifier.setInstance({ slot: 0, ingress: false, redirectIfindex: 0, serializeVia: 'redirect' });
    }
  });

  it('leaves responses, other ports, DNS over TCP and non-IP frames alone', () => {
    configure({ policy: 'aaaa' });
    const response = query(QTYPE.AAAA, { payload: buildQuery({ name: 'a.test', qtype: QTYPE.AAAA, flags: 0x8180 }) });
    const notify = query(QTYPE.AAAA, { payload: buildQuery({ name: 'a.test', qtype: QTYPE.AAAA, flags: 4 << 11 }) });
    const otherPort = query(QTYPE.AAAA, { dport: 5353 });
    const tcp = query(QTYPE.AAAA, { protocol: 'tcp' });
    const arp = ethernet(ETH_P_ARP, Buffer.alloc(28));
    for (const [data, udp] of [
      [response, 1n],
      [notify, 1n],
      [otherPort, 1n],
      [tcp, 0n],
      [arp, 0n],
    ] as const) {
      let out!: ReturnType<typeof run>;
      const d = delta(() => (out = run(data, { mark: 7 })));
      expect(out.retval).toBe(TC_ACT_OK);
      expect(out.ctx.tstamp).toBe(0n);
      expect(out.ctx.mark).toBe(7);
      expect(out.data.equals(data)).toBe(true);
      expectOnly(d, { packets: 1n, udp });
    }
  });

  it('honours the port set and the destination prefixes live', () => {
    classifier.configure(defaultClassifierConfig({ tracePerSec: 0, udpSampleShift: 0, matchPrefixes: true }), [53, 5353], [
      { family: 4, addr: Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 10]), prefixLen: 32 },
      { family: 6, addr: Buffer.from('20010002000000000000000000000000', 'hex'), prefixLen: 48 },
    ]);
    expect(delta(() => run(query(QTYPE.A))).queriesA).toBe(1n);
    expect(delta(() => run(query(QTYPE.A, { dport: 5353 }))).queriesA).toBe(1n);
    expect(delta(() => run(query(QTYPE.A, { dst: '198.18.0.11' }))).queriesA).toBe(0n);
    expect(delta(() => run(v6query(QTYPE.A))).queriesA).toBe(1n);
    expect(delta(() => run(v6query(QTYPE.A, { dst: '2001:3::a' }))).queriesA).toBe(0n);
    configure({}, [5353]);
    expect(delta(() => run(query(QTYPE.A))).queriesA).toBe(0n);
    expect(delta(() => run(query(QTYPE.A, { dport: 5353 }))).queriesA).toBe(1n);
  });

  it('counts nothing when disabled', () => {
    configure({ enabled: false });
    expectOnly(
      delta(() => run(query(QTYPE.AAAA))),
      {},
    );
  });

  it('walks names of exactly 255 bytes and refuses 256, labels over 63, QDCOUNT 0 and pointers', () => {
    const payloads: [string, Buffer, Partial<Counters>][] = [
      ['255-byte name', buildQuery({ name: nameOfWireLength(255), qtype: QTYPE.AAAA }), { queriesAaaa: 1n }],
      ['255-byte name of 127 labels', buildQuery({ labels: Array.from({ length: 127 }, () => Buffer.from('a')), qtype: 1 }), { queriesA: 1n }],
      ['256-byte name', buildQuery({ labels: [...Array.from({ length: 4 }, () => Buffer.alloc(63, 0x61)), Buffer.alloc(2, 0x61)], qtype: 1 }), { malformed: 1n }],
      ['64-byte label', buildQuery({ labels: [Buffer.alloc(64, 0x61)], qtype: 1 }), { malformed: 1n }],
      ['QDCOUNT 0', buildQuery({ name: 'a.test', qtype: 1, qdcount: 0 }), {}],
      ['compression pointer', buildQuery({ rawName: Buffer.from([0xc0, 0x0c]), qtype: 1 }), { malformed: 1n }],
      ['pointer after a label', buildQuery({ rawName: Buffer.from([1, 0x61, 0xc0, 0x0c]), qtype: 1 }), { malformed: 1n }],
      ['root name', buildQuery({ name: '.', qtype: QTYPE.SRV }), { queriesOther: 1n }],
    ];
    for (const [what, payload, counts] of payloads) {
      const data = query(0, { payload });
      let out!: ReturnType<typeof run>;
      const d = delta(() => (out = run(data)));
      expect(out.retval, what).toBe(TC_ACT_OK);
      expect(out.data.equals(data), what).toBe(true);
      expect(d, what).toEqual({ ...zeroCounters(), packets: 1n, udp: 1n, ...counts });
    }
  });

  it('parses IPv4 options and IPv6 extension headers; passes later fragments untouched', () => {
    configure({ policy: 'aaaa' });
    const cases: [string, Buffer, Partial<Counters>][] = [
      ['IPv4 with 40 bytes of options', query(QTYPE.AAAA, { ipv4Options: Buffer.alloc(40, 1) }), { udp: 1n, queriesAaaa: 1n, paced: 1n }],
      ['IPv4 first fragment', query(QTYPE.AAAA, { ipv4Fragment: { offset: 0, more: true } }), { udp: 1n, queriesAaaa: 1n, paced: 1n }],
      ['IPv4 later fragment', query(QTYPE.AAAA, { ipv4Fragment: { offset: 8, more: false } }), {}],
      [
        'IPv6 hop-by-hop, routing, destination options',
        v6query(QTYPE.AAAA, { ipv6Extensions: [{ kind: 'hop-by-hop' }, { kind: 'routing', length: 24 }, { kind: 'destination', length: 16 }] }),
        { udp: 1n, queriesAaaa: 1n, paced: 1n },
      ],
      ['IPv6 first fragment', v6query(QTYPE.AAAA, { ipv6Extensions: [{ kind: 'fragment', offset: 0, more: true }] }), { udp: 1n, queriesAaaa: 1n, paced: 1n }],
      ['IPv6 later fragment', v6query(QTYPE.AAAA, { ipv6Extensions: [{ kind: 'fragment', offset: 100, more: false }] }), {}],
      [
        'IPv6 with more extension headers than it walks',
        v6query(QTYPE.AAAA, { ipv6Extensions: Array.from({ length: 5 }, () => ({ kind: 'destination' as const })) }),
        {},
      ],
    ];
    for (const [what, data, counts] of cases) {
      let out!: ReturnType<typeof run>;
      const d = delta(() => (out = run(data)));
      expect(out.retval, what).toBe(TC_ACT_OK);
      expect(out.data.equals(data), what).toBe(true);
      const { delayNs, ...rest } = d;
      expect(rest, what).toEqual({ ...zeroCounters(), packets: 1n, ...counts, delayNs: undefined });
      expect(delayNs, what).toBe(counts.paced ? 1n * MS : 0n);
    }
  });

  it('survives truncation at every byte offset: verdict OK, data and metadata unchanged, counted malformed', () => {
    configure({ policy: 'aaaa' });
    const frames = [
      query(QTYPE.AAAA, { ipv4Options: Buffer.alloc(8, 1) }),
      v6query(QTYPE.AAAA, { ipv6Extensions: [{ kind: 'hop-by-hop' }, { kind: 'fragment', offset: 0, more: true }] }),
    ];
    for (const full of frames) {
      const fixedIpHeader = full.readUInt16BE(12) === 0x0800 ? 20 : 40;
      for (let len = ETH_HLEN; len < full.length; len++) {
        const data = full.subarray(0, len);
        if (len < ETH_HLEN + fixedIpHeader) {
          // The test run itself refuses these (pskb_may_pull of the fixed IP header
          // in bpf_prog_test_run_skb); the classifier's bounds checks for them are
          // what the verifier proves on load.
          expect(() => run(data), `cut at ${len}`).toThrow(/Invalid argument/);
          continue;
        }
        let out!: ReturnType<typeof run>;
        const d = delta(() => (out = run(data, { mark: 3, tstamp: 0n })));
        expect(out.retval, `cut at ${len}`).toBe(TC_ACT_OK);
        expect(out.ctx.tstamp, `cut at ${len}`).toBe(0n);
        expect(out.ctx.mark, `cut at ${len}`).toBe(3);
        expect(out.data.equals(data), `cut at ${len}`).toBe(true);
        expect(d.malformed, `cut at ${len}`).toBe(1n);
        expect(d.queriesAaaa + d.queriesA + d.queriesOther + d.paced, `cut at ${len}`).toBe(0n);
      }
    }
  });

  it('counts racing UDP pairs on any port and traces each racing pair with its 5-tuple and action', async () => {
    configure({ tracePerSec: 1000, policy: 'pairs', gapNs: 40n * MS, windowNs: 500n * MS });
    const events = classifier.trace();
    try {
      const udpPort = freshPort();
      const dnsPort = freshPort();
      const other = (sport: number) =>
        frame({ src: '198.18.0.2', dst: '198.18.1.1', sport, dport: 9000, payload: Buffer.from('hello') });
      const d = delta(() => {
        run(other(udpPort));
        run(other(udpPort));
        run(v6query(QTYPE.A, { sport: dnsPort }));
        run(v6query(QTYPE.AAAA, { sport: dnsPort }));
      });
      expect(d.racingUdpPairs).toBe(2n);
      expect(d.racingDnsPairs).toBe(1n);
      const got = [];
      for (let i = 0; i < 2; i++) {
        const next = await Promise.race([events.next(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), slow(2000)))]);
        expect(next).not.toBe('timeout');
        got.push((next as IteratorResult<unknown>).value);
      }
      expect(got[0]).toMatchObject({ family: 4, saddr: '198.18.0.2', daddr: '198.18.1.1', sport: udpPort, dport: 9000, isDns: false, qtype: 0, action: 'none' });
      expect(got[1]).toMatchObject({
        family: 6,
        saddr: '2001:2::2',
        daddr: '2001:2::a',
        sport: dnsPort,
        dport: 53,
        isDns: true,
        qtypePrev: QTYPE.A,
        qtype: QTYPE.AAAA,
        action: 'paced',
      });
      expect((got[1] as { delayNs: bigint }).delayNs).toBeGreaterThan(30n * MS);
    } finally {
      await events.return?.();
    }
  });

  it('times a sample of non-DNS tuples, each sampled racing pair counting for 2^shift', () => {
    configure({ udpSampleShift: 2, windowNs: 500n * MS });
    const perTuple: bigint[] = [];
    for (let i = 0; i < 128; i++) {
      const sport = freshPort();
      const pkt = frame({ src: '198.18.0.2', dst: '198.18.1.1', sport, dport: 9000, payload: Buffer.from('x') });
      perTuple.push(delta(() => (run(pkt), run(pkt))).racingUdpPairs);
    }
    expect(new Set(perTuple)).toEqual(new Set([0n, 4n]));
    const sampled = perTuple.filter((n) => n === 4n).length;
    expect(sampled).toBeGreaterThan(10); // 1 in 4 of 128: 32 expected
    expect(sampled).toBeLessThan(60);
    // DNS queries are always timed, and count exactly
    configure({ udpSampleShift: 15, windowNs: 500n * MS, action: 'observe' });
    const sport = freshPort();
    const d = delta(() => (run(query(QTYPE.A, { sport })), run(query(QTYPE.AAAA, { sport }))));
    expect(d.racingUdpPairs).toBe(1n);
    expect(d.racingDnsPairs).toBe(1n);
  });

  it('rate-limits trace events and counts what it dropped', () => {
    configure({ tracePerSec: 1, policy: 'pairs', windowNs: 500n * MS });
    const d = delta(() => {
      for (let i = 0; i < 3; i++) {
        const sport = freshPort();
        run(query(QTYPE.A, { sport }));
        run(query(QTYPE.AAAA, { sport }));
      }
    });
    expect(d.racingDnsPairs).toBe(3n);
    // at most one event per second per CPU; earlier tests may already have used it
    expect(d.traceDropped).toBeGreaterThanOrEqual(2n);
  });
});
