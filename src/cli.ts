#!/usr/bin/env node
// dnspacer's command line: lab, probe, status, trace, agent.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from './args.js';
import { ConfigError, DEFAULTS, buildConfig } from './config.js';

/** --pin-dir of status and trace: where the agent's maps are pinned. */
function pinDirOf(value: string | undefined): string {
  return buildConfig(value ? { pinDir: value } : {}).pinDir;
}
import { renderHtml, renderTable } from './lab/report.js';
import { ALL_CASES, CLIENTS, type Client, LOADS, type LabCase, type Load, runLab } from './lab/run.js';
import { probe } from './probe.js';
import { runAgent } from './agent.js';
import { UnsupportedError } from './modes.js';
import { Journal } from './netops.js';
import { readSerializeQueue } from './apply.js';
import { loadAddon } from './datapath/addon.js';
import { COUNTER_FIELDS, MAX_SLOTS, addCounters, decodeConfig, decodeEvent, decodePrefixKey, sumPerCpuCounters, u32Key, zeroCounters } from './datapath/layout.js';
import { qtypeName } from './dns.js';

const require = createRequire(import.meta.url);
const VERSION = (require('../package.json') as { version: string }).version;

const USAGE = `dnspacer ${VERSION}: stops the conntrack race that stalls parallel DNS lookups

usage: dnspacer <command> [options]

commands:
  lab      reproduce the race in network namespaces and measure every mitigation (root)
           --pairs N           racing pairs per row (default 3000)
           --modes LIST        rows to run, e.g. none,serialize@host,edt/pairs@pod (default: all)
           --dnat iptables|nft how the node DNATs the DNS Service (default iptables)
           --load racer|glibc|musl|dnsperf  the 2-thread racer (default); getaddrinfo loops of
                               glibc or musl (--pairs is then the number of lookups); or
                               dnsperf, sustained A + AAAA load from 8 sockets on 2 threads
           --client pod|host   where the load runs: a pod (default), or the node itself as a
                               hostNetwork pod, its queries DNATed in OUTPUT
           --delay, --gap, --window  pacing settings, as for the agent (default 1ms, 100us, 2ms)
           --json              print the result as JSON instead of a table
           --report FILE       also write a self-contained HTML report
  probe    test what this kernel can do, in a scratch namespace (root)
           --json
  agent    run on a node: probe, choose a mode, apply it before conntrack, serve metrics
           (see README for every option; --mode, --placement, --interfaces, --dns-port, ...)
  status   mode, placement, interfaces, live settings, counters and the serializing IFB's
           drops of the running agent
           [--json] [--state-file F] [--pin-dir D]
  trace    stream racing pairs from the running agent's classifier [--json] [--pin-dir D]
  --help, --version
`;

export class UsageError extends Error {}

/** One command's lines of USAGE: its line and the indented option lines under it. */
function commandUsage(command: string): string {
  const lines = USAGE.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  ${command} `));
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => !l.startsWith('           '));
  return `usage: dnspacer ${command} [options]\n${[lines[start], ...rest.slice(0, end)].join('\n')}\n`;
}

function parseCases(text: string): LabCase[] {
  return text.split(',').map((item) => {
    const s = item.trim();
    const [modePart, placement = '-'] = s.split('@') as [string, string?];
    const [mode, policy] = modePart.split('/') as [string, string?];
    const found = ALL_CASES.find((c) => c.mode === mode && c.placement === (mode === 'none' ? '-' : placement) && (policy === undefined || c.policy === policy));
    if (!found) {
      const known = ALL_CASES.map((c) => (c.mode === 'none' ? 'none' : `${c.mode}${c.policy ? `/${c.policy}` : ''}@${c.placement}`)).join(', ');
      throw new ConfigError('modes', `"${s}" is not a lab row; accepted: ${known}`);
    }
    return found;
  });
}

async function lab(argv: string[]): Promise<number> {
  const a = parseArgs(argv, { values: ['--pairs', '--modes', '--dnat', '--report', '--delay', '--gap', '--window', '--load', '--client'], switches: ['--json', '--help'] });
  if (a.switches.has('--help')) {
    process.stdout.write(commandUsage('lab'));
    return 0;
  }
  const pairsText = a.values.get('--pairs') ?? '3000';
  const pairs = Number(pairsText);
  if (!/^\d+$/.test(pairsText) || pairs < 10 || pairs > 1_000_000) throw new ConfigError('pairs', `"${pairsText}" is not a whole number from 10 to 1000000`);
  const dnat = a.values.get('--dnat') ?? 'iptables';
  if (dnat !== 'iptables' && dnat !== 'nft') throw new ConfigError('dnat', `"${dnat}" is not one of iptables, nft`);
  const load = (a.values.get('--load') ?? 'racer') as Load;
  if (!LOADS.includes(load)) throw new ConfigError('load', `"${load}" is not one of ${LOADS.join(', ')}`);
  const client = (a.values.get('--client') ?? 'pod') as Client;
  if (!CLIENTS.includes(client)) throw new ConfigError('client', `"${client}" is not one of ${CLIENTS.join(', ')}`);
  const cases = a.values.has('--modes') ? parseCases(a.values.get('--modes')!) : undefined;
  const report = a.values.get('--report');
  const pacing = buildConfig(
    Object.fromEntries((['delay', 'gap', 'window'] as const).filter((k) => a.values.has(`--${k}`)).map((k) => [k, a.values.get(`--${k}`)])),
  );
  if (process.getuid?.() !== 0) throw new UsageError('dnspacer lab needs root: it creates network namespaces and loads BPF');
  const tty = process.stderr.isTTY;
  let lastDraw = 0;
  const { result, samples } = await runLab({
    pairs,
    dnat,
    load,
    client,
    pacing: { delayNs: pacing.delayNs, gapNs: pacing.gapNs, windowNs: pacing.windowNs },
    ...(cases ? { cases } : {}),
    command: ['dnspacer', 'lab', ...argv].join(' '),
    onProgress: (label, done, total) => {
      const now = Date.now();
      if (done < total && now - lastDraw < 100) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round((done / total) * width);
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${label} ${done}/${total}`;
      if (tty) process.stderr.write(`\r${bar.padEnd(100)}`);
      else if (done === total) process.stderr.write(`${bar}\n`);
    },
  });
  if (tty) process.stderr.write('\r'.padEnd(101) + '\r');
  if (a.switches.has('--json')) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(renderTable(result));
  if (report) {
    fs.writeFileSync(report, renderHtml(result, samples));
    process.stderr.write(`report written to ${report}\n`);
  }
  return 0;
}

async function probeCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, { values: [], switches: ['--json'] });
  const caps = await probe();
  if (a.switches.has('--json')) process.stdout.write(`${JSON.stringify(caps, null, 2)}\n`);
  else for (const [k, v] of Object.entries(caps)) process.stdout.write(`${k.padEnd(18)} ${v.ok ? 'yes' : `no   ${v.reason}`}\n`);
  return 0;
}

function status(argv: string[]): number {
  const a = parseArgs(argv, { values: ['--state-file', '--pin-dir'], switches: ['--json'] });
  const pinDir = pinDirOf(a.values.get('--pin-dir'));
  const stateFile = a.values.get('--state-file') ?? DEFAULTS.stateFile;
  if (!fs.existsSync(stateFile)) throw new UsageError(`no agent state at ${stateFile}: the agent is not running here (or runs with another --state-file)`);
  const journal = Journal.load(stateFile);
  const interfaces = journal.entries().flatMap((c) => (c.kind === 'bpf-filter' ? [{ interface: c.dev, direction: c.direction, netns: c.netns ?? '' }] : []));
  let counters = zeroCounters();
  const addon = loadAddon();
  if (fs.existsSync(`${pinDir}/counters`)) {
    const fd = addon.objGet(`${pinDir}/counters`);
    try {
      for (let slot = 0; slot < MAX_SLOTS; slot++) {
        const v = addon.mapLookup(fd, u32Key(slot));
        if (v) counters = addCounters(counters, sumPerCpuCounters(v));
      }
    } finally {
      addon.closeFd(fd);
    }
  }
  const classifier = fs.existsSync(`${pinDir}/config`) ? liveClassifierConfig(pinDir) : undefined;
  // the serializing IFB's queue: drops there are queries one IFB could not take
  const serializeQueues = journal.entries().flatMap((c) => (c.kind === 'ifb' ? [readSerializeQueue(c.name, c.netns)] : [])).filter((q) => q !== null);
  const out = {
    mode: journal.meta?.mode ?? 'unknown',
    placement: journal.meta?.placement ?? 'unknown',
    interfaces,
    ...(classifier ? { classifier } : {}),
    ...(serializeQueues.length ? { serializeQueues } : {}),
    counters: Object.fromEntries(COUNTER_FIELDS.map((f) => [f, Number(counters[f])])),
  };
  if (a.switches.has('--json')) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else {
    process.stdout.write(`mode ${out.mode} at ${out.placement} placement, ${interfaces.length} interface(s)\n`);
    for (const i of interfaces) process.stdout.write(`  ${i.interface} ${i.direction}${i.netns ? ` in ${i.netns}` : ''}\n`);
    if (classifier) {
      const c = classifier;
      process.stdout.write(`  policy ${c.policy}, delay ${c.delayUs} us, window ${c.windowUs} us, gap ${c.gapUs} us, ports ${c.dnsPorts.join(',')}, destinations ${c.dnsPrefixes.join(',') || 'any'}\n`);
    }
    for (const q of serializeQueues) process.stdout.write(`  serializing through ${q.interface}: ${q.dropped} dropped at its full queue, ${q.queued} queued\n`);
    for (const [k, v] of Object.entries(out.counters)) process.stdout.write(`  ${k.padEnd(18)} ${v}\n`);
  }
  return 0;
}

/** What the running classifier applies now, from its pinned maps: the live config. */
function liveClassifierConfig(pinDir: string) {
  const addon = loadAddon();
  const read = <T>(name: string, fn: (fd: number) => T): T => {
    const fd = addon.objGet(`${pinDir}/${name}`);
    try {
      return fn(fd);
    } finally {
      addon.closeFd(fd);
    }
  };
  const c = read('config', (fd) => decodeConfig(addon.mapLookup(fd, u32Key(0))!));
  const dnsPorts = read('ports', (fd) => {
    const ports: number[] = [];
    for (let port = 1; port < 65536; port++) if (addon.mapLookup(fd, u32Key(port))?.[0]) ports.push(port);
    return ports;
  });
  const dnsPrefixes = c.matchPrefixes ? read('prefixes', (fd) => addon.mapKeys(fd).map(decodePrefixKey).sort()) : [];
  return { enabled: c.enabled, policy: c.policy, action: c.action, delayUs: Number(c.delayNs) / 1000, windowUs: Number(c.windowNs) / 1000, gapUs: Number(c.gapNs) / 1000, dnsPorts, dnsPrefixes };
}

async function trace(argv: string[]): Promise<number> {
  const a = parseArgs(argv, { values: ['--pin-dir'], switches: ['--json'] });
  const pin = `${pinDirOf(a.values.get('--pin-dir'))}/events`;
  if (!fs.existsSync(pin)) throw new UsageError(`no classifier events at ${pin}: the agent is not running here`);
  const addon = loadAddon();
  const fd = addon.objGet(pin);
  const json = a.switches.has('--json');
  if (!json) process.stdout.write('time_ns            source -> destination                      qtypes          gap_us  delay_us  action\n');
  const ring = addon.ringBufferOpen(fd, (record) => {
    const e = decodeEvent(record);
    if (json) process.stdout.write(`${JSON.stringify(e, (_, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
    else {
      const flow = `${e.saddr}:${e.sport} -> ${e.daddr}:${e.dport}`;
      const q = e.isDns ? `${qtypeName(e.qtypePrev)}+${qtypeName(e.qtype)}` : 'udp';
      process.stdout.write(`${e.tsNs}  ${flow.padEnd(42)} ${q.padEnd(15)} ${(Number(e.gapNs) / 1000).toFixed(1).padStart(7)} ${(Number(e.delayNs) / 1000).toFixed(1).padStart(9)}  ${e.action}\n`);
    }
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  ring.close();
  addon.closeFd(fd);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      case '--version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      case 'lab':
        return await lab(rest);
      case 'probe':
        return await probeCommand(rest);
      case 'agent': {
        const code = await runAgent({ argv: rest, env: process.env });
        // everything is undone (or kept on purpose); idle API keep-alive sockets must not hold the exit
        process.exit(code);
      }
      case 'status':
        return status(rest);
      case 'trace':
        return await trace(rest);
      default:
        throw new UsageError(`unknown command "${command}"; accepted: lab, probe, agent, status, trace (see dnspacer --help)`);
    }
  } catch (e) {
    if (e instanceof ConfigError || e instanceof UsageError || e instanceof UnsupportedError) {
      process.stderr.write(`dnspacer: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`dnspacer: ${(e as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
