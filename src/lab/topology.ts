// The lab's little cluster, in namespaces it creates and removes: a pod, a node
// doing kube-proxy-style DNAT from a Service VIP to DNS backends, and the backends
// running dnsmasq. Addresses come from 198.18.0.0/15 only. Like kube-proxy, the node
// DNATs in PREROUTING (pod traffic) and in OUTPUT (its own host-network clients).
import type { ResultPromise } from 'execa';
import { Netns, startDnsmasq, stopProcess, vethPair, waitForDns } from '../netns.js';
import { run } from '../netops.js';

export const VIP = '198.18.100.10';
export const RECORD = 'web.dnspacer.test';
export const RECORD_A = '198.18.200.7';
export const RECORD_AAAA = '2001:2:0:200::7';

export type Dnat = 'iptables' | 'nft';

export interface Topology {
  pod: Netns;
  node: Netns;
  backends: Netns[];
  /** node-side end of the pod's veth: host placement */
  podHostVeth: string;
  /** the pod's own interface: pod placement */
  podDev: string;
  /** node-side veths toward the backends: device placement (the anchors' uplink) */
  uplinks: string[];
  destroy(): Promise<void>;
}

/** `servers: false` leaves the backends without dnsmasq: a throughput benchmark counts
 * what arrives there from the kernel's own UDP statistics, with no server to saturate. */
export async function buildTopology(opts: { backends?: number; dnat?: Dnat; servers?: boolean } = {}): Promise<Topology> {
  const count = opts.backends ?? 2;
  const created: Netns[] = [];
  const daemons: ResultPromise[] = [];
  const destroy = async () => {
    for (const d of daemons) await stopProcess(d);
    for (const ns of created.reverse()) await ns.delete();
  };
  try {
    const node = await Netns.create('dnsp-lab-node');
    created.push(node);
    const pod = await Netns.create('dnsp-lab-pod');
    created.push(pod);
    await node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await vethPair({ ns: pod, name: 'eth0', addrs: ['198.18.1.2/24'] }, { ns: node, name: 'vpod0', addrs: ['198.18.1.1/24'] });
    await pod.ip('route', 'add', 'default', 'via', '198.18.1.1');

    const backends: Netns[] = [];
    const uplinks: string[] = [];
    for (let i = 0; i < count; i++) {
      const be = await Netns.create(`dnsp-lab-dns${i}`);
      created.push(be);
      const net = `198.18.${10 + i}`;
      await vethPair({ ns: node, name: `vdns${i}`, addrs: [`${net}.1/24`] }, { ns: be, name: 'eth0', addrs: [`${net}.53/24`] });
      await be.ip('route', 'add', 'default', 'via', `${net}.1`);
      if (opts.servers !== false) daemons.push(startDnsmasq(be, [`${net}.53`], { [RECORD]: [RECORD_A, RECORD_AAAA] }));
      backends.push(be);
      uplinks.push(`vdns${i}`);
    }
    const addrs = backends.map((_, i) => `198.18.${10 + i}.53`);
    // a node routes the Service range somewhere (its default route) before OUTPUT's DNAT
    // picks the backend; without one, its own sockets could not send to the VIP
    await node.ip('route', 'add', VIP, 'dev', uplinks[0]!);
    if ((opts.dnat ?? 'iptables') === 'iptables') await iptablesDnat(node, addrs);
    else await nftDnat(node, addrs);
    if (opts.servers !== false) {
      for (const a of addrs) await waitForDns(node, a, RECORD);
      await waitForDns(pod, VIP, RECORD);
    }
    return { pod, node, backends, podHostVeth: 'vpod0', podDev: 'eth0', uplinks, destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** kube-proxy's iptables mode: each backend picked with probability 1/(n-i). */
async function iptablesDnat(node: Netns, backends: string[]): Promise<void> {
  for (const [i, be] of backends.entries()) {
    const left = backends.length - i;
    const stat = left > 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', (1 / left).toFixed(5)] : [];
    for (const chain of ['PREROUTING', 'OUTPUT']) {
      for (const proto of ['udp', 'tcp']) {
        await run({ netns: node.path }, 'iptables', ['-w', '-t', 'nat', '-A', chain, '-d', VIP, '-p', proto, '--dport', '53', ...stat, '-j', 'DNAT', '--to-destination', `${be}:53`]);
      }
    }
  }
}

/** kube-proxy's nftables mode: numgen random into a map of backends. */
async function nftDnat(node: Netns, backends: string[]): Promise<void> {
  const map = backends.map((b, i) => `${i} : ${b}`).join(', ');
  const rule = `ip daddr ${VIP} meta l4proto { udp, tcp } th dport 53 dnat to numgen random mod ${backends.length} map { ${map} } : 53`;
  const script = `table ip dnsplab {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ${rule}
  }
  chain output {
    type nat hook output priority dstnat; policy accept;
    ${rule}
  }
}
`;
  await node.exec('nft', ['-f', '/dev/stdin'], { input: script });
}
