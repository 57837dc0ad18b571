// Runs the race through every mode and placement side by side and measures it.
// Modes are applied with the agent's own Mitigation code; what the kernel cannot
// do becomes a row with supported: false and the probe's reason.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { Mitigation, type Plan, type Target } from '../apply.js';
import { type AgentConfig, DEFAULTS, type ConcretePlacement, type Policy } from '../config.js';
import { Classifier } from '../datapath/datapath.js';
import { type Capabilities, whyNot } from '../modes.js';
import { Journal } from '../netops.js';
import { probe } from '../probe.js';
import { diffStats, readConntrackStats } from './conntrack.js';
import type { LabResult, LabRow, LatencySamples, Percentiles } from './report.js';
import { rowKey } from './report.js';
import { summarize } from './stats.js';
import type { Netns } from '../netns.js';
import { type Dnat, RECORD, type Topology, VIP, buildTopology } from './topology.js';

export interface LabCase {
  mode: Plan['mode'];
  placement: ConcretePlacement | '-';
  policy?: Policy;
}

export const ALL_CASES: LabCase[] = [
  { mode: 'none', placement: '-' },
  { mode: 'observe', placement: 'host' },
  { mode: 'serialize', placement: 'host' },
  { mode: 'edt', placement: 'pod', policy: 'pairs' },
  { mode: 'edt', placement: 'pod', policy: 'aaaa' },
  { mode: 'edt', placement: 'host', policy: 'pairs' },
  { mode: 'edt', placement: 'device', policy: 'pairs' },
  { mode: 'bpf-netem', placement: 'pod', policy: 'aaaa' },
  { mode: 'bpf-netem', placement: 'device', policy: 'aaaa' },
  { mode: 'iptables-netem', placement: 'pod', policy: 'aaaa' },
];

/** pod: the load runs in the pod, its queries DNATed in the node's PREROUTING; host: in
 * the node's own namespace, as a hostNetwork pod, DNATed in OUTPUT */
export const CLIENTS = ['pod', 'host'] as const;
export type Client = (typeof CLIENTS)[number];

export interface LabOptions {
  pairs: number;
  /** where the load runs (default pod) */
  client?: Client;
  cases?: LabCase[];
  dnat?: Dnat;
  timeoutMs?: number;
  /** what sends the queries (default racer) */
  load?: Load;
  /** the agent's pacing settings for every row (default: the agent's defaults) */
  pacing?: Pick<AgentConfig, 'delayNs' | 'gapNs' | 'windowNs'>;
  onProgress?: (label: string, done: number, total: number) => void;
  command?: string;
}

/** The native load programs (native/racer): racer, lookup-glibc, lookup-musl. */
export function loadProgram(name: 'racer' | 'lookup-glibc' | 'lookup-musl' | 'flood'): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '..', '..', 'native', 'racer', name);
}

export function racerPath(): string {
  return loadProgram('racer');
}

/** flood: sustained query load from many sockets, for the throughput benchmark */
export function floodPath(): string {
  return loadProgram('flood');
}

/** racer: two threads, one socket, A and AAAA released together (the race itself);
 * glibc, musl: getaddrinfo loops of the real C libraries, as applications resolve;
 * dnsperf: sustained load, A and AAAA queries from 8 sockets on 2 threads, many in flight. */
export const LOADS = ['racer', 'glibc', 'musl', 'dnsperf'] as const;
export type Load = (typeof LOADS)[number];

/** A lookup slower than this was answered only after the resolver's retry (both
 * libraries wait at least a second, glibc five by default, before resending). */
const RETRY_MS = 900;

interface RacerOutcome {
  a: number[];
  aaaa: number[];
  lookup: number[];
  lost: number;
  retried: number;
}

async function runLookups(client: Netns, load: 'glibc' | 'musl', lookups: number, onPair: (n: number) => void): Promise<RacerOutcome> {
  const child = execa('ip', ['netns', 'exec', client.name, loadProgram(`lookup-${load}`), '--name', RECORD, '--count', String(lookups)], { reject: false, stdin: 'ignore' });
  const out: RacerOutcome = { a: [], aaaa: [], lookup: [], lost: 0, retried: 0 };
  let n = 0;
  for await (const line of child) {
    const [ns, ok] = String(line).trim().split(' ').map(Number);
    if (ok === 1) {
      out.lookup.push(ns! / 1000);
      if (ns! / 1e6 >= RETRY_MS) out.retried++;
    } else out.lost++;
    if (++n % 50 === 0) onPair(n);
  }
  const r = await child;
  if (r.exitCode !== 0) throw new Error(`lookup-${load} failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
  return out;
}

/** dnsperf through the Service VIP: `pairs` A and `pairs` AAAA queries, each timed on
 * its own (-v prints one line per answer). dnsperf does not resend: a query without an
 * answer within the timeout is lost. */
async function runDnsperf(client: Netns, pairs: number, timeoutMs: number, onPair: (n: number) => void): Promise<RacerOutcome> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-dnsperf-')), 'queries');
  fs.writeFileSync(file, `${RECORD} A\n${RECORD} AAAA\n`.repeat(pairs));
  const out: RacerOutcome = { a: [], aaaa: [], lookup: [], lost: 0, retried: 0 };
  try {
    const args = ['-s', VIP, '-d', file, '-n', '1', '-c', '8', '-T', '2', '-q', '64', '-t', String(Math.max(1, Math.ceil(timeoutMs / 1000))), '-v'];
    const child = execa('ip', ['netns', 'exec', client.name, 'dnsperf', ...args], { reject: false, stdin: 'ignore' });
    let n = 0;
    for await (const line of child) {
      const m = /^> (\S+) \S+ (A|AAAA) ([\d.]+)$/.exec(String(line).trim());
      if (m) {
        (m[2] === 'A' ? out.a : out.aaaa).push(Number(m[3]) * 1e6);
        if (++n % 100 === 0) onPair(Math.floor(n / 2));
        continue;
      }
      const lost = /Queries lost:\s+(\d+)/.exec(String(line));
      if (lost) out.lost = Number(lost[1]);
    }
    const r = await child;
    if (r.exitCode !== 0) throw new Error(`dnsperf failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  return out;
}

async function runRacer(client: Netns, pairs: number, timeoutMs: number, onPair: (n: number) => void): Promise<RacerOutcome> {
  const child = execa('ip', ['netns', 'exec', client.name, racerPath(), '--server', VIP, '--pairs', String(pairs), '--timeout-ms', String(timeoutMs)], {
    reject: false,
    stdin: 'ignore',
  });
  const out: RacerOutcome = { a: [], aaaa: [], lookup: [], lost: 0, retried: 0 };
  let n = 0;
  for await (const line of child) {
    const [a, aaaa, lookup, ra, raaaa, lost] = String(line).trim().split(' ').map(Number);
    if (a! >= 0) out.a.push(a! / 1000);
    if (aaaa! >= 0) out.aaaa.push(aaaa! / 1000);
    if (lookup! >= 0) out.lookup.push(lookup! / 1000);
    out.lost += lost!;
    out.retried += (ra! > 0 ? 1 : 0) + (raaaa! > 0 ? 1 : 0);
    if (++n % 50 === 0) onPair(n);
  }
  const r = await child;
  if (r.exitCode !== 0) throw new Error(`racer failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
  return out;
}

export function cpuBusySeconds(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return (total - idle) / 100; // USER_HZ
}

function pct(samples: number[]): Percentiles {
  const s = summarize(samples);
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max };
}

export function targetsFor(topo: Topology, placement: ConcretePlacement): Target[] {
  switch (placement) {
    case 'host':
      return [{ dev: topo.podHostVeth, netns: topo.node.path, label: 'pod' }];
    case 'pod':
      return [{ dev: topo.podDev, netns: topo.pod.path, label: 'pod' }];
    case 'device':
      return topo.uplinks.map((dev) => ({ dev, netns: topo.node.path, label: dev }));
  }
}

function unsupportedRow(c: LabCase, reason: string): LabRow {
  const empty = { p50: NaN, p90: NaN, p99: NaN, max: NaN };
  return {
    mode: c.mode,
    placement: c.placement,
    policy: c.policy ?? '',
    supported: false,
    reason,
    pairs: 0,
    clashes: 0,
    clashResolve: 0,
    insertFailed: 0,
    drop: 0,
    raceRate: 0,
    raceRatio: null,
    lostOrRetried: 0,
    lost: 0,
    retried: 0,
    paced: 0,
    addedDelayP50Us: null,
    latencyUs: { A: empty, AAAA: empty, lookup: empty },
    racingPairsSeen: null,
    cpuSeconds: 0,
  };
}

export async function runLab(opts: LabOptions): Promise<{ result: LabResult; samples: LatencySamples }> {
  const cases = opts.cases ?? ALL_CASES;
  const caps: Capabilities = await probe();
  const topo = await buildTopology({ dnat: opts.dnat ?? 'iptables' });
  const client = (opts.client ?? 'pod') === 'host' ? topo.node : topo.pod;
  // the real resolvers read resolv.conf: it points at the DNS Service, as kubelet writes it
  // for pods (and for hostNetwork pods with dnsPolicy ClusterFirstWithHostNet)
  client.writeResolvConf([VIP]);
  const rows: LabRow[] = [];
  const samples: LatencySamples = new Map();
  const pinDir = `/sys/fs/bpf/dnspacer-lab-${process.pid}`;
  let classifier: Classifier | undefined;
  const stopSignals = () => {
    void topo.destroy().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopSignals);
  process.once('SIGTERM', stopSignals);
  try {
    for (const [i, c] of cases.entries()) {
      const label = `${rowKey({ mode: c.mode, placement: c.placement, policy: c.policy ?? '' })} (${i + 1}/${cases.length})`;
      const reason = c.mode === 'none' ? undefined : whyNot(c.mode, c.placement as ConcretePlacement, caps, { canEnterNetns: true, hasDevices: true });
      if (reason) {
        rows.push(unsupportedRow(c, reason));
        opts.onProgress?.(label, opts.pairs, opts.pairs);
        continue;
      }
      let mitigation: Mitigation | undefined;
      if (c.mode !== 'none') {
        if (c.mode !== 'iptables-netem') classifier ??= Classifier.load();
        const plan: Plan = { mode: c.mode, placement: c.placement as ConcretePlacement, serializeVia: 'classify' };
        const settings = { ...DEFAULTS, ...opts.pacing, policy: c.policy ?? DEFAULTS.policy, traceRate: 1_000_000 };
        mitigation = new Mitigation(plan, settings, c.mode === 'iptables-netem' ? null : classifier!, new Journal(), {
          nodeNetns: topo.node.path,
          pinDir,
        });
        await mitigation.start();
        for (const t of targetsFor(topo, c.placement as ConcretePlacement)) await mitigation.add(t);
      }
      const delays: number[] = [];
      const trace = classifier && mitigation && c.mode !== 'iptables-netem' ? classifier.trace() : undefined;
      const collecting = (async () => {
        if (!trace) return;
        for await (const ev of trace) if (ev.isDns && ev.delayNs > 0n) delays.push(Number(ev.delayNs) / 1000);
      })();
      try {
        const countersBefore = classifier && mitigation ? classifier.counters() : undefined;
        const before = await readConntrackStats({ netns: topo.node.path });
        const cpu0 = cpuBusySeconds();
        const load = opts.load ?? 'racer';
        const onPair = (n: number) => opts.onProgress?.(label, n, opts.pairs);
        const outcome =
          load === 'racer'
            ? await runRacer(client, opts.pairs, opts.timeoutMs ?? 1000, onPair)
            : load === 'dnsperf'
              ? await runDnsperf(client, opts.pairs, opts.timeoutMs ?? 1000, onPair)
              : await runLookups(client, load, opts.pairs, onPair);
        const cpu1 = cpuBusySeconds();
        const d = diffStats(await readConntrackStats({ netns: topo.node.path }), before);
        const countersAfter = classifier && mitigation ? classifier.counters() : undefined;
        await new Promise((r) => setTimeout(r, 50)); // let the last trace events arrive
        const clashes = d.clashResolve + d.insertFailed + d.drop;
        const sortedDelays = [...delays].sort((a, b) => a - b);
        rows.push({
          mode: c.mode,
          placement: c.placement,
          policy: c.policy ?? '',
          supported: true,
          reason: c.mode === 'none' ? 'no mitigation' : `applied at ${c.placement}`,
          pairs: opts.pairs,
          clashes,
          clashResolve: d.clashResolve,
          insertFailed: d.insertFailed,
          drop: d.drop,
          raceRate: clashes / opts.pairs,
          raceRatio: null,
          lostOrRetried: outcome.lost + outcome.retried,
          lost: outcome.lost,
          retried: outcome.retried,
          paced: countersAfter && countersBefore ? Number(countersAfter.paced - countersBefore.paced) : 0,
          addedDelayP50Us: sortedDelays.length ? sortedDelays[Math.floor((sortedDelays.length - 1) / 2)]! : null,
          latencyUs: { A: pct(outcome.a), AAAA: pct(outcome.aaaa), lookup: pct(outcome.lookup) },
          racingPairsSeen: countersAfter && countersBefore ? Number(countersAfter.racingDnsPairs - countersBefore.racingDnsPairs) : null,
          cpuSeconds: Math.round((cpu1 - cpu0) * 100) / 100,
        });
        samples.set(rowKey({ mode: c.mode, placement: c.placement, policy: c.policy ?? '' }), outcome.lookup);
      } finally {
        await trace?.return?.();
        await collecting;
        const failures = (await mitigation?.stop()) ?? [];
        if (failures.length) throw new Error(`could not undo the ${c.mode} setup: ${failures.join('; ')}`);
      }
    }
  } finally {
    process.off('SIGINT', stopSignals);
    process.off('SIGTERM', stopSignals);
    classifier?.close();
    fs.rmSync(pinDir, { recursive: true, force: true });
    await topo.destroy();
  }
  const none = rows.find((r) => r.mode === 'none' && r.supported);
  for (const r of rows) {
    if (r.supported && none && none.raceRate > 0) r.raceRatio = r.raceRate / none.raceRate;
  }
  return {
    result: {
      kernel: os.release(),
      date: new Date().toISOString(),
      pairs: opts.pairs,
      load: opts.load ?? 'racer',
      client: opts.client ?? 'pod',
      command: opts.command ?? 'dnspacer lab',
      pacing: {
        delayUs: (opts.pacing?.delayNs ?? DEFAULTS.delayNs) / 1000,
        gapUs: (opts.pacing?.gapNs ?? DEFAULTS.gapNs) / 1000,
        windowUs: (opts.pacing?.windowNs ?? DEFAULTS.windowNs) / 1000,
      },
      rows,
    },
    samples,
  };
}
