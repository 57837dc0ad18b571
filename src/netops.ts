// Every change dnspacer makes on a node, recorded so it can be undone exactly.
// A Journal applies changes one by one, persists itself after each (so a restart
// after SIGKILL finds what is there), rolls back on a failure mid-apply, and undoes
// everything in reverse order on teardown.
import fs from 'node:fs';
import path from 'node:path';
import { sh } from './netns.js';

/** tc/ip/iptables run in the agent's own netns (undefined) or a named/pathed one. */
export interface Where {
  /** path of a network namespace (/var/run/netns/x, /proc/PID/ns/net); undefined = ours */
  netns?: string;
}

export type Change =
  | (Where & { kind: 'clsact'; dev: string })
  | (Where & { kind: 'bpf-filter'; dev: string; direction: 'ingress' | 'egress'; handle: number; priority: number; progId: number })
  | (Where & { kind: 'root-qdisc'; dev: string; installed: QdiscSpec; previous: QdiscSpec | null })
  | (Where & { kind: 'ifb'; name: string })
  | (Where & { kind: 'iptables'; binary: string; table: string; chain: string; rule: string[] })
  | (Where & { kind: 'pin'; path: string });

/** A qdisc as `tc qdisc replace ... root <kind> <args>` takes it. */
export interface QdiscSpec {
  kind: string;
  args: string[];
  /** for a root that had children (mq with fq), enough to say so in logs */
  handle?: string;
}

export const OWNER_COMMENT = 'dnspacer';

/** Runs a command in a netns given by path (nsenter), or in ours. */
export function run(where: Where, file: string, args: string[]): Promise<string> {
  if (!where.netns) return sh(file, args);
  return sh('nsenter', [`--net=${where.netns}`, '--', file, ...args]);
}

export function describe(c: Change): string {
  const at = c.netns ? ` in ${c.netns}` : '';
  switch (c.kind) {
    case 'clsact':
      return `clsact on ${c.dev}${at}`;
    case 'bpf-filter':
      return `bpf filter ${c.direction} handle ${c.handle} pref ${c.priority} on ${c.dev}${at}`;
    case 'root-qdisc':
      return `root qdisc ${c.installed.kind} on ${c.dev}${at} (was ${c.previous ? c.previous.kind : 'default'})`;
    case 'ifb':
      return `IFB ${c.name}${at}`;
    case 'iptables':
      return `${c.binary} -t ${c.table} ${c.chain} ${c.rule.join(' ')}${at}`;
    case 'pin':
      return `pinned ${c.path}`;
  }
}

/** Reads the root qdisc of a device: null when it is the kernel's default (noqueue,
 * pfifo_fast, mq with defaults), which deleting ours restores by itself. */
export async function rootQdisc(where: Where, dev: string): Promise<QdiscSpec | null> {
  const out = await run(where, 'tc', ['-j', 'qdisc', 'show', 'dev', dev, 'root']);
  const list = JSON.parse(out || '[]') as { kind: string; handle?: string; root?: boolean; options?: Record<string, unknown> }[];
  const root = list.find((q) => q.root) ?? list[0];
  if (!root || root.handle === '0:' || ['noqueue', 'pfifo_fast'].includes(root.kind)) return null;
  return { kind: root.kind, args: qdiscArgs(root.kind, root.options ?? {}), ...(root.handle ? { handle: root.handle } : {}) };
}

/** Turns `tc -j` options back into command-line arguments for the qdiscs we may
 * replace and must restore with their parameters. */
export function qdiscArgs(kind: string, options: Record<string, unknown>): string[] {
  const out: string[] = [];
  const num = (key: string, flag = key) => {
    if (typeof options[key] === 'number') out.push(flag, String(options[key]));
  };
  switch (kind) {
    case 'fq':
      num('limit');
      num('flow_limit');
      num('quantum');
      num('initial_quantum');
      num('buckets');
      if (typeof options.maxrate === 'number' && options.maxrate > 0) out.push('maxrate', `${options.maxrate}bit`);
      if (typeof options.horizon === 'number') out.push('horizon', `${options.horizon}us`);
      if (options.horizon_drop === false) out.push('horizon_cap');
      break;
    case 'fq_codel':
      num('limit');
      num('flows');
      num('quantum');
      if (typeof options.target === 'number') out.push('target', `${options.target}us`);
      if (typeof options.interval === 'number') out.push('interval', `${options.interval}us`);
      if (options.ecn === true) out.push('ecn');
      break;
    case 'pfifo':
    case 'bfifo':
      num('limit');
      break;
    default:
      break;
  }
  return out;
}

export class ApplyError extends Error {
  constructor(
    readonly step: string,
    cause: unknown,
  ) {
    super(`could not apply ${step}: ${(cause as Error).message ?? String(cause)}`);
    this.name = 'ApplyError';
  }
}

/** What the journal's changes were made for; a restart adopts them only if it matches. */
export interface JournalMeta {
  mode: string;
  placement: string;
}

export class Journal {
  private changes: Change[] = [];
  meta: JournalMeta | undefined;

  constructor(private readonly stateFile?: string) {}

  /** Journal of a previous run, as left in the state file (empty if none). */
  static load(stateFile: string): Journal {
    const j = new Journal(stateFile);
    if (fs.existsSync(stateFile)) {
      const parsed = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { changes?: Change[]; meta?: JournalMeta };
      j.changes = parsed.changes ?? [];
      j.meta = parsed.meta;
    }
    return j;
  }

  setMeta(meta: JournalMeta): void {
    this.meta = meta;
    this.persist();
  }

  entries(): readonly Change[] {
    return this.changes;
  }

  /** Records a change that has been made (or adopted) and persists the journal. */
  record(change: Change): void {
    this.changes.push(change);
    this.persist();
  }

  /** Makes a change and records it only once it has succeeded. */
  async apply(change: Change, doIt: () => Promise<void> | void): Promise<void> {
    try {
      await doIt();
    } catch (e) {
      throw new ApplyError(describe(change), e);
    }
    this.record(change);
  }

  /** Undoes every recorded change, newest first. Continues past failures and reports them all. */
  async undoAll(undo: (c: Change) => Promise<void>): Promise<string[]> {
    const failures: string[] = [];
    while (this.changes.length) {
      const c = this.changes[this.changes.length - 1]!;
      try {
        await undo(c);
      } catch (e) {
        failures.push(`${describe(c)}: ${(e as Error).message}`);
      }
      this.changes.pop();
      this.persist();
    }
    return failures;
  }

  /** Undoes, newest first, only the changes `match` selects (one interface going away). */
  async undoMatching(match: (c: Change) => boolean, undo: (c: Change) => Promise<void>): Promise<string[]> {
    const failures: string[] = [];
    for (let i = this.changes.length - 1; i >= 0; i--) {
      const c = this.changes[i]!;
      if (!match(c)) continue;
      try {
        await undo(c);
      } catch (e) {
        failures.push(`${describe(c)}: ${(e as Error).message}`);
      }
      this.changes.splice(i, 1);
      this.persist();
    }
    return failures;
  }

  /** Drops the record without undoing (keep-on-exit hands the state to the next start). */
  forget(): void {
    this.changes = [];
    this.persist();
  }

  private persist(): void {
    if (!this.stateFile) return;
    fs.mkdirSync(path.dirname(this.stateFile), { recursive: true });
    const tmp = `${this.stateFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ version: 1, meta: this.meta, changes: this.changes }, null, 1));
    fs.renameSync(tmp, this.stateFile);
  }

  /** The state file survives only while there is something to undo. */
  removeStateIfEmpty(): void {
    if (this.stateFile && this.changes.length === 0) fs.rmSync(this.stateFile, { force: true });
  }
}
