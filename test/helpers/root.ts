// Shared by the tests that need root and a real kernel.
import { describe } from 'vitest';

export const isRoot = process.getuid?.() === 0;

/** describe() that, without root, is skipped under a name saying so. */
export function describeRoot(name: string, fn: () => void): void {
  if (isRoot) describe(name, fn);
  else describe.skip(`${name} [skipped: needs root (CAP_BPF, CAP_NET_ADMIN)]`, fn);
}

export function monotonicNs(): bigint {
  // libuv's hrtime is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns and sch_fq.
  return process.hrtime.bigint();
}
