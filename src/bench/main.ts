// `npm run bench`: the classifier's cost per packet, and what serializing through one IFB
// costs in throughput. Each prints its table with the kernel, date and command, and
// --write replaces its own section of BENCHMARKS.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from '../args.js';
import { renderBench, runBench } from './classifier.js';
import { renderThroughput, runThroughput, throughputHeader } from './ifb.js';

function positiveInt(values: Map<string, string>, flag: string, fallback: number): number {
  const raw = values.get(flag);
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid ${flag}: "${raw}" is not a positive integer`);
  return n;
}

function writeSection(file: string, title: string, body: string): void {
  const section = `## ${title}\n\n${body}\n`;
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n\n';
  const re = new RegExp(`## ${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n[\\s\\S]*?(?=\\n## |$)`);
  fs.writeFileSync(file, re.test(old) ? old.replace(re, section) : `${old.trimEnd()}\n\n${section}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs(process.argv.slice(2), { values: ['--repeat', '--rounds', '--seconds', '--only', '--write'], switches: [] });
  const repeat = positiveInt(values, '--repeat', 1_000_000);
  const rounds = positiveInt(values, '--rounds', 7);
  const seconds = positiveInt(values, '--seconds', 3);
  const only = values.get('--only');
  if (only !== undefined && only !== 'classifier' && only !== 'throughput') throw new Error(`invalid --only: "${only}" is not classifier or throughput`);
  const target = values.get('--write');
  const command = `npm run bench${process.argv.length > 4 ? ` -- ${process.argv.slice(2).filter((a, i, all) => a !== '--write' && all[i - 1] !== '--write').join(' ')}` : ''}`;

  if (only !== 'throughput') {
    const table = renderBench(runBench(repeat, rounds));
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    const header = `Kernel ${os.release()}, ${cpu} x${os.cpus().length}, ${new Date().toISOString().slice(0, 10)}. Command: \`${command}\` (BPF_PROG_TEST_RUN, repeat ${repeat}, median of ${rounds} alternating rounds).`;
    console.log(`${header}\n\n${table}\n`);
    if (target) writeSection(path.resolve(target), 'Classifier cost per packet', `${header}\n\n${table}`);
  }
  if (only !== 'classifier') {
    const opts = { seconds, rounds: Math.min(rounds, 3), threads: [...new Set([1, os.cpus().length])] };
    const table = renderThroughput(await runThroughput(opts));
    const header = throughputHeader(opts, command);
    console.log(`${header}\n\n${table}`);
    if (target) writeSection(path.resolve(target), 'Serialize: DNS throughput through one IFB', `${header}\n\n${table}`);
  }
}

main().catch((e: Error) => {
  console.error(`dnspacer bench: ${e.message}`);
  process.exit(1);
});
