// The agent's container image, built with podman from the Dockerfile on local stand-ins
// for the public base images, then run the way the DaemonSet runs it: host network (here
// the lab's node namespace), only NET_ADMIN, BPF and PERFMON, a read-only root, the
// host's bpffs. It must probe without SYS_ADMIN, serialize the pod's DNS, and undo
// everything on SIGTERM.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Topology, VIP, buildTopology } from '../../src/lab/topology.js';
import { racerPath } from '../../src/lab/run.js';
import { parseConntrackStat } from '../../src/lab/conntrack.js';
import { run } from '../../src/netops.js';
import { describeRoot } from '../helpers/root.js';

const repo = path.resolve(import.meta.dirname, '../..');
const IMAGE = 'localhost/dnspacer:test';
const env = { ...process.env, CONTAINERS_CONF: path.join(repo, 'test/container/containers.conf') };
const podman = (args: string[], opts: { timeout?: number } = {}) => execa('podman', args, { env, reject: false, ...opts });
// as the DaemonSet's securityContext (manifests/base/daemonset.yaml)
const PIN_DIR = `/sys/fs/bpf/dnspacer-image-test-${process.pid}`;
const SECURITY = ['--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN,BPF,PERFMON', '--security-opt', 'seccomp=unconfined', '--read-only', '--user', '0'];

describeRoot('container image', () => {
  let topo: Topology;
  const name = `dnsp-agent-${process.pid}`;

  beforeAll(async () => {
    const bases = await execa('bash', [path.join(repo, 'test/container/base-images.sh')], { env });
    const [base, node] = String(bases.stdout).trim().split(' ');
    // a proxy's CA, where the machine has one, reaches npm inside the build as a secret
    const ca = process.env.NODE_EXTRA_CA_CERTS && fs.existsSync(process.env.NODE_EXTRA_CA_CERTS) ? ['--secret', `id=ca,src=${process.env.NODE_EXTRA_CA_CERTS}`] : [];
    const build = await podman(['build', '--network', 'host', '-q', '-t', IMAGE, '--build-arg', `BASE=${base}`, '--build-arg', `NODE=${node}`, ...ca, repo], { timeout: 900_000 });
    expect(build.exitCode, String(build.stderr).slice(-3000)).toBe(0);
    topo = await buildTopology();
  }, 960_000);

  afterAll(async () => {
    await podman(['rm', '-f', '-t', '0', name]);
    await topo?.destroy();
    fs.rmSync(PIN_DIR, { recursive: true, force: true });
  });

  it('holds Node.js 20, libbpf1, iproute2 and both iptables backends, no compiler, and runs `dnspacer agent`', { timeout: 60_000 }, async () => {
    const inspect = await podman(['image', 'inspect', IMAGE, '--format', '{{json .Config.Entrypoint}}']);
    expect(JSON.parse(String(inspect.stdout))).toEqual(['node', '/opt/dnspacer/dist/cli.js', 'agent']);
    const probe = await podman(['run', '--rm', '--entrypoint', 'sh', IMAGE, '-c', 'node --version; for t in ip tc iptables-nft iptables-legacy nsenter clang gcc make; do command -v $t >/dev/null && echo has $t || echo lacks $t; done; ls /usr/lib/x86_64-linux-gnu/ | grep -c "^libbpf.so.1"']);
    expect(probe.exitCode, String(probe.stderr)).toBe(0);
    const out = String(probe.stdout);
    expect(out).toMatch(/^v20\./);
    for (const t of ['ip', 'tc', 'iptables-nft', 'iptables-legacy', 'nsenter']) expect(out).toContain(`has ${t}`);
    for (const t of ['clang', 'gcc', 'make']) expect(out).toContain(`lacks ${t}`);
    expect(out.trim().split('\n').pop()).not.toBe('0');
    // bad input: one line, exit 2
    const bad = await podman(['run', '--rm', IMAGE, '--delay', 'soon']);
    expect(bad.exitCode).toBe(2);
    expect(String(bad.stderr).split('\n').filter((l) => l.startsWith('dnspacer:'))).toEqual(['dnspacer: invalid delay: "soon" is not a duration like 100us, 1.5ms or 0 (units ns, us, ms, s) from 0 to 1s']);
  });

  it('with the DaemonSet\'s privileges: serializes the pod\'s DNS before conntrack, and SIGTERM undoes it all', { timeout: 180_000 }, async () => {
    const inNode = (file: string, args: string[]) => run({ netns: topo.node.path }, file, args);
    const snapshot = async () => [await inNode('tc', ['qdisc', 'show']), await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']), await inNode('ip', ['-j', '-d', 'link', 'show']).then((s) => (JSON.parse(s) as { ifname: string; linkinfo?: { info_kind?: string } }[]).map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? ''}`).join('\n'))].join('\n');
    const before = await snapshot();
    const agent = podman(['run', '--rm', '--name', name, '--network', `ns:${topo.node.path}`, ...SECURITY, '-v', '/sys/fs/bpf:/sys/fs/bpf', IMAGE, '--mode', 'serialize', '--interfaces', 'vpod*', '--metrics-address', '127.0.0.1:19743', '--pin-dir', PIN_DIR]);
    try {
      const end = Date.now() + 60_000;
      while (!/mirred/.test(await inNode('tc', ['filter', 'show', 'dev', 'vpod0', 'ingress']))) {
        if (Date.now() > end) {
          await podman(['stop', '-t', '5', name]);
          const r = await agent;
          throw new Error(`the agent did not attach: ${String(r.stdout).slice(-1500)} ${String(r.stderr).slice(-1500)}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      const stat0 = parseConntrackStat(await inNode('cat', ['/proc/net/stat/nf_conntrack']));
      const racer = await execa('ip', ['netns', 'exec', topo.pod.name, racerPath(), '--server', VIP, '--pairs', '1000'], { reject: false });
      expect(racer.exitCode).toBe(0);
      const stat1 = parseConntrackStat(await inNode('cat', ['/proc/net/stat/nf_conntrack']));
      expect(stat1.clashResolve - stat0.clashResolve).toBe(0);
      const metrics = await inNode('node', ['-e', "fetch('http://127.0.0.1:19743/metrics').then(r => r.text()).then(t => console.log(t))"]);
      expect(Number(/dnspacer_serialized_queries_total\{[^}]*interface="vpod0"[^}]*\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2000);
      // the probe had no SYS_ADMIN for a scratch netns, and still found what it needed
      expect(metrics).toContain('dnspacer_probe_supported{feature="serializeMirred"} 1');
    } finally {
      await podman(['stop', '-t', '30', name]);
    }
    const done = await agent;
    expect(done.exitCode, String(done.stderr).slice(-2000)).toBe(0);
    expect(await snapshot()).toBe(before);
    expect(fs.existsSync(PIN_DIR)).toBe(false);
  });
});

