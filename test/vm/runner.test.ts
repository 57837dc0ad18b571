// The VM tier's runner itself: a guest's exit code comes back to the host, and a hung
// guest is killed by the timeout, reported clearly, and leaves no qemu running.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { describeRoot } from '../helpers/root.js';

const runner = path.resolve(import.meta.dirname, 'run.sh');
const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-vm-runs-'));
const firstKernel = fs.readFileSync(path.resolve(import.meta.dirname, 'kernels'), 'utf8').split('\n').find((l) => l.trim() && !l.startsWith('#'))!.split(/\s+/)[0]!;

function runVm(job: string, timeoutS: number) {
  return execa('bash', [runner, firstKernel], { reject: false, env: { DNSPACER_VM_JOB: job, DNSPACER_VM_TIMEOUT: String(timeoutS), DNSPACER_VM_RUNS: runs } });
}

const qemuFor = async () => (await execa('pgrep', ['-f', `results,mount_tag=results`], { reject: false })).stdout.split('\n').filter(Boolean).filter((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(runs));

describeRoot('VM tier runner', () => {
  afterAll(() => fs.rmSync(runs, { recursive: true, force: true }));

  it('hands the guest\'s exit code and output back to the host', { timeout: 180_000 }, async () => {
    const r = await runVm('uname -r; exit 3', 120);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`${firstKernel} \\(.*\\): FAILED \\(exit 3\\)`));
    const guestRelease = fs.readFileSync(path.join(runs, firstKernel, 'output.log'), 'utf8').trim();
    expect(guestRelease).toMatch(/^\d+\.\d+\.\d+-\S+$/);
    expect(guestRelease).not.toBe(os.release());
  });

  it('kills a hung guest at the timeout, says so, and leaves nothing running', { timeout: 180_000 }, async () => {
    const r = await runVm('sleep 600', 20);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`${firstKernel} \\(.*\\): HUNG, killed after 20s`));
    expect(await qemuFor()).toEqual([]);
  });
});
