// Applies a chosen mode at its placement, one target interface at a time, through
// the Journal so every change can be undone exactly. The agent and the lab both
// use this; there is no second implementation.
import fs from 'node:fs';
import path from 'node:path';
import { loadAddon } from './datapath/addon.js';
import { ensureBpffs } from './bpffs.js';
import type { Classifier } from './datapath/datapath.js';
import { DEFAULT_HANDLE, DEFAULT_PRIORITY } from './datapath/datapath.js';
import type { ActionName, ClassifierConfig } from './datapath/layout.js';
import type { AgentConfig, ConcreteMode, ConcretePlacement } from './config.js';
import type { SerializeQueue } from './metrics.js';
import { type Change, type Journal, type QdiscSpec, type Where, OWNER_COMMENT, rootQdisc, run } from './netops.js';

export interface Target extends Where {
  dev: string;
  /** pod or device name, for metrics labels */
  label?: string;
}

export interface Plan {
  mode: ConcreteMode | 'none';
  placement: ConcretePlacement;
  serializeVia?: 'redirect' | 'classify';
}

export type Settings = Pick<AgentConfig, 'dnsPorts' | 'dnsCidrs' | 'policy' | 'delayNs' | 'windowNs' | 'gapNs' | 'mark' | 'traceRate'>;

export const IFB_NAME = 'dnsp-ifb0';
const NETEM_BAND = '1:1';
const BULK_BAND = '1:2';

export function classifierAction(mode: Plan['mode']): ActionName | null {
  switch (mode) {
    case 'observe':
      return 'observe';
    case 'serialize':
      return 'serialize';
    case 'edt':
      return 'pace';
    case 'bpf-netem':
      return 'mark';
    default:
      return null; // none, iptables-netem: no classifier
  }
}

export function classifierConfig(plan: Plan, s: Settings): ClassifierConfig {
  return {
    enabled: true,
    policy: s.policy,
    action: classifierAction(plan.mode) ?? 'observe',
    matchPrefixes: s.dnsCidrs.length > 0,
    delayNs: BigInt(s.delayNs),
    windowNs: BigInt(s.windowNs),
    gapNs: BigInt(s.gapNs),
    markValue: s.mark.value,
    markMask: s.mark.mask,
    tracePerSec: s.traceRate,
    udpSampleShift: 4,
  };
}

/** An IFB's root qdisc: its drops are DNS queries lost because one IFB could not keep
 * up. null when the IFB is gone. */
export function readSerializeQueue(ifname: string, netns?: string): SerializeQueue | null {
  try {
    const q = loadAddon().rootQdiscStats(ifname, netns);
    return q && { interface: ifname, dropped: q.drops, queued: q.qlen };
  } catch {
    return null;
  }
}

/** serialize, and edt at host placement, send DNS queries through the node's IFB. */
export function usesIfb(plan: Pick<Plan, 'mode' | 'placement'>): boolean {
  return plan.mode === 'serialize' || (plan.mode === 'edt' && plan.placement === 'host');
}

/** Where on a target the classifier sits: before conntrack in every case. */
export function directionFor(placement: ConcretePlacement): 'ingress' | 'egress' {
  return placement === 'host' ? 'ingress' : 'egress';
}

export function targetKey(t: Target): string {
  return `${t.netns ?? ''}|${t.dev}`;
}

function sameTarget(c: Change, t: Target): boolean {
  return 'dev' in c && c.dev === t.dev && (c.netns ?? '') === (t.netns ?? '');
}

export interface MitigationOptions {
  /** netns of the node side (IFB, host veths); undefined = ours */
  nodeNetns?: string;
  ifbName?: string;
  /** the IFB's txqueuelen; the kernel's default (32) unless a benchmark compares another */
  ifbQueue?: number;
  pinDir: string;
}

export class Mitigation {
  private readonly slots = new Map<string, number>();
  private ifbIndex = 0;

  constructor(
    readonly plan: Plan,
    private settings: Settings,
    private readonly classifier: Classifier | null,
    private readonly journal: Journal,
    private readonly opts: MitigationOptions,
  ) {
    if (classifierAction(plan.mode) && !classifier) throw new Error(`mode ${plan.mode} needs the classifier loaded`);
  }

  /** Shared setup: classifier config, and for serialize and edt at host the IFB. */
  async start(): Promise<void> {
    this.configure(this.settings);
    if (usesIfb(this.plan)) {
      const node = { ...(this.opts.nodeNetns ? { netns: this.opts.nodeNetns } : {}) };
      const name = this.opts.ifbName ?? IFB_NAME;
      const adopted = this.journal.entries().some((c) => c.kind === 'ifb' && c.name === name && (c.netns ?? '') === (node.netns ?? ''));
      if (!adopted) await this.journal.apply({ kind: 'ifb', name, ...node }, async () => {
        // one queue: one softirq context hands DNS packets to conntrack one at a time. Its
        // length stays the IFB's own 32 packets: past saturation a longer queue only moves
        // the drops downstream, after conntrack and forwarding did their work (npm run bench)
        const queue = this.opts.ifbQueue ? ['txqueuelen', String(this.opts.ifbQueue)] : [];
        await run(node, 'ip', ['link', 'add', name, 'numtxqueues', '1', 'numrxqueues', '1', ...queue, 'type', 'ifb']);
        await run(node, 'ip', ['link', 'set', name, 'up']);
      });
      this.ifbIndex = loadAddon().ifNameToIndex(name, this.opts.nodeNetns);
      // edt at host placement: the departure times set at ingress are kept by fq on the IFB
      if (this.plan.mode === 'edt') await this.ensureRootQdisc({ dev: name, ...node }, { kind: 'fq', args: [] }, (q) => q.kind === 'fq');
    }
  }

  /** The serializing IFB's queue; null when this plan has no IFB. */
  serializeQueue(): SerializeQueue | null {
    return usesIfb(this.plan) ? readSerializeQueue(this.opts.ifbName ?? IFB_NAME, this.opts.nodeNetns) : null;
  }

  /** Live config change: a map update, no re-attach. */
  configure(settings: Settings): void {
    this.settings = settings;
    if (this.classifier) this.classifier.configure(classifierConfig(this.plan, settings), settings.dnsPorts, settings.dnsCidrs);
  }

  slotOf(t: Target): number | undefined {
    return this.slots.get(targetKey(t));
  }

  targets(): string[] {
    return [...this.slots.keys()];
  }

  /** Puts the mode on one interface. A failure undoes what this call changed. */
  async add(t: Target): Promise<void> {
    if (this.slots.has(targetKey(t)) || this.plan.mode === 'none') return;
    const before = this.journal.entries().length;
    try {
      switch (this.plan.mode) {
        case 'observe':
          await this.attachDirect(t);
          break;
        case 'serialize':
          await this.attachIntoIfb(t);
          break;
        case 'edt':
          if (this.plan.placement === 'host') {
            await this.attachIntoIfb(t);
            break;
          }
          await this.ensureRootQdisc(t, { kind: 'fq', args: [] }, (q) => q.kind === 'fq' || q.kind === 'mq');
          await this.attachDirect(t);
          break;
        case 'bpf-netem':
          await this.installNetemBands(t);
          await this.attachDirect(t);
          break;
        case 'iptables-netem':
          await this.installNetemBands(t);
          await this.installMarkRules(t);
          this.slots.set(targetKey(t), 0);
          break;
      }
    } catch (e) {
      const mine = this.journal.entries().slice(before);
      await this.journal.undoMatching((c) => mine.includes(c), undoChange);
      const slot = this.slots.get(targetKey(t));
      if (slot) this.classifier?.releaseSlot(slot);
      this.slots.delete(targetKey(t));
      throw e;
    }
  }

  /** Takes the mode off one interface (or forgets it when the interface is gone). */
  async remove(t: Target): Promise<string[]> {
    const failures = await this.journal.undoMatching((c) => sameTarget(c, t), undoChange);
    const slot = this.slots.get(targetKey(t));
    if (slot) this.classifier?.releaseSlot(slot);
    this.slots.delete(targetKey(t));
    return failures;
  }

  /** Undoes everything, newest first. */
  async stop(): Promise<string[]> {
    const failures = await this.journal.undoAll(undoChange);
    for (const slot of this.slots.values()) if (slot) this.classifier?.releaseSlot(slot);
    this.slots.clear();
    return failures;
  }

  private async ensureClsact(t: Target): Promise<void> {
    const out = await run(t, 'tc', ['qdisc', 'show', 'dev', t.dev]);
    if (/qdisc clsact /.test(out)) return;
    await this.journal.apply({ kind: 'clsact', dev: t.dev, ...where(t) }, () => run(t, 'tc', ['qdisc', 'add', 'dev', t.dev, 'clsact']).then(() => undefined));
  }

  /** Direct-action classifier; replace swaps a program left by an earlier run atomically. */
  private async attachDirect(t: Target, redirectIfindex = 0): Promise<void> {
    const classifier = this.classifier!;
    const direction = directionFor(this.plan.placement);
    await this.ensureClsact(t);
    const slot = classifier.allocateSlot();
    this.slots.set(targetKey(t), slot);
    const copy = classifier.loadCopy({ slot, ingress: direction === 'ingress', redirectIfindex, serializeVia: 'redirect' });
    try {
      const addon = loadAddon();
      const change: Change = { kind: 'bpf-filter', dev: t.dev, direction, handle: DEFAULT_HANDLE, priority: DEFAULT_PRIORITY, progId: copy.progId, ...where(t) };
      await this.journal.apply(change, () => {
        addon.tcAttach({ ifname: t.dev, direction, ...where(t), progFd: copy.progFd, handle: DEFAULT_HANDLE, priority: DEFAULT_PRIORITY, replace: true });
      });
    } finally {
      copy.close(); // tc holds the program now
    }
  }

  private async attachIntoIfb(t: Target): Promise<void> {
    if (this.plan.serializeVia === 'redirect') await this.attachDirect(t, this.ifbIndex);
    else await this.attachMirred(t);
  }

  /** cls_bpf in classify mode + act_mirred into the IFB: works on every kernel measured. */
  private async attachMirred(t: Target): Promise<void> {
    const classifier = this.classifier!;
    await this.ensureClsact(t);
    const slot = classifier.allocateSlot();
    this.slots.set(targetKey(t), slot);
    const copy = classifier.loadCopy({ slot, ingress: true, redirectIfindex: 0, serializeVia: 'classify' });
    const addon = loadAddon();
    await ensureBpffs();
    fs.mkdirSync(this.opts.pinDir, { recursive: true });
    const pin = path.join(this.opts.pinDir, `serialize-${process.pid}-${slot}`);
    try {
      addon.objPin(copy.progFd, pin);
      const change: Change = { kind: 'bpf-filter', dev: t.dev, direction: 'ingress', handle: DEFAULT_HANDLE, priority: DEFAULT_PRIORITY, progId: copy.progId, ...where(t) };
      await this.journal.apply(change, async () => {
        await run(t, 'tc', [
          'filter', 'replace', 'dev', t.dev, 'ingress', 'protocol', 'all', 'pref', String(DEFAULT_PRIORITY), 'handle', String(DEFAULT_HANDLE),
          'bpf', 'object-pinned', pin, 'action', 'mirred', 'egress', 'redirect', 'dev', this.opts.ifbName ?? IFB_NAME,
        ]);
      });
    } finally {
      fs.rmSync(pin, { force: true }); // the filter holds the program
      copy.close();
    }
  }

  /** Replaces the root qdisc unless `keep` accepts the current one; records the old one. */
  private async ensureRootQdisc(t: Target, spec: QdiscSpec, keep: (q: QdiscSpec) => boolean): Promise<void> {
    const previous = await rootQdisc(t, t.dev);
    if (previous && keep(previous)) return;
    await this.journal.apply({ kind: 'root-qdisc', dev: t.dev, installed: spec, previous, ...where(t) }, () =>
      run(t, 'tc', ['qdisc', 'replace', 'dev', t.dev, 'root', ...(spec.handle ? ['handle', spec.handle] : []), spec.kind, ...spec.args]).then(() => undefined),
    );
  }

  /** prio with everything in band 2, a netem delay band 1 fed by a fw filter on our mark. */
  private async installNetemBands(t: Target): Promise<void> {
    await this.ensureRootQdisc(t, { kind: 'prio', handle: '1:', args: ['bands', '2', 'priomap', ...Array(16).fill('1')] }, () => false);
    const delayUs = Math.max(1, Math.round(this.settings.delayNs / 1000));
    await run(t, 'tc', ['qdisc', 'add', 'dev', t.dev, 'parent', NETEM_BAND, 'handle', '10:', 'netem', 'delay', `${delayUs}us`]);
    await run(t, 'tc', ['qdisc', 'add', 'dev', t.dev, 'parent', BULK_BAND, 'handle', '20:', 'fq_codel']).catch(() =>
      run(t, 'tc', ['qdisc', 'add', 'dev', t.dev, 'parent', BULK_BAND, 'handle', '20:', 'pfifo']),
    );
    const { value, mask } = this.settings.mark;
    await run(t, 'tc', ['filter', 'add', 'dev', t.dev, 'parent', '1:', 'protocol', 'all', 'prio', '1', 'handle', `0x${value.toString(16)}/0x${mask.toString(16)}`, 'fw', 'flowid', NETEM_BAND]);
    // the children and the filter go away with the root qdisc, which the journal restores
  }

  /** The anchors' recipe, IPv4 only: u32 "is a DNS query" + an AAAA string match set the mark. */
  private async installMarkRules(t: Target): Promise<void> {
    const { value, mask } = this.settings.mark;
    for (const port of this.settings.dnsPorts) {
      const rule = [
        '-o', t.dev, '-p', 'udp', '--dport', String(port),
        // QR bit of the DNS header is 0: a query
        '-m', 'u32', '--u32', '0>>22&0x3C@8>>15&0x1=0',
        // QTYPE AAAA, QCLASS IN after the root label
        '-m', 'string', '--algo', 'bm', '--from', '40', '--hex-string', '|00001c0001|',
        '-m', 'comment', '--comment', OWNER_COMMENT,
        '-j', 'MARK', '--set-xmark', `0x${value.toString(16)}/0x${mask.toString(16)}`,
      ];
      const change: Change = { kind: 'iptables', binary: 'iptables', table: 'mangle', chain: 'POSTROUTING', rule, ...where(t) };
      await this.journal.apply(change, () => run(t, 'iptables', ['-w', '-t', 'mangle', '-A', 'POSTROUTING', ...rule]).then(() => undefined));
    }
  }
}

function where(t: Where): Where {
  return t.netns ? { netns: t.netns } : {};
}

const gone = (e: unknown) => /Cannot find device|No such device|does not exist|not found|No such file/i.test((e as Error).message ?? '');

/** Reverses one recorded change. Something already gone (the pod was deleted) is fine. */
export async function undoChange(c: Change): Promise<void> {
  try {
    switch (c.kind) {
      case 'clsact':
        await run(c, 'tc', ['qdisc', 'del', 'dev', c.dev, 'clsact']);
        return;
      case 'bpf-filter': {
        const addon = loadAddon();
        const target = { ifname: c.dev, direction: c.direction, ...where(c), handle: c.handle, priority: c.priority };
        const now = addon.tcQuery(target);
        // only our own program: a newer agent may have replaced it
        if (now && now.progId === c.progId) addon.tcDetach(target);
        return;
      }
      case 'root-qdisc':
        if (c.previous) await run(c, 'tc', ['qdisc', 'replace', 'dev', c.dev, 'root', ...(c.previous.handle ? ['handle', c.previous.handle] : []), c.previous.kind, ...c.previous.args]);
        else await run(c, 'tc', ['qdisc', 'del', 'dev', c.dev, 'root']);
        return;
      case 'ifb':
        await run(c, 'ip', ['link', 'del', c.name]);
        return;
      case 'iptables':
        await run(c, c.binary, ['-w', '-t', c.table, '-D', c.chain, ...c.rule]);
        return;
      case 'pin':
        fs.rmSync(c.path, { force: true });
        return;
    }
  } catch (e) {
    if (!gone(e)) throw e;
  }
}
