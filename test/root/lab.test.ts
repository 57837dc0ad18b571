// A short lab run on this kernel: the race must reproduce under `none`, `serialize`
// must remove it, modes this kernel lacks must be reported with a reason, and the
// JSON and HTML must carry what users read.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { describeRoot } from '../helpers/root.js';
import { assertWellFormed } from '../helpers/html.js';

describeRoot('dnspacer lab', () => {
  it('reproduces the race under none and removes it with serialize at host placement', { timeout: 240_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-lab-'));
    const report = path.join(dir, 'lab.html');
    try {
      const r = await execa('node', ['dist/cli.js', 'lab', '--pairs', '3000', '--modes', 'none,observe@host,serialize@host,edt/pairs@pod,bpf-netem/aaaa@pod', '--json', '--report', report], { reject: false });
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const result = JSON.parse(String(r.stdout));
      expect(result).toMatchObject({ kernel: os.release(), pairs: 3000 });
      expect(typeof result.date).toBe('string');
      const row = (mode: string, placement: string) => result.rows.find((x: { mode: string; placement: string }) => x.mode === mode && x.placement === placement);
      const none = row('none', '-');
      const serialize = row('serialize', 'host');
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
      // serialize removes it: at most 0.1 % of the none rate, nothing lost or retried
      expect(serialize.supported).toBe(true);
      expect(serialize.raceRate).toBeLessThanOrEqual(none.raceRate * 0.001);
      expect(serialize.lostOrRetried).toBe(0);
      expect(serialize.racingPairsSeen).toBeGreaterThanOrEqual(3000 * 0.9);
      // observe counts the racing pairs it sees
      expect(row('observe', 'host').racingPairsSeen).toBeGreaterThanOrEqual(3000 * 0.9);
      // this kernel lacks sch_fq and sch_prio: reported, not crashed
      for (const [mode, feature] of [['edt', 'sch_fq'], ['bpf-netem', 'sch_prio']]) {
        const x = row(mode!, 'pod');
        if (x.supported) expect(x.raceRate).toBeLessThanOrEqual(none.raceRate * 0.001);
        else expect(x.reason).toContain(feature);
      }
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

  it('rejects a bad option with one line naming it, exit 2', async () => {
    const r = await execa('node', ['dist/cli.js', 'lab', '--pairs', 'many'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr).trim()).toBe('dnspacer: invalid pairs: "many" is not a whole number from 10 to 1000000');
    const m = await execa('node', ['dist/cli.js', 'lab', '--modes', 'fast@moon'], { reject: false });
    expect(m.exitCode).toBe(2);
    expect(String(m.stderr).trim().split('\n')).toHaveLength(1);
    expect(String(m.stderr)).toMatch(/invalid modes: "fast@moon" is not a lab row; accepted: none, observe@host/);
  });
});
