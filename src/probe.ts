// What this kernel and these tools can do, tested for real in a scratch network
// namespace: nothing is assumed from version numbers.
import { Classifier, defaultClassifierConfig } from './datapath/datapath.js';
import { loadAddon } from './datapath/addon.js';
import type { Capabilities, Capability } from './modes.js';
import { Netns, sh } from './netns.js';
import { type Where, run } from './netops.js';
import { frame } from './packet.js';
import { QTYPE, buildQuery } from './dns.js';

const yes: Capability = { ok: true };
const no = (reason: string): Capability => ({ ok: false, reason });

/** The last line of a tool's complaint, made to name the missing feature. */
function why(feature: string, e: unknown): string {
  const msg = (e as Error).message ?? String(e);
  if (/qdisc kind is unknown/i.test(msg)) return `${feature} is not in this kernel (qdisc kind unknown)`;
  if (/error talking to the kernel|Unknown filter|not supported/i.test(msg)) return `${feature} is not in this kernel`;
  return `${feature}: ${msg.split('\n').pop()}`;
}

async function check(feature: string, fn: () => Promise<unknown> | unknown): Promise<Capability> {
  try {
    await fn();
    return yes;
  } catch (e) {
    return no(why(feature, e));
  }
}

/** Where the probe plays: a scratch netns when this process may create one, or else
 * (a DaemonSet without SYS_ADMIN) unconnected scratch links in the agent's own netns. */
interface Scratch {
  at: Where;
  veth: [string, string];
  ifb: string;
  remove(): Promise<void>;
}

async function scratchSite(): Promise<Scratch> {
  try {
    const ns = await Netns.create('dnsp-probe');
    return { at: { netns: ns.path }, veth: ['pr0', 'pr1'], ifb: 'prifb', remove: () => ns.delete() };
  } catch {
    const tag = (process.pid % 100000).toString(36);
    const veth: [string, string] = [`dnsp${tag}a`, `dnsp${tag}b`];
    const ifb = `dnsp${tag}i`;
    const remove = async () => {
      for (const dev of [veth[0], ifb]) await sh('ip', ['link', 'del', dev]).catch(() => undefined);
    };
    await remove(); // a probe killed earlier under the same pid
    return { at: {}, veth, ifb, remove };
  }
}

export async function probe(): Promise<Capabilities> {
  const site = await scratchSite();
  const { at } = site;
  const [pr0, pr1] = site.veth;
  const ip = (...args: string[]) => run(at, 'ip', args);
  const tc = (...args: string[]) => run(at, 'tc', args);
  let classifier: Classifier | undefined;
  try {
    await ip('link', 'add', pr0, 'type', 'veth', 'peer', 'name', pr1);
    await ip('link', 'set', pr0, 'up');
    await ip('link', 'set', pr1, 'up');

    const bpf = await check('BPF (bpf syscall, JIT, CAP_BPF)', () => {
      classifier = Classifier.load();
    });
    const clsact = await check('clsact (sch_ingress)', () => tc('qdisc', 'add', 'dev', pr0, 'clsact'));
    const clsBpf =
      bpf.ok && clsact.ok
        ? await check('cls_bpf', () => {
            loadAddon().tcAttach({ ifname: pr0, ...at, direction: 'ingress', progFd: classifier!.programFd, handle: 1, priority: 1 });
          })
        : no('cls_bpf needs BPF and clsact');
    const fq = await check('sch_fq', () => tc('qdisc', 'replace', 'dev', pr1, 'root', 'fq'));
    const prio = await check('sch_prio', () => tc('qdisc', 'replace', 'dev', pr1, 'root', 'handle', '1:', 'prio', 'bands', '2', 'priomap', ...Array(16).fill('1')));
    const netem = prio.ok
      ? await check('sch_netem', () => tc('qdisc', 'add', 'dev', pr1, 'parent', '1:1', 'netem', 'delay', '1ms'))
      : await check('sch_netem', () => tc('qdisc', 'replace', 'dev', pr1, 'root', 'netem', 'delay', '1ms'));
    const fw = prio.ok
      ? await check('cls_fw', () => tc('filter', 'add', 'dev', pr1, 'parent', '1:', 'protocol', 'all', 'prio', '1', 'handle', '0x1000/0x1000', 'fw', 'flowid', '1:1'))
      : await check('cls_fw', () => tc('filter', 'add', 'dev', pr0, 'egress', 'pref', '2', 'handle', '1', 'fw'));
    const ifb = await check('IFB devices', () => ip('link', 'add', site.ifb, 'type', 'ifb'));
    const mirred =
      clsact.ok && ifb.ok
        ? await check('act_mirred', () =>
            tc('filter', 'add', 'dev', pr0, 'ingress', 'pref', '3', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', site.ifb),
          )
        : no('act_mirred needs clsact and an IFB to test');
    const setTstamp = bpf.ok ? tstampProbe(classifier!) : no('needs BPF');
    const serializeMirred = clsBpf.ok && mirred.ok && ifb.ok ? yes : no(['cls_bpf', 'act_mirred', 'IFB'].filter((_, i) => ![clsBpf, mirred, ifb][i]!.ok).join(', ') + ' missing');
    // A direct-action bpf_redirect into an IFB worked on 6.18 and lost every packet on
    // Debian's 6.1 (machines.md): mirred, which works on both, is what we use.
    const serializeRedirect = no('not used: bpf_redirect into an IFB lost every packet on kernel 6.1; act_mirred is used instead');
    const iptablesMatches = await iptablesProbe(at);
    return { bpf, clsact, clsBpf, fq, prio, netem, fw, ifb, mirred, setTstamp, serializeRedirect, serializeMirred, iptablesMatches };
  } finally {
    classifier?.close();
    await site.remove();
  }
}

/** bpf_skb_set_tstamp with DELIVERY_MONO: an ingress copy must set a tstamp in a test run. */
function tstampProbe(classifier: Classifier): Capability {
  classifier.configure(defaultClassifierConfig({ policy: 'aaaa', action: 'pace', tracePerSec: 0 }), [53], []);
  classifier.setInstance({ slot: 0, ingress: true, redirectIfindex: 0, serializeVia: 'redirect' });
  const data = frame({ src: '198.18.0.1', dst: '198.18.0.2', sport: 1, dport: 53, payload: buildQuery({ name: 'probe.test', qtype: QTYPE.AAAA }) });
  const out = classifier.testRun({ data, ctx: {} });
  classifier.configure(defaultClassifierConfig({ enabled: false }));
  return out.ctx.tstamp > 0n ? yes : no('bpf_skb_set_tstamp (kernel >= 5.18) is missing: a departure time set at tc ingress would be lost');
}

/** The weave-tc mark rule in a chain of our own, created and removed again. */
async function iptablesProbe(at: Where): Promise<Capability> {
  const chain = `DNSPACER-PROBE-${process.pid}`;
  const rule = ['-p', 'udp', '-m', 'u32', '--u32', '0>>22&0x3C@8>>15&0x1=0', '-m', 'string', '--algo', 'bm', '--hex-string', '|00001c0001|', '-j', 'MARK', '--set-xmark', '0x1000/0x1000'];
  const reasons: string[] = [];
  for (const bin of ['iptables', 'iptables-legacy']) {
    const ipt = (...args: string[]) => run(at, bin, ['-w', '-t', 'mangle', ...args]);
    try {
      await ipt('-N', chain);
    } catch (e) {
      reasons.push(`${bin}: ${(e as Error).message.split('\n').pop()}`);
      continue;
    }
    try {
      await ipt('-A', chain, ...rule);
      return yes;
    } catch (e) {
      reasons.push(`${bin}: ${(e as Error).message.split('\n').pop()}`);
    } finally {
      await ipt('-F', chain).catch(() => undefined);
      await ipt('-X', chain).catch(() => undefined);
    }
  }
  return no(`iptables u32/string matches unavailable (${reasons.join('; ')})`);
}

export function summarizeCapabilities(caps: Capabilities): string {
  return Object.entries(caps)
    .map(([k, v]) => `${k}=${v.ok ? 'yes' : 'no'}`)
    .join(' ');
}
