// End to end with containers as pods: podman (as a Docker API service) runs a glibc
// client, a musl client and two dnsmasq backends, started through testcontainers on two
// podman networks with 198.18.0.0/15 subnets. This machine is the node: a kube-proxy-style
// DNAT from a Service VIP to the backends, and the agent running on it as on a real node.
// The agent must find the pods from their namespaces and veths, classify and count both
// clients' queries inside each pod, remove the race the pods hit at the node's conntrack,
// and leave the node and the pods exactly as they were.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConntrackStat } from '../../src/lab/conntrack.js';
import { chooseMode } from '../../src/modes.js';
import { stopProcess } from '../../src/netns.js';
import { probe } from '../../src/probe.js';
import { describeRoot } from '../helpers/root.js';

const repo = path.resolve(import.meta.dirname, '../..');
const env = { ...process.env, CONTAINERS_CONF: path.join(repo, 'test/container/containers.conf') };
const podman = (args: string[], opts: { timeout?: number } = {}) => execa('podman', args, { env, reject: false, ...opts });
const tag = `${process.pid}`;
const PODS_NET = `dnsp-e2e-pods-${tag}`;
const DNS_NET = `dnsp-e2e-dns-${tag}`;
const VIP = '198.18.65.53';
const NAME = 'web.dnspacer.test';
const CHAIN = `DNSP-E2E-${tag}`;
const METRICS = '127.0.0.1:19745';
const PIN_DIR = `/sys/fs/bpf/dnspacer-e2e-${tag}`;
const IMAGES = { glibc: 'localhost/dnsp-e2e-glibc:test', musl: 'localhost/dnsp-e2e-musl:test', dnsmasq: 'localhost/dnsp-e2e-dnsmasq:test' };

async function sh(file: string, args: string[], netns?: string): Promise<string> {
  const [cmd, argv] = netns ? ['nsenter', [`--net=${netns}`, '--', file, ...args]] : [file, args];
  const r = await execa(cmd, argv, { reject: false });
  if (r.exitCode !== 0) throw new Error(`${[file, ...args].join(' ')}: ${String(r.stderr).trim()}`);
  return String(r.stdout);
}

async function until(what: string, fn: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const clashes = async () => {
  const s = parseConntrackStat(fs.readFileSync('/proc/net/stat/nf_conntrack', 'utf8'));
  return s.clashResolve + s.insertFailed + s.drop;
};

describeRoot('containers as pods (testcontainers on podman)', () => {
  let service: ResultPromise | undefined;
  let dir: string;
  const started: StartedTestContainer[] = [];
  let glibc: StartedTestContainer;
  let musl: StartedTestContainer;
  /** each client pod's network namespace, as podman made it */
  const podNetns: Record<'glibc' | 'musl', string> = { glibc: '', musl: '' };
  /** the host-side veths of the pods, which the agent is told to serve */
  let podVeths: string[] = [];
  const agents: ResultPromise[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dnsp-e2e-'));
    const sock = path.join(dir, 'podman.sock');
    service = execa('podman', ['system', 'service', '--time=0', `unix://${sock}`], { env, reject: false, stdin: 'ignore' });
    await until('the podman API socket', async () => fs.existsSync(sock));
    // testcontainers reads these at its first call
    process.env.DOCKER_HOST = `unix://${sock}`;
    process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
    process.env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';
    const { GenericContainer, Wait } = await import('testcontainers');

    const bases = await execa('bash', [path.join(repo, 'test/container/base-images.sh')], { env });
    const [base] = String(bases.stdout).trim().split(' ');
    for (const [kind, image] of Object.entries(IMAGES)) {
      const b = await podman(['build', '--network', 'host', '-q', '-t', image, '--build-arg', `BASE=${base}`, '-f', path.join(repo, `test/container/pods/${kind}.Containerfile`), path.join(repo, 'native/racer')], { timeout: 600_000 });
      expect(b.exitCode, String(b.stderr).slice(-2000)).toBe(0);
    }
    for (const [net, subnet] of [[PODS_NET, '198.18.64.0/24'], [DNS_NET, '198.18.66.0/24']] as const) {
      const n = await podman(['network', 'create', '--subnet', subnet, '--disable-dns', net]);
      expect(n.exitCode, String(n.stderr)).toBe(0);
    }

    const backends = await Promise.all(
      [0, 1].map((i) =>
        new GenericContainer(IMAGES.dnsmasq)
          .withName(`dnsp-e2e-dns${i}-${tag}`)
          .withNetworkMode(DNS_NET)
          .withCommand([`--host-record=${NAME},198.18.200.7,2001:2:0:200::7`])
          .withWaitStrategy(Wait.forLogMessage(/started, version/))
          .start(),
      ),
    );
    started.push(...backends);
    // the node: kube-proxy's DNAT from the Service VIP to either backend
    const ips = backends.map((b) => b.getIpAddress(DNS_NET));
    await sh('iptables', ['-w', '-t', 'nat', '-N', CHAIN]);
    await sh('iptables', ['-w', '-t', 'nat', '-A', CHAIN, '-p', 'udp', '--dport', '53', '-m', 'statistic', '--mode', 'random', '--probability', '0.5', '-j', 'DNAT', '--to-destination', `${ips[0]}:53`]);
    await sh('iptables', ['-w', '-t', 'nat', '-A', CHAIN, '-p', 'udp', '--dport', '53', '-j', 'DNAT', '--to-destination', `${ips[1]}:53`]);
    await sh('iptables', ['-w', '-t', 'nat', '-I', 'PREROUTING', '-d', VIP, '-j', CHAIN]);

    const resolvConf = path.join(dir, 'resolv.conf');
    fs.writeFileSync(resolvConf, `nameserver ${VIP}\noptions timeout:2 attempts:2\n`);
    const client = (image: string, name: string) =>
      new GenericContainer(image)
        .withName(`dnsp-e2e-${name}-${tag}`)
        .withNetworkMode(PODS_NET)
        .withBindMounts([{ source: resolvConf, target: '/etc/resolv.conf', mode: 'ro' }])
        .withCommand(['sleep', 'infinity'])
        .start();
    [glibc, musl] = await Promise.all([client(IMAGES.glibc, 'glibc'), client(IMAGES.musl, 'musl')]);
    started.push(glibc, musl);
    for (const [kind, c] of [['glibc', glibc], ['musl', musl]] as const) {
      podNetns[kind] = String((await podman(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', c.getId()])).stdout).trim();
      expect(podNetns[kind]).toMatch(/^\/run\/netns\//);
    }
    const bridge = String((await podman(['network', 'inspect', '--format', '{{.NetworkInterface}}', PODS_NET])).stdout).trim();
    podVeths = (JSON.parse(await sh('ip', ['-j', 'link', 'show', 'master', bridge])) as { ifname: string }[]).map((l) => l.ifname);
    expect(podVeths).toHaveLength(2);
    // the path works before anything of ours is there
    const answer = await glibc.exec(['getent', 'ahosts', NAME]);
    expect(answer.output).toContain('198.18.200.7');
  }, 900_000);

  afterAll(async () => {
    for (const a of agents) await stopProcess(a);
    for (const c of started.reverse()) await c.stop({ timeout: 1 }).catch(() => undefined);
    await sh('iptables', ['-w', '-t', 'nat', '-D', 'PREROUTING', '-d', VIP, '-j', CHAIN]).catch(() => undefined);
    await sh('iptables', ['-w', '-t', 'nat', '-F', CHAIN]).catch(() => undefined);
    await sh('iptables', ['-w', '-t', 'nat', '-X', CHAIN]).catch(() => undefined);
    for (const net of [PODS_NET, DNS_NET]) await podman(['network', 'rm', '-f', net]);
    await stopProcess(service);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(PIN_DIR, { recursive: true, force: true });
  }, 120_000);

  /** What the agent may change: the node's qdiscs, links and rules, and each pod's qdiscs. */
  async function snapshot(): Promise<string> {
    const links = (JSON.parse(await sh('ip', ['-j', '-d', 'link', 'show'])) as { ifname: string; linkinfo?: { info_kind?: string } }[]).map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? ''}`);
    const parts = [await sh('tc', ['qdisc', 'show']), links.join('\n'), (await sh('iptables-save', [])).replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '')];
    for (const ns of Object.values(podNetns)) parts.push(await sh('tc', ['qdisc', 'show'], ns));
    return parts.join('\n---\n');
  }

  function startAgent(args: string[]): ResultPromise {
    const a = execa('node', ['dist/cli.js', 'agent', '--interfaces', podVeths.join(','), '--metrics-address', METRICS, '--state-file', path.join(dir, 'state.json'), '--pin-dir', PIN_DIR, ...args], { cwd: repo, reject: false, stdin: 'ignore' });
    agents.push(a);
    return a;
  }
  const metrics = async () => (await fetch(`http://${METRICS}/metrics`)).text();
  const ready = () => until('/readyz', async () => (await fetch(`http://${METRICS}/readyz`)).status === 200);
  const stop = async (a: ResultPromise) => {
    a.kill('SIGTERM');
    const r = await a;
    expect(r.exitCode, String(r.stderr).slice(-2000)).toBe(0);
  };

  it('pod placement: finds both pods from their namespaces and veths, counts each client\'s A and AAAA queries in its own pod, undoes exactly', { timeout: 120_000 }, async () => {
    const before = await snapshot();
    const agent = startAgent(['--mode', 'observe', '--placement', 'pod']);
    await ready();
    for (const ns of Object.values(podNetns)) expect(await sh('tc', ['filter', 'show', 'dev', 'eth0', 'egress'], ns)).toMatch(/bpf/);

    const g = await glibc.exec(['lookup-glibc', '--name', NAME, '--count', '20']);
    expect(g.exitCode, g.output).toBe(0);
    const m = await musl.exec(['lookup-musl', '--name', NAME, '--count', '20']);
    expect(m.exitCode, m.output).toBe(0);

    const text = await metrics();
    for (const [kind, ns] of Object.entries(podNetns)) {
      // the agent names a podman netns by its /var/run/netns path (/var/run is /run)
      const count = (qtype: string) => Number(new RegExp(`dnspacer_dns_queries_total\\{[^}]*netns="[^"]*/${path.basename(ns)}"[^}]*qtype="${qtype}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
      expect(count('A'), `${kind} A`).toBeGreaterThanOrEqual(20);
      expect(count('AAAA'), `${kind} AAAA`).toBeGreaterThanOrEqual(20);
    }
    await stop(agent);
    expect(await snapshot()).toBe(before);
  });

  it('the mode the agent picks on this kernel removes the race the pods hit at the node\'s conntrack, and undoes exactly', { timeout: 180_000 }, async () => {
    const racer = async () => {
      const c0 = await clashes();
      const r = await glibc.exec(['racer', '--server', VIP, '--pairs', '1000', '--timeout-ms', '3000']);
      expect(r.exitCode, r.output.slice(-500)).toBe(0);
      const lost = r.stdout.trim().split('\n').filter((l) => /^\d/.test(l)).reduce((n, l) => n + Number(l.split(' ')[5]), 0);
      return { clashes: (await clashes()) - c0, lost };
    };
    // without the agent, the race is there
    const bare = await racer();
    expect(bare.clashes).toBeGreaterThan(20);

    const before = await snapshot();
    const caps = await probe();
    const choice = chooseMode('auto', 'auto', caps, { canEnterNetns: true, hasDevices: true });
    const agent = startAgent([]);
    await ready();
    const text = await metrics();
    expect(text).toMatch(new RegExp(`dnspacer_info\\{[^}]*mode="${choice.mode}"[^}]*placement="${choice.placement}"`));
    const mitigated = await racer();
    expect(mitigated.clashes).toBe(0);
    expect(mitigated.lost).toBe(0);
    const after = await metrics();
    const sum = (name: string) => [...after.matchAll(new RegExp(`${name}\\{[^}]*\\} (\\d+)`, 'g'))].reduce((n, x) => n + Number(x[1]), 0);
    // serialize carries every query through the IFB; edt holds the second of each pair
    if (choice.mode === 'serialize') expect(sum('dnspacer_serialized_queries_total')).toBeGreaterThanOrEqual(2000);
    else expect(sum('dnspacer_paced_packets_total')).toBeGreaterThanOrEqual(1000);
    await stop(agent);
    expect(await snapshot()).toBe(before);
  });
});
