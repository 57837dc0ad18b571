import { expect, it } from 'vitest';
import { conntrackInUse, diffStats, parseConntrackStat } from '../../src/lab/conntrack.js';

// Two CPUs, as /proc/net/stat/nf_conntrack prints them on 6.x kernels
const SAMPLE = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000000c  00000a0b 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000001 00000000 00000000  00000000 00000000 00000000 00000000
0000000c  00000005 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000004 00000000  00000000 00000000 00000000 00000000
`;

it('sums the per-CPU hex rows by column name', () => {
  expect(parseConntrackStat(SAMPLE)).toEqual({ clashResolve: 0xa0b + 5, insertFailed: 2, drop: 4, earlyDrop: 4 });
});

it('reads kernels without a clashres column as zero clashes resolved', () => {
  const old = 'entries searched found new invalid ignore delete delete_list insert insert_failed drop early_drop\n00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000007 00000001 00000000\n';
  expect(parseConntrackStat(old)).toEqual({ clashResolve: 0, insertFailed: 7, drop: 1, earlyDrop: 0 });
});

it('diffs two samples', () => {
  const a = { clashResolve: 10, insertFailed: 1, drop: 2, earlyDrop: 0 };
  expect(diffStats({ clashResolve: 15, insertFailed: 1, drop: 3, earlyDrop: 0 }, a)).toEqual({ clashResolve: 5, insertFailed: 0, drop: 1, earlyDrop: 0 });
});

it('tells a namespace whose conntrack is in use from an idle one', () => {
  expect(conntrackInUse(SAMPLE)).toBe(true);
  const idle = 'entries  clashres found new\n00000000  00000000 00000000 00000000\n00000000  00000000 00000000 00000000\n';
  expect(conntrackInUse(idle)).toBe(false);
  expect(conntrackInUse(idle.replace(/00000000\n$/, '0000000a\n'))).toBe(true);
});
