// The agent's Kubernetes side against the fake API server: DNS Service discovery and its
// live update, the pod watch on this node, the ConfigMap, Events, the Node annotation,
// and recovery from dropped watches, 410 Gone and an API server outage.
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULTS, type AgentConfig } from '../../src/config.js';
import { type DnsTargets, KubeLink, type PodRef, dnsTargetsFrom } from '../../src/kube.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';

const log = pino({ level: 'silent' });

function kubeConfig(url: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'agent' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'agent' }],
    currentContext: 'fake',
  });
  return kc;
}

function kubeDns(clusterIPs: string[], name = 'kube-dns', labels: Record<string, string> = { 'k8s-app': 'kube-dns' }) {
  return {
    metadata: { name, namespace: 'kube-system', labels },
    spec: {
      clusterIP: clusterIPs[0],
      clusterIPs,
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        { name: 'metrics', port: 9153, protocol: 'TCP' },
      ],
    },
  };
}

const pod = (name: string, node: string, ip: string, extra: Record<string, unknown> = {}) => ({
  metadata: { name, namespace: 'apps' },
  spec: { nodeName: node, ...extra },
  status: { podIP: ip, podIPs: [{ ip }] },
});

const ipsOf = (t: DnsTargets | undefined) => (t?.cidrs ?? []).map((c) => `${c.family}:${Buffer.from(c.addr).toString('hex')}/${c.prefixLen}`).sort();

async function until<T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('dnsTargetsFrom', () => {
  it('takes every ClusterIP of both families and only UDP ports; headless Services add nothing', () => {
    const t = dnsTargetsFrom([kubeDns(['198.18.0.10', 'fd00::a']), { spec: { clusterIP: 'None', ports: [{ port: 5353, protocol: 'UDP' }] } }]);
    expect(t.cidrs.map((c) => [c.family, c.prefixLen])).toEqual([
      [4, 32],
      [6, 128],
    ]);
    expect(t.ports).toEqual([53, 5353]);
    expect(dnsTargetsFrom([{ spec: { clusterIP: '198.18.0.10', ports: [{ port: 53 }] } }]).ports).toEqual([]);
  });
});

describe('Kubernetes link (fake API server)', () => {
  let api: FakeApiServer;
  let link: KubeLink | undefined;
  let dns: DnsTargets | undefined;
  let dnsUpdates = 0;
  let pods: PodRef[] | undefined;
  const configTexts: string[] = [];

  const config = (over: Partial<AgentConfig> = {}): AgentConfig => ({ ...DEFAULTS, nodeName: 'node-a', configMap: 'dnspacer/dnspacer', ...over });

  function connect(over: Partial<AgentConfig> = {}): KubeLink {
    link = new KubeLink(kubeConfig(api.url), config(over), {
      onDnsTargets: (t) => {
        dns = t;
        dnsUpdates++;
      },
      onPods: (p) => {
        pods = p;
      },
      onConfigText: (t) => configTexts.push(t),
    }, log);
    link.start();
    return link;
  }

  beforeEach(async () => {
    api = new FakeApiServer();
    await api.start();
    dns = undefined;
    dnsUpdates = 0;
    pods = undefined;
    configTexts.length = 0;
  });
  afterEach(async () => {
    await link?.stop();
    link = undefined;
    await api.stop();
  });

  it('finds the DNS Service by name, both families, and follows a change live', async () => {
    api.put('services', kubeDns(['198.18.0.10', 'fd00::a']));
    api.put('services', { metadata: { name: 'other', namespace: 'kube-system' }, spec: { clusterIP: '198.18.0.99', ports: [{ port: 53, protocol: 'UDP' }] } });
    connect();
    await until('dns targets', () => dns?.cidrs.length === 2);
    expect(ipsOf(dns)).toEqual(['4:00000000000000000000ffffc612000a/32', '6:fd00000000000000000000000000000a/128']);
    expect(dns!.ports).toEqual([53]);
    api.put('services', kubeDns(['198.18.0.20']));
    await until('updated targets', () => ipsOf(dns)[0]?.endsWith('c6120014/32') && dns!.cidrs.length === 1);
  });

  it('finds DNS Services by label selector as well', async () => {
    api.put('services', kubeDns(['198.18.0.10']));
    api.put('services', { metadata: { name: 'node-local-dns', namespace: 'kube-system', labels: { 'k8s-app': 'node-local-dns' } }, spec: { clusterIP: '198.18.0.30', ports: [{ port: 53, protocol: 'UDP' }] } });
    connect({ dnsServices: [], dnsServiceSelector: 'k8s-app=node-local-dns' });
    await until('selected service', () => dns?.cidrs.length === 1 && ipsOf(dns)[0]!.endsWith('c612001e/32'));
  });

  it('watches only the pods on its node, and sees pods come and go within a second', async () => {
    api.put('pods', pod('web-1', 'node-a', '198.18.1.2'));
    api.put('pods', pod('web-2', 'node-b', '198.18.2.2'));
    api.put('pods', pod('proxy', 'node-a', '198.18.3.3', { hostNetwork: true }));
    connect();
    await until('pods', () => pods?.length === 1);
    expect(pods).toEqual([{ namespace: 'apps', name: 'web-1', ips: ['198.18.1.2'] }]);
    const t0 = Date.now();
    api.put('pods', pod('web-3', 'node-a', '198.18.1.3'));
    await until('new pod', () => pods?.some((p) => p.name === 'web-3'), 1000);
    api.remove('pods', 'apps', 'web-1');
    await until('pod gone', () => pods && !pods.some((p) => p.name === 'web-1'), 1000);
    expect(Date.now() - t0).toBeLessThan(1000);
    // the watch asked the server to filter by node
    expect(api.requests.some((r) => r.path === '/api/v1/pods' && r.query.fieldSelector === 'spec.nodeName=node-a' && r.query.watch === 'true')).toBe(true);
  });

  it('hands over its ConfigMap\'s config.yaml, and every change to it', async () => {
    api.put('configmaps', { metadata: { name: 'dnspacer', namespace: 'dnspacer' }, data: { 'config.yaml': 'policy: aaaa\n' } });
    api.put('configmaps', { metadata: { name: 'unrelated', namespace: 'dnspacer' }, data: { 'config.yaml': 'policy: pairs\n' } });
    connect();
    await until('config', () => configTexts.length === 1);
    api.put('configmaps', { metadata: { name: 'dnspacer', namespace: 'dnspacer' }, data: { 'config.yaml': 'policy: pairs\ngap: 200us\n' } });
    await until('changed config', () => configTexts.at(-1)?.includes('200us'));
    expect(configTexts.every((t) => !t.includes('unrelated'))).toBe(true);
  });

  it('publishes Events about its Node, and annotates the Node only when asked', async () => {
    api.put('nodes', { metadata: { name: 'node-a' } });
    const l = connect({ annotateNode: false });
    await l.event('Normal', 'ModeChosen', 'serialize at host placement');
    await l.event('Warning', 'Fallback', 'sch_fq is not in this kernel; using serialize');
    const events = api.list('events', 'dnspacer');
    expect(events.map((e) => [e.reason, e.type, (e.involvedObject as { kind: string; name: string }).name])).toEqual([
      ['ModeChosen', 'Normal', 'node-a'],
      ['Fallback', 'Warning', 'node-a'],
    ]);
    await l.annotateNode({ 'dnspacer.io/mode': 'serialize' });
    expect(api.requests.some((r) => r.method === 'PATCH')).toBe(false);
    await l.stop();
    const annotating = connect({ annotateNode: true });
    await annotating.annotateNode({ 'dnspacer.io/mode': 'serialize', 'dnspacer.io/placement': 'host' });
    expect(api.get('nodes', undefined, 'node-a')!.metadata.annotations).toEqual({ 'dnspacer.io/mode': 'serialize', 'dnspacer.io/placement': 'host' });
  });

  it('rides out dropped watches, BOOKMARKs and 410 Gone: lists again and misses no change', async () => {
    api.put('services', kubeDns(['198.18.0.10']));
    connect();
    await until('dns', () => dns?.cidrs.length === 1);
    await until('service watch', () => api.watchCount('services') === 1);
    api.bookmark();
    // the server ends the stream; a change lands before the client watches again
    api.dropWatches();
    api.put('services', kubeDns(['198.18.0.11']));
    await until('change after drop', () => ipsOf(dns)[0]?.endsWith('c612000b/32'));
    // history compacted: the next watch from an old resourceVersion gets 410 and must list
    await until('service watch again', () => api.watchCount('services') === 1);
    const lists = () => api.requests.filter((r) => r.path === '/api/v1/namespaces/kube-system/services' && r.query.watch === undefined).length;
    const listsBefore = lists();
    api.compact();
    api.dropWatches();
    await until('relist after 410', () => lists() > listsBefore);
    api.put('services', kubeDns(['198.18.0.12']));
    await until('change after relist', () => ipsOf(dns)[0]?.endsWith('c612000c/32'));
  }, 20_000);

  it('keeps the last DNS targets through an API server outage and catches up after it', async () => {
    api.put('services', kubeDns(['198.18.0.10']));
    connect();
    await until('dns', () => dns?.cidrs.length === 1);
    const updatesBefore = dnsUpdates;
    await api.stop();
    await new Promise((r) => setTimeout(r, 1500));
    // nothing was withdrawn while the API server was away
    expect(dnsUpdates).toBe(updatesBefore);
    expect(dns!.cidrs).toHaveLength(1);
    api.put('services', kubeDns(['198.18.0.13']));
    await api.start();
    await until('caught up after outage', () => ipsOf(dns)[0]?.endsWith('c612000d/32'), 10_000);
  }, 20_000);
});
