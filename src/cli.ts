#!/usr/bin/env node
// dnspacer's command line: lab, probe, status, trace, agent.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from './args.js';
import { ConfigError, MODES, PLACEMENTS, POLICIES } from './config.js';
import { renderHtml, renderTable } from './lab/report.js';
import { ALL_CASES, type LabCase, runLab } from './lab/run.js';
import { probe } from './probe.js';

const require = createRequire(import.meta.url);
const VERSION = (require('../package.json') as { version: string }).version;

const USAGE = `dnspacer ${VERSION}: stops the conntrack race that stalls parallel DNS lookups

usage: dnspacer <command> [options]

commands:
  lab      reproduce the race in network namespaces and measure every mitigation (root)
           --pairs N           racing pairs per row (default 3000)
           --modes LIST        rows to run, e.g. none,serialize@host,edt/pairs@pod (default: all)
           --dnat iptables|nft how the node DNATs the DNS Service (default iptables)
           --json              print the result as JSON instead of a table
           --report FILE       also write a self-contained HTML report
  probe    test what this kernel can do, in a scratch namespace (root)
           --json
  --help, --version
`;

export class UsageError extends Error {}

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
  const a = parseArgs(argv, { values: ['--pairs', '--modes', '--dnat', '--report'], switches: ['--json'] });
  const pairsText = a.values.get('--pairs') ?? '3000';
  const pairs = Number(pairsText);
  if (!/^\d+$/.test(pairsText) || pairs < 10 || pairs > 1_000_000) throw new ConfigError('pairs', `"${pairsText}" is not a whole number from 10 to 1000000`);
  const dnat = a.values.get('--dnat') ?? 'iptables';
  if (dnat !== 'iptables' && dnat !== 'nft') throw new ConfigError('dnat', `"${dnat}" is not one of iptables, nft`);
  const cases = a.values.has('--modes') ? parseCases(a.values.get('--modes')!) : undefined;
  const report = a.values.get('--report');
  if (process.getuid?.() !== 0) throw new UsageError('dnspacer lab needs root: it creates network namespaces and loads BPF');
  const tty = process.stderr.isTTY;
  let lastDraw = 0;
  const { result, samples } = await runLab({
    pairs,
    dnat,
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
      default:
        throw new UsageError(`unknown command "${command}"; accepted: lab, probe (see dnspacer --help)`);
    }
  } catch (e) {
    if (e instanceof ConfigError || e instanceof UsageError) {
      process.stderr.write(`dnspacer: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`dnspacer: ${(e as Error).message}\n`);
    return 1;
  }
}

void [MODES, PLACEMENTS, POLICIES];

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
