// ns/packet of the classifier through BPF_PROG_TEST_RUN, side by side with an
// empty tc program in the same process. Rounds alternate the two programs so
// frequency and cache drift hit both alike; the median round is reported.
import { loadAddon } from '../datapath/addon.js';
import { Classifier, bpfObjectPath, defaultClassifierConfig } from '../datapath/datapath.js';
import type { ClassifierConfig } from '../datapath/layout.js';
import { ETH_P_ARP, ethernet, frame } from '../packet.js';
import { QTYPE, buildQuery, nameOfWireLength } from '../dns.js';

interface Case {
  name: string;
  data: Buffer;
  targetNs: number;
  /** config differences from the node default */
  config?: Partial<ClassifierConfig>;
}

const cases = (): Case[] => {
  const base = { src: '198.18.0.2', dst: '198.18.0.10', sport: 40000 };
  return [
    { name: 'non-IP (ARP)', data: ethernet(ETH_P_ARP, Buffer.alloc(46)), targetNs: 20 },
    { name: 'TCP', data: frame({ ...base, dport: 443, protocol: 'tcp', payload: Buffer.alloc(64) }), targetNs: 20 },
    // The any-port pair detector times 1 in 16 non-DNS tuples by default: this
    // tuple is not one of them (shift 15 makes sure), the next row times every tuple.
    { name: 'UDP, not DNS (untimed tuple, 15 in 16)', data: frame({ ...base, dport: 8125, payload: Buffer.alloc(64) }), targetNs: 20, config: { udpSampleShift: 15 } },
    { name: 'UDP, not DNS (timed tuple, 1 in 16)', data: frame({ ...base, dport: 8125, payload: Buffer.alloc(64) }), targetNs: 20, config: { udpSampleShift: 0 } },
    { name: 'DNS A', data: frame({ ...base, dport: 53, payload: buildQuery({ name: 'kubernetes.default.svc.cluster.local', qtype: QTYPE.A }) }), targetNs: 80 },
    {
      name: 'DNS AAAA, 200-byte name',
      data: frame({ ...base, dport: 53, payload: buildQuery({ name: nameOfWireLength(200), qtype: QTYPE.AAAA }) }),
      targetNs: 80,
    },
  ];
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export interface BenchRow {
  name: string;
  emptyNs: number;
  /** the empty program plus one bpf_ktime_get_ns() */
  clockNs: number;
  classifierNs: number;
  overheadNs: number;
  ratio: number;
  targetNs: number;
}

export function runBench(repeat: number, rounds: number): BenchRow[] {
  const addon = loadAddon();
  const empty = addon.openObject(bpfObjectPath('empty.bpf.o'));
  const clock = addon.openObject(bpfObjectPath('clock.bpf.o'));
  const classifier = Classifier.load();
  try {
    // pairs policy, EDT pacing, no tracing: the path a node runs. Repeating one
    // DNS packet makes every run after the first a racing pair: the slowest path.
    classifier.configure(defaultClassifierConfig({ tracePerSec: 0 }), [53], []);
    const emptyFd = empty.programs()[0]!.fd;
    const clockFd = clock.programs()[0]!.fd;
    return cases().map((c) => {
      classifier.configure(defaultClassifierConfig({ tracePerSec: 0, ...c.config }));
      const e: number[] = [];
      const t: number[] = [];
      const k: number[] = [];
      for (let r = 0; r < rounds; r++) {
        e.push(addon.testRun(emptyFd, { data: c.data, repeat }).durationNs);
        t.push(addon.testRun(clockFd, { data: c.data, repeat }).durationNs);
        k.push(classifier.testRun({ data: c.data, repeat }).durationNs);
      }
      const emptyNs = median(e);
      const classifierNs = median(k);
      return {
        name: c.name,
        emptyNs,
        clockNs: median(t),
        classifierNs,
        overheadNs: classifierNs - emptyNs,
        ratio: classifierNs / Math.max(emptyNs, 1),
        targetNs: c.targetNs,
      };
    });
  } finally {
    classifier.close();
    clock.close();
    empty.close();
  }
}

export function renderBench(rows: BenchRow[]): string {
  const lines = [
    '| Packet | empty program ns | empty + one clock read ns | classifier ns | overhead ns | ratio | target overhead | met |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${r.emptyNs} | ${r.clockNs} | ${r.classifierNs} | ${r.overheadNs} | ${r.ratio.toFixed(2)}x | ≤ ${r.targetNs} | ${r.overheadNs <= r.targetNs ? 'yes' : '**no**'} |`,
    );
  }
  return lines.join('\n');
}
