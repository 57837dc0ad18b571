// Shared by the tests that need root and a real kernel.
import os from 'node:os';
import { describe, it } from 'vitest';
import type { Capabilities } from '../../src/modes.js';

export const isRoot = process.getuid?.() === 0;

/** Set inside the stock-kernel VM tier (test/vm), where every kernel feature must be present. */
export const kernelTier = process.env.DNSPACER_KERNEL_TIER;

/** The VM runs 10-20x slower under TCG: timeouts scale, assertions stay on counts and ratios. */
export const timeScale = kernelTier ? 15 : 1;
export const slow = (ms: number): number => ms * timeScale;

const kernel = `[kernel ${os.release()}]`;

/** describe() that, without root, is skipped under a name saying so. Names carry the kernel. */
export function describeRoot(name: string, fn: () => void): void {
  if (isRoot) describe(`${name} ${kernel}`, fn);
  else describe.skip(`${name} ${kernel} [skipped: needs root (CAP_BPF, CAP_NET_ADMIN)]`, fn);
}

/** describeRoot() for tests of kernel features this machine may lack (sch_fq, netem, ...).
 * Without them the suite is skipped under a name that says which, except in the VM tier,
 * where a missing feature fails. */
export function describeWithFeatures(name: string, caps: Capabilities | undefined, features: (keyof Capabilities)[], fn: () => void): void {
  const lacking = caps ? features.filter((f) => !caps[f].ok).map((f) => caps[f].reason ?? f) : [];
  if (!isRoot || !lacking.length) return describeRoot(name, fn);
  if (kernelTier) {
    describe(`${name} ${kernel}`, () => {
      it('has the kernel features it tests', () => {
        throw new Error(`the VM tier kernel ${kernelTier} lacks: ${lacking.join('; ')}`);
      });
    });
    return;
  }
  describe.skip(`${name} ${kernel} [skipped: this kernel lacks ${lacking.join('; ')}; runs in the VM tier, npm run test:kernel]`, fn);
}

export function monotonicNs(): bigint {
  // libuv's hrtime is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns and sch_fq.
  return process.hrtime.bigint();
}
