import { describe, expect, it } from 'vitest';
import { renderHtml, renderTable, rowKey, type LabResult, type LabRow } from '../../src/lab/report.js';
import { cdf, percentile, summarize } from '../../src/lab/stats.js';
import { assertWellFormed } from '../helpers/html.js';

function row(mode: string, clashes: number, extra: Partial<LabRow> = {}): LabRow {
  const p = { p50: 300, p90: 400, p99: 900, max: 1200 };
  return {
    mode, placement: mode === 'none' ? '-' : 'host', policy: '', supported: true, reason: '', pairs: 1000,
    clashes, clashResolve: clashes, insertFailed: 0, drop: 0, raceRate: clashes / 1000, raceRatio: clashes / 400,
    lostOrRetried: 0, lost: 0, retried: 0, paced: 0, addedDelayP50Us: null,
    latencyUs: { A: p, AAAA: p, lookup: p }, racingPairsSeen: 1000, cpuSeconds: 1, ...extra,
  };
}

const result: LabResult = {
  kernel: '6.18.44',
  date: '2026-11-22T14:00:00Z',
  pairs: 1000,
  load: 'racer',
  client: 'pod',
  command: 'dnspacer lab --pairs 1000',
  pacing: { delayUs: 1000, gapUs: 100, windowUs: 2000 },
  rows: [
    row('none', 400),
    row('serialize', 0),
    row('edt', 1, { policy: 'pairs', placement: 'pod', paced: 990, addedDelayP50Us: 100 }),
    { ...row('bpf-netem', 0), supported: false, reason: 'sch_prio is not in this kernel <x>' },
  ],
};

describe('lab report', () => {
  it('computes nearest-rank percentiles and CDFs', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(summarize(xs)).toEqual({ n: 100, p50: 50, p90: 90, p99: 99, max: 100 });
    expect(Number.isNaN(percentile([], 50))).toBe(true);
    const c = cdf(xs, 10);
    expect(c[c.length - 1]).toEqual({ x: 100, y: 1 });
    expect(c.every((p, i) => i === 0 || (p.x >= c[i - 1]!.x && p.y > c[i - 1]!.y))).toBe(true);
  });

  it('renders a table with a row per mode, ratios and unsupported reasons', () => {
    const text = renderTable(result);
    const lines = text.trim().split('\n');
    expect(lines[0]).toBe('kernel 6.18.44, 2026-11-22T14:00:00Z, 1000 racing pairs per row from a pod, delay 1000 us, gap 100 us, window 2000 us');
    expect(renderTable({ ...result, client: 'host' }).split('\n')[0]).toContain('per row from a host-network client (DNAT in OUTPUT),');
    expect(lines).toHaveLength(2 + 1 + 4);
    expect(lines.find((l) => l.startsWith('none'))).toMatch(/40\.0%\s+1\.00x/);
    expect(lines.find((l) => l.startsWith('serialize'))).toMatch(/\b0%\s+0x/);
    expect(lines.find((l) => l.startsWith('edt/pairs'))).toMatch(/pod .* 990\s+100us/);
    expect(lines.find((l) => l.startsWith('bpf-netem'))).toMatch(/unsupported: sch_prio is not in this kernel/);
  });

  it('renders a well-formed self-contained page with CDFs and bars', () => {
    const samples = new Map([
      [rowKey(result.rows[0]!), [300, 500, 1_000_000]],
      [rowKey(result.rows[1]!), [310, 320, 330]],
    ]);
    const html = renderHtml(result, samples);
    assertWellFormed(html);
    expect(html).not.toMatch(/<script|src=|href=/);
    expect(html).toContain('sch_prio is not in this kernel &lt;x&gt;');
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html.match(/<path d="M/g)).toHaveLength(2);
  });

  it('catches broken markup', () => {
    expect(() => assertWellFormed('<html><body><p>x</body></html>')).toThrow();
  });
});
