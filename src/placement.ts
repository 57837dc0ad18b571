// Which interfaces a placement covers, and noticing when they come and go.
// Host placement: the host-side veths of pods (by name glob) in the agent's netns.
// Device placement: the named devices. Pod placement: the far end of each such veth,
// in the pod's own netns (found by the id our netns gives it, not by its name).
import fs from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Target } from './apply.js';
import type { ConcretePlacement } from './config.js';
import { loadAddon } from './datapath/addon.js';
import { sh } from './netns.js';

/** Host-side veth prefixes of the common CNIs: bridge/flannel/weave (veth), Calico
 * (cali), Cilium (lxc), AWS VPC CNI (eni), GKE (gke), Azure (azv), kube-router (veth). */
export const AUTO_GLOBS = ['veth*', 'cali*', 'lxc*', 'eni*', 'gke*', 'azv*'];

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function matches(name: string, globs: readonly string[]): boolean {
  return globs.some((g) => globToRegExp(g).test(name));
}

export async function listLinks(): Promise<string[]> {
  const out = await sh('ip', ['-j', 'link', 'show']);
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname);
}

/** Pod network namespaces: /var/run/netns entries and other processes' netns, once each. */
export function podNetnsPaths(): string[] {
  const own = fs.statSync('/proc/self/ns/net').ino;
  const seen = new Set<number>([own]);
  const out: string[] = [];
  const consider = (p: string) => {
    try {
      const ino = fs.statSync(p).ino;
      if (seen.has(ino)) return;
      seen.add(ino);
      out.push(p);
    } catch {
      /* gone meanwhile */
    }
  };
  if (fs.existsSync('/var/run/netns')) for (const n of fs.readdirSync('/var/run/netns')) consider(path.join('/var/run/netns', n));
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) consider(`/proc/${pid}/ns/net`);
  return out;
}

/** A veth in the agent's namespace whose peer lives in another namespace. */
export interface HostVeth {
  ifname: string;
  /** the peer's ifindex, inside its own namespace */
  peerIndex: number;
  /** the id this namespace gives the peer's namespace */
  peerNsid: number;
}

/** Host-side veths from `ip -j link show type veth`: those whose peer is elsewhere. */
export function parseHostVeths(json: string): HostVeth[] {
  const links = JSON.parse(json || '[]') as { ifname: string; link_index?: number; link_netnsid?: number }[];
  return links.filter((l) => l.link_netnsid !== undefined && l.link_index !== undefined).map((l) => ({ ifname: l.ifname, peerIndex: l.link_index!, peerNsid: l.link_netnsid! }));
}

/** Pods are the namespaces at the far end of a host-side veth matching the globs: one
 * target per namespace (its first such veth), never the host's own uplinks or a
 * namespace wired to somewhere else. */
export function podPeers(veths: readonly HostVeth[], nsids: ReadonlyMap<string, number>, globs: readonly string[]): { netns: string; peerIndex: number; hostDev: string }[] {
  const out: { netns: string; peerIndex: number; hostDev: string }[] = [];
  for (const [netns, nsid] of nsids) {
    if (nsid < 0) continue;
    const v = veths.find((h) => h.peerNsid === nsid && matches(h.ifname, globs));
    if (v) out.push({ netns, peerIndex: v.peerIndex, hostDev: v.ifname });
  }
  return out;
}

export async function discoverTargets(placement: ConcretePlacement, globs: readonly string[]): Promise<Target[]> {
  const wanted = globs.length ? globs : AUTO_GLOBS;
  if (placement === 'pod') {
    // the dump first: listing a veth makes the kernel give its peer's namespace an id
    const veths = parseHostVeths(await sh('ip', ['-j', 'link', 'show', 'type', 'veth']));
    const addon = loadAddon();
    const nsids = new Map<string, number>();
    for (const netns of podNetnsPaths()) {
      try {
        nsids.set(netns, addon.netnsId(netns));
      } catch {
        /* gone meanwhile, or not ours to open */
      }
    }
    const targets: Target[] = [];
    for (const peer of podPeers(veths, nsids, wanted)) {
      const out = await sh('nsenter', [`--net=${peer.netns}`, '--', 'ip', '-j', 'link', 'show']).catch(() => '[]');
      const dev = (JSON.parse(out || '[]') as { ifindex: number; ifname: string }[]).find((l) => l.ifindex === peer.peerIndex)?.ifname;
      if (dev) targets.push({ netns: peer.netns, dev, label: `${peer.hostDev}:${dev}` });
    }
    return targets;
  }
  return (await listLinks()).filter((n) => matches(n, wanted)).map((dev) => ({ dev, label: dev }));
}

/** The pod addresses behind a target, to name its pod in metrics: eth0's addresses
 * inside a pod netns, or the host routes through a host-side veth (Calico, Cilium and
 * kindnet route each pod IP to its veth; bridge ports have none). */
export async function targetAddresses(t: Target): Promise<string[]> {
  if (t.netns) {
    const out = await sh('nsenter', [`--net=${t.netns}`, '--', 'ip', '-j', 'addr', 'show', 'dev', t.dev]).catch(() => '[]');
    return (JSON.parse(out || '[]') as { addr_info?: { local: string }[] }[]).flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
  }
  const out = await sh('ip', ['-j', 'route', 'show', 'dev', t.dev]).catch(() => '[]');
  return (JSON.parse(out || '[]') as { dst: string }[]).map((r) => r.dst.replace(/\/(32|128)$/, '')).filter((d) => !d.includes('/') && d !== 'default');
}

/** Calls onChange (debounced to 200 ms) whenever a link appears or disappears, from
 * netlink events through `ip monitor link`, not by polling. */
export function watchLinks(onChange: () => void): { stop(): Promise<void> } {
  const child: ResultPromise = execa('ip', ['-o', 'monitor', 'link'], { reject: false, stdin: 'ignore', buffer: false });
  let timer: NodeJS.Timeout | undefined;
  child.stdout?.on('data', () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, 200);
  });
  return {
    async stop() {
      clearTimeout(timer);
      child.kill('SIGTERM');
      await child.catch(() => undefined);
    },
  };
}
