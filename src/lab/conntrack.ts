// The race's own evidence: /proc/net/stat/nf_conntrack, one row per CPU in hex,
// read inside the network namespace whose conntrack we care about. Parsing is pure.
import { run, type Where } from '../netops.js';

export interface ConntrackStats {
  clashResolve: number;
  insertFailed: number;
  drop: number;
  earlyDrop: number;
}

/** Sums the per-CPU rows. The header names the columns; `clashres` is clash_resolve. */
export function parseConntrackStat(text: string): ConntrackStats {
  const lines = text.trim().split('\n');
  const header = (lines.shift() ?? '').trim().split(/\s+/);
  const col = (name: string) => header.indexOf(name);
  const sum = (name: string): number => {
    const i = col(name);
    if (i < 0) return 0;
    return lines.reduce((acc, l) => acc + parseInt(l.trim().split(/\s+/)[i] ?? '0', 16), 0);
  };
  return { clashResolve: sum('clashres'), insertFailed: sum('insert_failed'), drop: sum('drop'), earlyDrop: sum('early_drop') };
}

/** Whether conntrack has seen anything in the namespace these statistics come from: a pod
 * netns only tracks connections when something there (a sidecar's iptables, say) hooks it. */
export function conntrackInUse(text: string): boolean {
  return text.trim().split('\n').slice(1).some((row) => /[1-9a-f]/i.test(row));
}

export async function readConntrackStats(where: Where): Promise<ConntrackStats> {
  return parseConntrackStat(await run(where, 'cat', ['/proc/net/stat/nf_conntrack']));
}

export function diffStats(after: ConntrackStats, before: ConntrackStats): ConntrackStats {
  return {
    clashResolve: after.clashResolve - before.clashResolve,
    insertFailed: after.insertFailed - before.insertFailed,
    drop: after.drop - before.drop,
    earlyDrop: after.earlyDrop - before.earlyDrop,
  };
}
