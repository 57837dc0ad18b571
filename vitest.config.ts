import { defineConfig } from 'vitest/config';

// Inside the stock-kernel VM (test/vm) everything runs 10-20x slower under TCG, and the
// root suites share two virtual CPUs with the racer: one file at a time, longer timeouts.
const inVm = Boolean(process.env.DNSPACER_KERNEL_TIER);

export default defineConfig({
  test: {
    testTimeout: inVm ? 120_000 : 5_000,
    hookTimeout: inVm ? 300_000 : 10_000,
    fileParallelism: !inVm,
  },
});
