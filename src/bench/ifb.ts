// What serializing costs in throughput: DNS queries per second through the node with and
// without `serialize` (every query through one single-queue IFB, with its own 32-packet
// queue and with 1000), and the CPU each delivered query takes, side by side in one run. The lab's namespaces, a backend with no
// server (the kernel's UDP counters there count what arrived), and flood as the load:
// one sender thread, then one per CPU. Rounds alternate the two setups so drift hits both.
import fs from 'node:fs';
import os from 'node:os';
import { execa } from 'execa';
import { Mitigation } from '../apply.js';
import { DEFAULTS } from '../config.js';
import { Classifier } from '../datapath/datapath.js';
import { cpuBusySeconds, floodPath, targetsFor } from '../lab/run.js';
import { type Topology, VIP, buildTopology } from '../lab/topology.js';
import { Journal, run } from '../netops.js';

/** serialize-q1000: the same with a 1000-packet IFB queue instead of the IFB's own 32 */
export type Setup = 'none' | 'serialize' | 'serialize-q1000';
const SETUPS: readonly Setup[] = ['none', 'serialize', 'serialize-q1000'];

export interface ThroughputSample {
  sentPerSec: number;
  deliveredPerSec: number;
  /** busy CPU time of the whole machine per delivered query, sender included */
  cpuUsPerQuery: number;
  /** queries the IFB's full queue dropped (dnspacer_serialize_dropped_total), 0 without one */
  ifbDroppedPerSec: number;
}

export interface ThroughputRow {
  setup: Setup;
  threads: number;
  median: ThroughputSample;
}

/** Datagrams that reached UDP in a namespace, whether or not a socket took them. */
export function udpArrivals(snmp: string): number {
  const lines = snmp.split('\n').filter((l) => l.startsWith('Udp:'));
  if (lines.length < 2) throw new Error('no Udp: rows in /proc/net/snmp');
  const names = lines[0]!.trim().split(/\s+/);
  const values = lines[1]!.trim().split(/\s+/).map(Number);
  const get = (n: string) => values[names.indexOf(n)] ?? 0;
  return get('InDatagrams') + get('NoPorts') + get('InErrors');
}

export function medianSample(xs: ThroughputSample[]): ThroughputSample {
  const mid = <K extends keyof ThroughputSample>(k: K) => [...xs].map((x) => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { sentPerSec: mid('sentPerSec'), deliveredPerSec: mid('deliveredPerSec'), cpuUsPerQuery: mid('cpuUsPerQuery'), ifbDroppedPerSec: mid('ifbDroppedPerSec') };
}

async function floodOnce(topo: Topology, threads: number, seconds: number, mitigation?: Mitigation): Promise<ThroughputSample> {
  const backend = topo.backends[0]!.path;
  const ifbDrops = () => mitigation?.serializeQueue()?.dropped ?? 0;
  const dropped0 = ifbDrops();
  const arrived0 = udpArrivals(await run({ netns: backend }, 'cat', ['/proc/net/snmp']));
  const cpu0 = cpuBusySeconds();
  const r = await execa('ip', ['netns', 'exec', topo.pod.name, floodPath(), '--server', VIP, '--threads', String(threads), '--seconds', String(seconds)]);
  const cpu1 = cpuBusySeconds();
  // queries still in a queue when the sender stops arrive a moment later
  await new Promise((res) => setTimeout(res, 200));
  const arrived = udpArrivals(await run({ netns: backend }, 'cat', ['/proc/net/snmp'])) - arrived0;
  const [sent, elapsed] = String(r.stdout).trim().split(' ').map(Number) as [number, number];
  return {
    sentPerSec: sent / elapsed,
    deliveredPerSec: arrived / elapsed,
    cpuUsPerQuery: ((cpu1 - cpu0) * 1e6) / Math.max(arrived, 1),
    ifbDroppedPerSec: (ifbDrops() - dropped0) / elapsed,
  };
}

export async function runThroughput(opts: { seconds: number; rounds: number; threads: number[] }): Promise<ThroughputRow[]> {
  // one backend, so every query takes the same path after the DNAT
  const topo = await buildTopology({ backends: 1, servers: false });
  const classifier = Classifier.load();
  const pinDir = `/sys/fs/bpf/dnspacer-bench-${process.pid}`;
  const samples = new Map<string, ThroughputSample[]>();
  try {
    for (let round = 0; round < opts.rounds; round++) {
      for (const threads of opts.threads) {
        for (const setup of SETUPS) {
          let mitigation: Mitigation | undefined;
          if (setup !== 'none') {
            const ifbQueue = setup === 'serialize-q1000' ? { ifbQueue: 1000 } : {};
            mitigation = new Mitigation({ mode: 'serialize', placement: 'host', serializeVia: 'classify' }, DEFAULTS, classifier, new Journal(), { nodeNetns: topo.node.path, pinDir, ...ifbQueue });
            await mitigation.start();
            for (const t of targetsFor(topo, 'host')) await mitigation.add(t);
          }
          try {
            const key = `${setup}/${threads}`;
            samples.set(key, [...(samples.get(key) ?? []), await floodOnce(topo, threads, opts.seconds, mitigation)]);
          } finally {
            const failures = (await mitigation?.stop()) ?? [];
            if (failures.length) throw new Error(`could not undo serialize: ${failures.join('; ')}`);
          }
        }
      }
    }
  } finally {
    classifier.close();
    fs.rmSync(pinDir, { recursive: true, force: true });
    await topo.destroy();
  }
  return opts.threads.flatMap((threads) => SETUPS.map((setup) => ({ setup, threads, median: medianSample(samples.get(`${setup}/${threads}`)!) })));
}

export function renderThroughput(rows: ThroughputRow[]): string {
  const lines = [
    '| Setup | sender threads | sent/s | delivered/s | delivered vs none | dropped at the IFB/s | CPU µs per delivered query | CPU vs none |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const none = rows.find((x) => x.setup === 'none' && x.threads === r.threads)!.median;
    const m = r.median;
    lines.push(`| ${r.setup} | ${r.threads} | ${Math.round(m.sentPerSec)} | ${Math.round(m.deliveredPerSec)} | ${(m.deliveredPerSec / none.deliveredPerSec).toFixed(2)}x | ${Math.round(m.ifbDroppedPerSec)} | ${m.cpuUsPerQuery.toFixed(2)} | ${(m.cpuUsPerQuery / none.cpuUsPerQuery).toFixed(2)}x |`);
  }
  return lines.join('\n');
}

export function throughputHeader(opts: { seconds: number; rounds: number }, command: string): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `Kernel ${os.release()}, ${cpu} x${os.cpus().length}, ${new Date().toISOString().slice(0, 10)}. Command: \`${command}\` (flood for ${opts.seconds} s per sample, median of ${opts.rounds} alternating rounds).`;
}
