// The lab's results: the JSON shape, the terminal table and the HTML page. Pure.
import { cdf } from './stats.js';

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LabRow {
  mode: string;
  placement: string;
  /** e.g. "pairs" or "aaaa" for edt; "" otherwise */
  policy: string;
  supported: boolean;
  reason: string;
  pairs: number;
  /** clash_resolve + insert_failed + drop in the node's conntrack during the run */
  clashes: number;
  clashResolve: number;
  insertFailed: number;
  drop: number;
  raceRate: number;
  /** rate relative to the `none` row of the same run (1 = unchanged) */
  raceRatio: number | null;
  lostOrRetried: number;
  lost: number;
  retried: number;
  paced: number;
  addedDelayP50Us: number | null;
  latencyUs: { A: Percentiles; AAAA: Percentiles; lookup: Percentiles };
  racingPairsSeen: number | null;
  cpuSeconds: number;
  /** real resolvers, where run: lookups that failed or took longer than a second */
  resolvers?: Record<string, { lookups: number; failed: number; slow: number; p50Us: number; p99Us: number }>;
}

export interface LabResult {
  kernel: string;
  date: string;
  pairs: number;
  /** what sent the queries: racer (pairs), or glibc / musl getaddrinfo (lookups) */
  load: string;
  /** where the load ran: pod (DNAT in the node's PREROUTING) or host (hostNetwork, DNAT in OUTPUT) */
  client: string;
  command: string;
  /** the pacing settings every row ran with */
  pacing: { delayUs: number; gapUs: number; windowUs: number };
  rows: LabRow[];
}

/** Whole-lookup latency samples per row, for the CDFs. */
export type LatencySamples = Map<string, number[]>;

/** "3000 racing pairs per row from a pod" */
export function describeLoad(result: Pick<LabResult, 'pairs' | 'load' | 'client'>): string {
  const what = result.load === 'racer' ? 'racing pairs' : result.load === 'dnsperf' ? 'A + AAAA query pairs from dnsperf' : `${result.load} lookups`;
  const from = result.client === 'host' ? 'a host-network client (DNAT in OUTPUT)' : 'a pod';
  return `${result.pairs} ${what} per row from ${from}`;
}

export function rowKey(row: Pick<LabRow, 'mode' | 'placement' | 'policy'>): string {
  return [row.mode, row.policy, row.placement].filter((x) => x !== '').join('/');
}

function fmtUs(us: number | null | undefined): string {
  if (us === null || us === undefined || Number.isNaN(us)) return '-';
  if (us >= 10_000) return `${(us / 1000).toFixed(0)}ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(1)}ms`;
  return `${Math.round(us)}us`;
}

function fmtPct(x: number): string {
  if (x === 0) return '0%';
  if (x < 0.001) return `${(x * 100).toFixed(3)}%`;
  return `${(x * 100).toFixed(1)}%`;
}

function fmtRatio(r: number | null): string {
  if (r === null) return '-';
  if (r === 0) return '0x';
  return r < 0.01 ? `${r.toExponential(1)}x` : `${r.toFixed(2)}x`;
}

/** Fixed-width terminal table, one row per mode/placement. */
export function renderTable(result: LabResult): string {
  // a resolver load times whole lookups; the racer times A and AAAA apart
  const lookups = result.load === 'glibc' || result.load === 'musl';
  const header = ['mode', 'placement', lookups ? 'lookups' : 'pairs', 'clashes', 'race rate', 'vs none', 'lost/retry', 'paced', 'delay p50', lookups ? 'lkp p50' : 'A p50', lookups ? 'lkp p99' : 'A p99', 'AAAA p50', 'AAAA p99', 'racing seen'];
  const lines: string[][] = [header];
  for (const r of result.rows) {
    const mode = r.policy ? `${r.mode}/${r.policy}` : r.mode;
    if (!r.supported) {
      lines.push([mode, r.placement, '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', `unsupported: ${r.reason}`]);
      continue;
    }
    lines.push([
      mode,
      r.placement,
      String(r.pairs),
      String(r.clashes),
      fmtPct(r.raceRate),
      fmtRatio(r.raceRatio),
      String(r.lostOrRetried),
      String(r.paced),
      fmtUs(r.addedDelayP50Us),
      fmtUs(lookups ? r.latencyUs.lookup.p50 : r.latencyUs.A.p50),
      fmtUs(lookups ? r.latencyUs.lookup.p99 : r.latencyUs.A.p99),
      fmtUs(r.latencyUs.AAAA.p50),
      fmtUs(r.latencyUs.AAAA.p99),
      r.racingPairsSeen === null ? '-' : String(r.racingPairsSeen),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.filter((l) => !l[13]?.startsWith('unsupported') || i < 2).map((l) => (l[i] ?? '').length)));
  const out = lines.map((l) => {
    if (l[13]?.startsWith('unsupported')) return [l[0]!.padEnd(widths[0]!), l[1]!.padEnd(widths[1]!), l[13]].join('  ');
    return l.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  });
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const p = result.pacing;
  return `kernel ${result.kernel}, ${result.date}, ${describeLoad(result)}, delay ${p.delayUs} us, gap ${p.gapUs} us, window ${p.windowUs} us\n${out.join('\n')}\n`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** Latency CDFs of whole lookups, log-scaled x axis, one line per row. */
function cdfSvg(result: LabResult, samples: LatencySamples): string {
  const W = 720;
  const H = 360;
  const M = { l: 60, r: 20, t: 20, b: 50 };
  const series = result.rows
    .filter((r) => r.supported && (samples.get(rowKey(r))?.length ?? 0) > 0)
    .map((r, i) => ({ label: `${rowKey(r)}`, color: PALETTE[i % PALETTE.length]!, points: cdf(samples.get(rowKey(r))!) }));
  const all = series.flatMap((s) => s.points.map((p) => Math.max(1, p.x)));
  const minX = all.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...all)))) : 1;
  const maxX = all.length ? Math.pow(10, Math.ceil(Math.log10(Math.max(...all) + 1))) : 10;
  const sx = (x: number) => M.l + ((Math.log10(Math.max(x, minX)) - Math.log10(minX)) / (Math.log10(maxX) - Math.log10(minX) || 1)) * (W - M.l - M.r);
  const sy = (y: number) => H - M.b - y * (H - M.t - M.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + series.length * 18}" viewBox="0 0 ${W} ${H + series.length * 18}" role="img" aria-label="Lookup latency CDF">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H + series.length * 18}" fill="#fff"/>`);
  for (let d = minX; d <= maxX; d *= 10) {
    parts.push(`<line x1="${sx(d).toFixed(1)}" y1="${M.t}" x2="${sx(d).toFixed(1)}" y2="${H - M.b}" stroke="#ddd"/>`);
    parts.push(`<text x="${sx(d).toFixed(1)}" y="${H - M.b + 16}" font-size="11" text-anchor="middle">${escapeHtml(fmtUs(d))}</text>`);
  }
  for (const y of [0, 0.5, 0.9, 0.99, 1]) {
    parts.push(`<line x1="${M.l}" y1="${sy(y).toFixed(1)}" x2="${W - M.r}" y2="${sy(y).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${M.l - 6}" y="${(sy(y) + 4).toFixed(1)}" font-size="11" text-anchor="end">${y}</text>`);
  }
  parts.push(`<text x="${(W / 2).toFixed(0)}" y="${H - 10}" font-size="12" text-anchor="middle">whole lookup latency (A + AAAA answered), log scale</text>`);
  for (const s of series) {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
  }
  series.forEach((s, i) => {
    const y = H + 4 + i * 18;
    parts.push(`<rect x="${M.l}" y="${y}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${M.l + 18}" y="${y + 10}" font-size="12">${escapeHtml(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Race rate per row as horizontal bars. */
function barsSvg(result: LabResult): string {
  const rows = result.rows.filter((r) => r.supported);
  const W = 720;
  const rowH = 22;
  const labelW = 220;
  const H = 20 + rows.length * rowH;
  const max = Math.max(1e-9, ...rows.map((r) => r.raceRate));
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="Race rate per mode">`];
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  rows.forEach((r, i) => {
    const y = 10 + i * rowH;
    const w = (r.raceRate / max) * (W - labelW - 90);
    parts.push(`<text x="${labelW - 8}" y="${y + 14}" font-size="12" text-anchor="end">${escapeHtml(`${rowKey(r)}`)}</text>`);
    parts.push(`<rect x="${labelW}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${r.mode === 'none' || r.mode === 'observe' ? '#d62728' : '#2ca02c'}"/>`);
    parts.push(`<text x="${(labelW + w + 6).toFixed(1)}" y="${y + 14}" font-size="12">${escapeHtml(`${fmtPct(r.raceRate)} (${r.clashes}/${r.pairs})`)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A self-contained page: no scripts, no external resources. */
export function renderHtml(result: LabResult, samples: LatencySamples): string {
  const rows = result.rows
    .map((r) => {
      const cells = r.supported
        ? [r.pairs, r.clashes, fmtPct(r.raceRate), fmtRatio(r.raceRatio), r.lostOrRetried, r.paced, fmtUs(r.addedDelayP50Us), fmtUs(r.latencyUs.A.p50), fmtUs(r.latencyUs.A.p99), fmtUs(r.latencyUs.AAAA.p50), fmtUs(r.latencyUs.AAAA.p99), r.racingPairsSeen ?? '-']
            .map((c) => `<td>${escapeHtml(String(c))}</td>`)
            .join('')
        : `<td colspan="12">unsupported: ${escapeHtml(r.reason)}</td>`;
      return `<tr><th scope="row">${escapeHtml(r.policy ? `${r.mode}/${r.policy}` : r.mode)}</th><td>${escapeHtml(r.placement)}</td>${cells}</tr>`;
    })
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dnspacer lab: kernel ${escapeHtml(result.kernel)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th[scope=row], td:nth-child(2) { text-align: left; }
caption { text-align: left; font-weight: bold; margin-bottom: 0.5em; }
</style>
</head>
<body>
<h1>dnspacer lab</h1>
<p>Kernel ${escapeHtml(result.kernel)}, ${escapeHtml(result.date)}, ${escapeHtml(describeLoad(result))}; delay ${result.pacing.delayUs} µs, gap ${result.pacing.gapUs} µs, window ${result.pacing.windowUs} µs. Command: <code>${escapeHtml(result.command)}</code>.</p>
<p>A clash is a conntrack entry created by two packets of one 5-tuple at once on two CPUs (clash_resolve + insert_failed + drop in the node namespace). The race rate is clashes per pair; "vs none" compares it to the unmitigated row of this same run.</p>
<table>
<caption>Side by side</caption>
<thead><tr><th>mode</th><th>placement</th><th>pairs</th><th>clashes</th><th>race rate</th><th>vs none</th><th>lost or retried</th><th>paced</th><th>delay p50</th><th>A p50</th><th>A p99</th><th>AAAA p50</th><th>AAAA p99</th><th>racing pairs seen</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<h2>Race rate</h2>
${barsSvg(result)}
<h2>Lookup latency</h2>
${cdfSvg(result, samples)}
</body>
</html>
`;
}
