// A short lab run on this kernel: the race must reproduce under `none`, `serialize`
// must remove it, modes this kernel lacks must be reported with a reason, and the
// JSON and HTML must carry what users read.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { ALL_CASES, loadProgram } from '../../src/lab/run.js';
import type { LabRow } from '../../src/lab/report.js';
import { describeRoot, kernelTier, slow } from '../helpers/root.js';
import { assertWellFormed } from '../helpers/html.js';

/** A row's name as --modes takes it: mode[/policy]@placement, or none. */
function caseName(c: { mode: string; placement: string; policy?: string }): string {
  return c.mode === 'none' ? 'none' : `${c.mode}${c.policy ? `/${c.policy}` : ''}@${c.placement}`;
}

describeRoot('dnspacer lab', () => {
  // Here: the rows this kernel can run plus two it cannot. In the VM tier: the whole
  // matrix, with pacing scaled to the guest's 10-20x slower conntrack path.
  const pairs = kernelTier ? 1000 : 3000;
  const modes = kernelTier ? ALL_CASES.map(caseName).join(',') : 'none,observe@host,serialize@host,edt/pairs@pod,bpf-netem/aaaa@pod';
  const pacing = kernelTier ? ['--delay', '5ms', '--gap', '4ms', '--window', '20ms'] : [];
  // rows at the placement that acts before the node's conntrack, which must remove the race
  const mitigating = ['serialize@host', 'edt/pairs@pod', 'edt/aaaa@pod', 'edt/pairs@host', 'bpf-netem/aaaa@pod', 'iptables-netem/aaaa@pod'];
  // Target: ≤ 0.1 % of the none rate. The VM's scheduling noise (a vCPU stalled by the
  // host for more than the gap) leaves a clash or two in a thousand pairs: ≤ 1 % there.
  const bound = kernelTier ? 0.01 : 0.001;

  it('reproduces the race under none and removes it at the right placement', { timeout: slow(240_000) }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-lab-'));
    const report = path.join(dir, 'lab.html');
    try {
      const r = await execa('node', ['dist/cli.js', 'lab', '--pairs', String(pairs), '--modes', modes, ...pacing, '--json', '--report', report], { reject: false });
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const result = JSON.parse(String(r.stdout));
      expect(result).toMatchObject({ kernel: os.release(), pairs });
      expect(typeof result.date).toBe('string');
      const row = (key: string) => result.rows.find((x: LabRow) => caseName(x) === key) as LabRow;
      const none = row('none');
      for (const x of result.rows) {
        for (const field of ['mode', 'placement', 'supported', 'reason', 'pairs', 'clashes', 'raceRate', 'lostOrRetried', 'paced', 'addedDelayP50Us', 'racingPairsSeen']) {
          expect(x, `${x.mode}@${x.placement} has ${field}`).toHaveProperty(field);
        }
        expect(x.latencyUs.A).toHaveProperty('p50');
        expect(x.latencyUs.AAAA).toHaveProperty('p99');
      }
      // the race is there: machines.md measured ~40 % on this kind of machine
      expect(none.supported).toBe(true);
      expect(none.raceRate).toBeGreaterThan(0.05);
      expect(none.clashes).toBe(none.clashResolve + none.insertFailed + none.drop);
      expect(row('observe@host').racingPairsSeen).toBeGreaterThanOrEqual(pairs * 0.9);
      for (const key of mitigating) {
        const x = row(key);
        if (!x) continue;
        if (!x.supported) {
          // this kernel lacks it: said why, never a crash; the VM tier's kernel has everything
          expect(kernelTier, `${key} unsupported in the VM tier: ${x.reason}`).toBeUndefined();
          expect(x.reason).toMatch(/sch_fq|sch_prio|sch_netem|cls_fw/);
          continue;
        }
        expect(x.raceRate, `${key} race rate against none ${none.raceRate}`).toBeLessThanOrEqual(none.raceRate * bound);
        expect(x.lostOrRetried, `${key}: no lookup stalled by a retry`).toBe(0);
      }
      expect(row('serialize@host').supported).toBe(true);
      expect(row('serialize@host').racingPairsSeen).toBeGreaterThanOrEqual(pairs * 0.9);
      assertWellFormed(fs.readFileSync(report, 'utf8'));
      expect(fs.readFileSync(report, 'utf8')).toContain('<svg');
      // nothing left behind
      const left = await execa('ip', ['netns', 'list']);
      expect(String(left.stdout)).not.toMatch(/dnsp-lab-/);
      expect(fs.readdirSync('/sys/fs/bpf').filter((f) => f.startsWith('dnspacer-lab'))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // the resolvers' behaviour does not depend on the kernel: host only, the VM tier runs the matrix
  it.skipIf(kernelTier)('drives real resolvers: glibc and musl getaddrinfo lookups all answered, none after a retry, their pairs seen', { timeout: slow(120_000) }, async () => {
    // the musl build really is musl: static, no glibc loader
    const musl = await execa('readelf', ['-l', loadProgram('lookup-musl')]);
    expect(String(musl.stdout)).not.toMatch(/INTERP/);
    for (const load of ['glibc', 'musl']) {
      const r = await execa('node', ['dist/cli.js', 'lab', '--load', load, '--pairs', '200', '--modes', 'none,serialize@host', '--json'], { reject: false });
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const result = JSON.parse(String(r.stdout));
      expect(result.load).toBe(load);
      for (const row of result.rows as LabRow[]) {
        expect(row.pairs, `${load} ${row.mode}`).toBe(200);
        expect(row.lostOrRetried, `${load} ${row.mode}`).toBe(0);
        expect(row.latencyUs.lookup.p50, `${load} ${row.mode}`).toBeGreaterThan(0);
      }
      // A and AAAA of one lookup leave one socket within the window: a racing pair each
      const serialize = (result.rows as LabRow[]).find((x) => x.mode === 'serialize')!;
      expect(serialize.racingPairsSeen, load).toBeGreaterThanOrEqual(180);
      expect(serialize.clashes, load).toBe(0);
    }
  });

  it.skipIf(kernelTier)('drives dnsperf as sustained load: every A and AAAA query answered and timed by type, the race gone under serialize', { timeout: slow(120_000) }, async () => {
    const r = await execa('node', ['dist/cli.js', 'lab', '--load', 'dnsperf', '--pairs', '2000', '--modes', 'none,serialize@host', '--json'], { reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const result = JSON.parse(String(r.stdout));
    expect(result.load).toBe('dnsperf');
    for (const row of result.rows as LabRow[]) {
      expect(row.lostOrRetried, row.mode).toBe(0);
      expect(row.latencyUs.A.p50, row.mode).toBeGreaterThan(0);
      expect(row.latencyUs.AAAA.p50, row.mode).toBeGreaterThan(0);
    }
    const serialize = (result.rows as LabRow[]).find((x) => x.mode === 'serialize')!;
    expect(serialize.clashes).toBe(0);
  });

  // What no tc placement can do, measured: a hostNetwork client's queries are DNATed in the
  // node's OUTPUT, in the sending thread's own context, before any tc hook runs.
  it.skipIf(kernelTier)('runs a host-network client through OUTPUT: the race is there, and host placement never sees its queries', { timeout: slow(120_000) }, async () => {
    const r = await execa('node', ['dist/cli.js', 'lab', '--client', 'host', '--pairs', '1000', '--modes', 'none,serialize@host', '--json'], { reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const result = JSON.parse(String(r.stdout));
    expect(result.client).toBe('host');
    const [none, serialize] = result.rows as LabRow[];
    expect(none!.raceRate).toBeGreaterThan(0.05);
    expect(none!.lostOrRetried).toBe(0);
    expect(serialize!.racingPairsSeen).toBe(0);
    expect(serialize!.raceRate).toBeGreaterThan(0.05);
    const c = await execa('node', ['dist/cli.js', 'lab', '--client', 'node'], { reject: false });
    expect(c.exitCode).toBe(2);
    expect(String(c.stderr).trim()).toBe('dnspacer: invalid client: "node" is not one of pod, host');
  });

  it('rejects a bad option with one line naming it, exit 2', { timeout: slow(10_000) }, async () => {
    const r = await execa('node', ['dist/cli.js', 'lab', '--pairs', 'many'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr).trim()).toBe('dnspacer: invalid pairs: "many" is not a whole number from 10 to 1000000');
    const m = await execa('node', ['dist/cli.js', 'lab', '--modes', 'fast@moon'], { reject: false });
    expect(m.exitCode).toBe(2);
    expect(String(m.stderr).trim().split('\n')).toHaveLength(1);
    expect(String(m.stderr)).toMatch(/invalid modes: "fast@moon" is not a lab row; accepted: none, observe@host/);
    const l = await execa('node', ['dist/cli.js', 'lab', '--load', 'java'], { reject: false });
    expect(l.exitCode).toBe(2);
    expect(String(l.stderr).trim()).toBe('dnspacer: invalid load: "java" is not one of racer, glibc, musl, dnsperf');
  });
});
