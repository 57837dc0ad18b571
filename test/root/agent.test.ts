// The agent on real namespaces: serialize at host placement applied before conntrack,
// interfaces picked up as they come and go, metrics served, a forced unsupported
// mode refused with nothing applied, adoption after SIGKILL, and teardown that
// leaves tc, iptables and links exactly as they were.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Topology, VIP, buildTopology } from '../../src/lab/topology.js';
import { racerPath } from '../../src/lab/run.js';
import { run } from '../../src/netops.js';
import { stopProcess, vethPair } from '../../src/netns.js';
import { probe } from '../../src/probe.js';
import { describeRoot, kernelTier, slow } from '../helpers/root.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';

// its own pinned maps: other suites may run an agent at the same time
const PIN_DIR = `/sys/fs/bpf/dnspacer-agent-test-${process.pid}`;

describeRoot('dnspacer agent', () => {
  let topo: Topology;
  let dir: string;
  const agents: ResultPromise[] = [];

  beforeAll(async () => {
    topo = await buildTopology();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-agent-'));
  }, slow(60_000));
  afterAll(async () => {
    for (const a of agents) await stopProcess(a);
    await topo?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(PIN_DIR, { recursive: true, force: true });
  });

  const inNode = (file: string, args: string[]) => run({ netns: topo.node.path }, file, args);

  async function snapshot(): Promise<string> {
    const parts = [
      await inNode('tc', ['qdisc', 'show']),
      await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']),
      (await inNode('iptables-save', [])).replace(/^#.*$/gm, ''),
      // link names and kinds; carrier state settles on its own after creation
      (JSON.parse(await inNode('ip', ['-j', '-d', 'link', 'show'])) as { ifname: string; linkinfo?: { info_kind?: string } }[])
        .map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? ''}`)
        .join('\n'),
    ];
    return parts.join('\n---\n');
  }

  function startAgent(extra: string[] = []): ResultPromise {
    const a = execa('nsenter', [`--net=${topo.node.path}`, '--', 'node', 'dist/cli.js', 'agent', '--interfaces', 'vpod*', '--metrics-address', '127.0.0.1:19741', '--state-file', path.join(dir, 'state.json'), '--pin-dir', PIN_DIR, ...extra], {
      reject: false,
      stdin: 'ignore',
    });
    agents.push(a);
    return a;
  }

  async function get(url: string): Promise<{ status: number; body: string }> {
    const out = await inNode('node', ['-e', `fetch(${JSON.stringify(url)}).then(async r => console.log(JSON.stringify({status: r.status, body: await r.text()}))).catch(() => console.log(JSON.stringify({status: 0, body: ''})))`]);
    return JSON.parse(out) as { status: number; body: string };
  }

  async function until(what: string, fn: () => Promise<boolean>, ms = slow(15_000)): Promise<void> {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const ready = () => until('/readyz', async () => (await get('http://127.0.0.1:19741/readyz')).status === 200, slow(30_000));

  it('refuses a forced mode this kernel cannot run: one line, exit 2, nothing applied', async () => {
    const before = await snapshot();
    // edt needs sch_fq, which this machine's own kernel lacks; a stock kernel (VM tier)
    // has it, and there device placement without --interfaces is what cannot run
    const caps = await probe();
    const [args, expected] = caps.fq.ok
      ? [['--mode', 'edt', '--placement', 'device'], /^dnspacer: mode edt cannot run at placement device: device placement needs --interfaces/]
      : [['--mode', 'edt', '--placement', 'pod'], /^dnspacer: mode edt cannot run at placement pod: sch_fq/];
    const r = await execa('nsenter', [`--net=${topo.node.path}`, '--', 'node', 'dist/cli.js', 'agent', ...args, '--state-file', path.join(dir, 'refused.json')], { reject: false, timeout: slow(30_000) });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr).trim().split('\n').pop()).toMatch(expected);
    expect(await snapshot()).toBe(before);
    const bad = await execa('node', ['dist/cli.js', 'agent', '--delay', 'soon'], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(String(bad.stderr).trim().split('\n')).toHaveLength(1);
    expect(String(bad.stderr)).toMatch(/invalid delay/);
  }, slow(60_000));

  it('serializes DNS at host placement, follows interfaces, serves metrics, and undoes exactly', async () => {
    const before = await snapshot();
    const agent = startAgent(['--mode', 'serialize']);
    await ready();
    expect(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress'])).toMatch(/mirred \(Egress Redirect to device dnsp-ifb0\)/);
    // one queue: one softirq context at a time
    const [ifb] = JSON.parse(await inNode('ip', ['-j', '-d', 'link', 'show', 'dnsp-ifb0'])) as { num_tx_queues: number }[];
    expect(ifb).toMatchObject({ num_tx_queues: 1 });

    const stat0 = await inNode('cat', ['/proc/net/stat/nf_conntrack']);
    const racer = await execa('ip', ['netns', 'exec', topo.pod.name, racerPath(), '--server', VIP, '--pairs', '1000'], { reject: false });
    expect(racer.exitCode).toBe(0);
    const stat1 = await inNode('cat', ['/proc/net/stat/nf_conntrack']);
    const { parseConntrackStat } = await import('../../src/lab/conntrack.js');
    expect(parseConntrackStat(stat1).clashResolve - parseConntrackStat(stat0).clashResolve).toBe(0);

    const metrics = (await get('http://127.0.0.1:19741/metrics')).body;
    expect(metrics).toMatch(/dnspacer_info\{[^}]*mode="serialize"/);
    const serialized = metrics.match(/dnspacer_serialized_queries_total\{[^}]*interface="vpod0"[^}]*\} (\d+)/);
    expect(Number(serialized?.[1])).toBeGreaterThanOrEqual(2000);
    const caps = await probe();
    expect(metrics).toContain(`dnspacer_probe_supported{feature="fq"} ${caps.fq.ok ? 1 : 0}`);
    expect(metrics).toContain(`dnspacer_probe_supported{feature="serializeMirred"} 1`);

    // a full IFB queue loses queries, and the metric says so: a tiny tbf on the IFB
    // stands in for a CPU that cannot keep up, and a flood overflows it
    const ifbDrops = async () => {
      const [root] = JSON.parse(await inNode('tc', ['-s', '-j', 'qdisc', 'show', 'dev', 'dnsp-ifb0', 'root'])) as { drops: number }[];
      return root!.drops;
    };
    expect(metrics).toContain(`dnspacer_serialize_dropped_total{interface="dnsp-ifb0"} ${await ifbDrops()}`);
    await inNode('tc', ['qdisc', 'replace', 'dev', 'dnsp-ifb0', 'root', 'tbf', 'rate', '8kbit', 'burst', '1600', 'limit', '1600']);
    const { floodPath } = await import('../../src/lab/run.js');
    await execa('ip', ['netns', 'exec', topo.pod.name, floodPath(), '--server', VIP, '--seconds', '0.3', '--threads', '1']);
    const dropped = await ifbDrops();
    expect(dropped).toBeGreaterThan(100);
    const afterFlood = (await get('http://127.0.0.1:19741/metrics')).body;
    expect(afterFlood).toContain(`dnspacer_serialize_dropped_total{interface="dnsp-ifb0"} ${dropped}`);
    expect(afterFlood).toMatch(/dnspacer_serialize_backlog_packets\{interface="dnsp-ifb0"\} \d+/);
    const statusArgs = ['dist/cli.js', 'status', '--state-file', path.join(dir, 'state.json'), '--pin-dir', PIN_DIR];
    expect(JSON.parse(await inNode('node', [...statusArgs, '--json'])).serializeQueues).toEqual([{ interface: 'dnsp-ifb0', dropped, queued: expect.any(Number) }]);
    expect(await inNode('node', statusArgs)).toContain(`serializing through dnsp-ifb0: ${dropped} dropped at its full queue`);
    await inNode('tc', ['qdisc', 'del', 'dev', 'dnsp-ifb0', 'root']);

    // a new pod interface is picked up from link events, and let go when deleted
    await vethPair({ ns: topo.node, name: 'vpod1' }, { ns: topo.pod, name: 'eth1' });
    await until('vpod1 filter', async () => /mirred/.test(await inNode('tc', ['filter', 'show', 'dev', 'vpod1', 'ingress'])), 3000);
    await inNode('ip', ['link', 'del', 'vpod1']);
    await until('vpod1 gone from metrics', async () => !/interface="vpod1"/.test((await get('http://127.0.0.1:19741/metrics')).body), 3000);

    agent.kill('SIGTERM');
    const done = await agent;
    expect(done.exitCode, String(done.stderr)).toBe(0);
    expect(await snapshot()).toBe(before);
    expect(fs.existsSync(path.join(dir, 'state.json'))).toBe(false);
  }, slow(90_000));

  // Finding pods and reloading config are the agent's own logic over netlink calls every
  // supported kernel has; each step spawns a Node process, which takes seconds under TCG.
  // Host only: the VM tier's time goes to the datapath.
  it.skipIf(kernelTier)('pod placement: attaches inside each pod found through its host-side veth, a new pod within 1 s, lets a deleted one go, undoes exactly', async () => {
    const inPod = (ns: string, args: string[]) => run({ netns: ns }, 'tc', args);
    const before = [await snapshot(), await inPod(topo.pod.path, ['qdisc', 'show'])].join('\n');
    const agent = startAgent(['--mode', 'observe', '--placement', 'pod']);
    await ready();
    expect(await inPod(topo.pod.path, ['filter', 'show', 'dev', 'eth0', 'egress'])).toMatch(/bpf/);
    // the DNS backends also have an eth0 whose peer is in the node, but on vdns*, not vpod*
    for (const be of topo.backends) expect(await inPod(be.path, ['qdisc', 'show', 'dev', 'eth0'])).not.toMatch(/clsact/);
    // a pod whose own conntrack is in use (here a stateful rule, as a sidecar adds) gets
    // its own conntrack rows; idle pods do not
    await topo.pod.exec('iptables', ['-w', '-A', 'OUTPUT', '-m', 'conntrack', '--ctstate', 'NEW,ESTABLISHED', '-j', 'ACCEPT']);
    try {
      await execa('ip', ['netns', 'exec', topo.pod.name, 'dig', '+tries=1', '+time=3', `@${VIP}`, 'web.dnspacer.test', 'AAAA']);
      const text = (await get('http://127.0.0.1:19741/metrics')).body;
      const queries = text.match(/dnspacer_dns_queries_total\{[^}]*netns="([^"]+)"[^}]*qtype="AAAA"[^}]*\} (\d+)/);
      expect(queries?.[1]).toBe(topo.pod.path);
      expect(Number(queries?.[2])).toBeGreaterThanOrEqual(1);
      const rows = [...text.matchAll(/dnspacer_conntrack_clash_resolve_total\{netns="([^"]*)"\} \d+/g)].map((m) => m[1]);
      expect(rows.sort()).toEqual(['', topo.pod.path]);
    } finally {
      await topo.pod.exec('iptables', ['-w', '-D', 'OUTPUT', '-m', 'conntrack', '--ctstate', 'NEW,ESTABLISHED', '-j', 'ACCEPT']);
    }

    // a pod created now is attached from the link event, not at a later poll; a pod
    // deleted as a CNI DEL does (its veth first, then its netns) is let go as fast.
    // The agent's own log times when it acted.
    const { Netns } = await import('../../src/netns.js');
    const pod2 = await Netns.create('dnsp-agent-pod');
    let created = 0;
    let deleted = 0;
    try {
      await vethPair({ ns: topo.node, name: 'vpod2' }, { ns: pod2, name: 'eth0' });
      created = Date.now();
      await until('the new pod attached', async () => /bpf/.test(await inPod(pod2.path, ['filter', 'show', 'dev', 'eth0', 'egress']).catch(() => '')), slow(5000));
      await pod2.ip('link', 'del', 'eth0');
      deleted = Date.now();
      await until('the deleted pod let go', async () => !(await get('http://127.0.0.1:19741/metrics')).body.includes(pod2.path), slow(5000));
    } finally {
      await pod2.delete();
    }

    agent.kill('SIGTERM');
    const done = await agent;
    expect(done.exitCode, String(done.stderr)).toBe(0);
    const logs = String(done.stdout).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { time: number; msg: string; netns?: string });
    const at = (msg: string) => logs.find((l) => l.msg === msg && l.netns === pod2.path)?.time;
    expect(at('applied')! - created).toBeLessThan(slow(1000));
    expect(at('interface gone')! - deleted).toBeLessThan(slow(1000));
    expect([await snapshot(), await inPod(topo.pod.path, ['qdisc', 'show'])].join('\n')).toBe(before);
  }, slow(90_000));

  it.skipIf(kernelTier)('applies a config file change live, on its own and on SIGHUP: a map update, the same program attached', async () => {
    const before = await snapshot();
    // the agent watches the folder of --config; the settings live behind a symlink, so an
    // edit of the target is seen only on SIGHUP, and a new symlink is seen by the watch
    const real = fs.mkdtempSync(path.join(dir, 'real-'));
    const link = path.join(dir, 'dnspacer.yaml');
    const target = (name: string, text: string) => {
      fs.writeFileSync(path.join(real, name), text);
      fs.rmSync(`${link}.new`, { force: true });
      fs.symlinkSync(path.join(real, name), `${link}.new`);
      fs.renameSync(`${link}.new`, link);
    };
    target('a.yaml', 'policy: pairs\ngap: 100us\n');
    const agent = startAgent(['--mode', 'observe', '--placement', 'host', '--config', link]);
    await ready();
    const status = async () => JSON.parse(await inNode('node', ['dist/cli.js', 'status', '--json', '--state-file', path.join(dir, 'state.json'), '--pin-dir', PIN_DIR])).classifier as { policy: string; gapUs: number; dnsPorts: number[] };
    expect(await status()).toMatchObject({ policy: 'pairs', gapUs: 100, dnsPorts: [53] });
    const filter = await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']);

    target('b.yaml', 'policy: aaaa\ngap: 250us\ndnsPort: [53, 5353]\n');
    await until('file change applied', async () => {
      const c = await status();
      return c.policy === 'aaaa' && c.gapUs === 250 && c.dnsPorts.join() === '53,5353';
    });
    // a bad edit is refused and the running config kept
    target('c.yaml', 'policy: sometimes\n');
    await new Promise((r) => setTimeout(r, slow(500)));
    expect((await status()).policy).toBe('aaaa');

    // edited in place behind the symlink: nothing until SIGHUP
    fs.writeFileSync(path.join(real, 'c.yaml'), 'policy: pairs\ngap: 300us\n');
    await new Promise((r) => setTimeout(r, slow(500)));
    expect((await status()).gapUs).toBe(250);
    agent.kill('SIGHUP');
    await until('SIGHUP applied', async () => {
      const c = await status();
      return c.policy === 'pairs' && c.gapUs === 300;
    });
    expect(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress'])).toBe(filter);
    agent.kill('SIGTERM');
    expect((await agent).exitCode).toBe(0);
    expect(await snapshot()).toBe(before);
  }, slow(60_000));

  it('after SIGKILL, the next start adopts what is there without stacking a second filter', async () => {
    const before = await snapshot();
    const first = startAgent(['--mode', 'serialize']);
    await ready();
    first.kill('SIGKILL');
    await first;
    expect(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress'])).toMatch(/mirred/);
    const second = startAgent(['--mode', 'serialize']);
    await ready();
    const filters = await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']);
    expect(filters.match(/handle 0xd45/g)).toHaveLength(1);
    expect((await inNode('ip', ['-o', 'link', 'show', 'type', 'ifb'])).trim().split('\n')).toHaveLength(1);
    second.kill('SIGTERM');
    expect((await second).exitCode).toBe(0);
    expect(await snapshot()).toBe(before);
  }, slow(90_000));

  // Kubernetes logic does not depend on the kernel: the VM tier spends its minutes elsewhere
  it.skipIf(kernelTier)('with a kubeconfig: feeds the DNS Service into the filter, names pods in metrics, applies its ConfigMap live, publishes Events, rides out an outage', async () => {
    // the fake API server listens on a unix socket; a forwarder inside the node netns gives
    // the agent 127.0.0.1:19742 there, as a node reaches its API server
    const api = new FakeApiServer(path.join(dir, 'api.sock'));
    await api.start();
    const forwarder = execa('nsenter', [`--net=${topo.node.path}`, '--', 'node', '-e', `require('net').createServer((c) => { const u = require('net').connect(${JSON.stringify(path.join(dir, 'api.sock'))}); c.pipe(u).pipe(c); u.on('error', () => c.destroy()); c.on('error', () => u.destroy()); }).listen(19742, '127.0.0.1')`], { reject: false, stdin: 'ignore' });
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: fake, cluster: {server: "http://127.0.0.1:19742", insecure-skip-tls-verify: true}}]\nusers: [{name: agent, user: {}}]\ncontexts: [{name: fake, context: {cluster: fake, user: agent}}]\ncurrent-context: fake\n`);
    // Calico-style: the pod's address is routed to its host-side veth
    await inNode('ip', ['route', 'add', '198.18.1.2/32', 'dev', 'vpod0']);
    try {
      api.put('nodes', { metadata: { name: 'node-a' } });
      api.put('services', { metadata: { name: 'kube-dns', namespace: 'kube-system' }, spec: { clusterIP: VIP, clusterIPs: [VIP, 'fd00:198:18::a'], ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] } });
      api.put('pods', { metadata: { name: 'web', namespace: 'apps' }, spec: { nodeName: 'node-a' }, status: { podIP: '198.18.1.2', podIPs: [{ ip: '198.18.1.2' }] } });
      api.put('configmaps', { metadata: { name: 'dnspacer', namespace: 'dnspacer' }, data: { 'config.yaml': 'policy: pairs\n' } });
      const before = await snapshot();
      const agent = startAgent(['--mode', 'serialize', '--kubeconfig', kubeconfig, '--node-name', 'node-a', '--annotate-node', 'true']);
      await ready();
      const status = async () => JSON.parse(await inNode('node', ['dist/cli.js', 'status', '--json', '--state-file', path.join(dir, 'state.json'), '--pin-dir', PIN_DIR])).classifier as { policy: string; gapUs: number; dnsPrefixes: string[] };
      await until('the DNS Service in the filter', async () => (await status()).dnsPrefixes.join() === '198.18.100.10/32,fd00:198:18::a/128').catch(async (e) => {
        console.log(JSON.stringify(await status()), api.requests.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.query)}`));
        agent.kill('SIGTERM');
        console.log(String((await agent).stdout).slice(-3000));
        throw e;
      });

      // queries to the Service are still serialized, and counted for the pod by name
      const racer = await execa('ip', ['netns', 'exec', topo.pod.name, racerPath(), '--server', VIP, '--pairs', '100'], { reject: false });
      expect(racer.exitCode).toBe(0);
      await until('pod-labelled metrics', async () => /dnspacer_serialized_queries_total\{[^}]*namespace="apps",pod="web"\} (\d{3,})/.test((await get('http://127.0.0.1:19741/metrics')).body));

      // a ConfigMap change is a map update: same program on the interface, new settings
      const filterBefore = await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']);
      api.put('configmaps', { metadata: { name: 'dnspacer', namespace: 'dnspacer' }, data: { 'config.yaml': 'policy: aaaa\ngap: 300us\n' } });
      await until('ConfigMap applied', async () => {
        const c = await status();
        return c.policy === 'aaaa' && c.gapUs === 300;
      });
      expect(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress'])).toBe(filterBefore);

      // the Service moves: the filter follows
      api.put('services', { metadata: { name: 'kube-dns', namespace: 'kube-system' }, spec: { clusterIP: '198.18.100.11', clusterIPs: ['198.18.100.11'], ports: [{ port: 53, protocol: 'UDP' }] } });
      await until('moved Service', async () => (await status()).dnsPrefixes.join() === '198.18.100.11/32');

      // an outage changes nothing on the node; the agent catches up afterwards
      await api.stop();
      await new Promise((r) => setTimeout(r, slow(1500)));
      expect((await status()).dnsPrefixes).toEqual(['198.18.100.11/32']);
      expect(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress'])).toBe(filterBefore);
      api.put('services', { metadata: { name: 'kube-dns', namespace: 'kube-system' }, spec: { clusterIP: VIP, clusterIPs: [VIP], ports: [{ port: 53, protocol: 'UDP' }] } });
      await api.start();
      await until('caught up after the outage', async () => (await status()).dnsPrefixes.join() === '198.18.100.10/32', slow(20_000));

      expect(api.get('nodes', undefined, 'node-a')!.metadata.annotations).toMatchObject({ 'dnspacer.io/mode': 'serialize', 'dnspacer.io/placement': 'host' });
      agent.kill('SIGTERM');
      const done = await agent;
      expect(done.exitCode, `${done.signal ?? ''} ${String(done.stdout).slice(-2000)} ${String(done.stderr).slice(-2000)}`).toBe(0);
      const reasons = api.list('events', 'dnspacer').map((e) => e.reason);
      expect(reasons).toContain('ModeChosen');
      expect(reasons.at(-1)).toBe('Cleanup');
      expect(await snapshot()).toBe(before);
    } finally {
      await inNode('ip', ['route', 'del', '198.18.1.2/32', 'dev', 'vpod0']).catch(() => undefined);
      await stopProcess(forwarder);
      await api.stop();
    }
  }, slow(90_000));
});
