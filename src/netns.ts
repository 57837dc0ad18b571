// Network namespaces, veth pairs and commands inside them, through iproute2.
// Every namespace this module creates is named with a prefix and the creating
// PID, so a caller can find and remove exactly its own.
import fs from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number | undefined,
  ) {
    super(`${command} failed${exitCode !== undefined ? ` (exit ${exitCode})` : ''}: ${stderr.trim().split('\n').pop() ?? ''}`);
    this.name = 'CommandError';
  }
}

/** Runs a command to completion; a non-zero exit throws one readable line. */
export async function sh(file: string, args: string[], opts: { input?: string; netns?: string } = {}): Promise<string> {
  const [cmd, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, file, ...args]] : [file, args];
  const r = await execa(cmd, argv, { reject: false, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (r.exitCode !== 0) throw new CommandError([file, ...args].join(' '), String(r.stderr || r.stdout), r.exitCode);
  return String(r.stdout);
}

export const NETNS_DIR = '/var/run/netns';

let counter = 0;

export class Netns {
  private constructor(readonly name: string) {}

  /** The path the addon and setns take. */
  get path(): string {
    return path.join(NETNS_DIR, this.name);
  }

  static async create(prefix: string): Promise<Netns> {
    const name = `${prefix}-${process.pid}-${counter++}`;
    await sh('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  ip(...args: string[]): Promise<string> {
    return sh('ip', ['-n', this.name, ...args]);
  }

  exec(file: string, args: string[], opts: { input?: string } = {}): Promise<string> {
    return sh(file, args, { ...opts, netns: this.name });
  }

  /** Starts a long-running process inside; the caller ends it by PID. */
  spawn(file: string, args: string[]): ResultPromise {
    return execa('ip', ['netns', 'exec', this.name, file, ...args], { reject: false, stdin: 'ignore' });
  }

  /** /etc/netns/<name>/resolv.conf: `ip netns exec` bind-mounts it over /etc/resolv.conf. */
  writeResolvConf(nameservers: string[], options: string[] = []): void {
    const dir = path.join('/etc/netns', this.name);
    fs.mkdirSync(dir, { recursive: true });
    const lines = nameservers.map((n) => `nameserver ${n}`);
    if (options.length) lines.push(`options ${options.join(' ')}`);
    fs.writeFileSync(path.join(dir, 'resolv.conf'), `${lines.join('\n')}\n`);
  }

  async delete(): Promise<void> {
    fs.rmSync(path.join('/etc/netns', this.name), { recursive: true, force: true });
    if (fs.existsSync(this.path)) await sh('ip', ['netns', 'del', this.name]).catch(() => undefined);
  }
}

export interface VethEnd {
  ns: Netns;
  name: string;
  /** "198.18.0.1/24", "2001:2::1/64" */
  addrs?: string[];
}

/** A veth pair between two namespaces, addressed and up. IPv6 DAD is turned off so
 * addresses work at once. */
export async function vethPair(a: VethEnd, b: VethEnd): Promise<void> {
  await a.ns.ip('link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns.name);
  for (const end of [a, b]) {
    await end.ns.exec('sysctl', ['-qw', `net.ipv6.conf.${end.name}.accept_dad=0`]);
    for (const addr of end.addrs ?? []) await end.ns.ip('addr', 'add', addr, 'dev', end.name, ...(addr.includes(':') ? ['nodad'] : []));
    await end.ns.ip('link', 'set', end.name, 'up');
  }
}

/** Ends a process we started, by PID, and waits for it. */
export async function stopProcess(child: ResultPromise | undefined): Promise<void> {
  if (!child?.pid) return;
  if (child.exitCode === null || child.exitCode === undefined) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await child.catch(() => undefined);
  clearTimeout(timer);
}

/** dnsmasq answering fixed records, in a namespace, on one address. */
export function startDnsmasq(ns: Netns, listen: string[], records: Record<string, string[]>, extra: string[] = []): ResultPromise {
  const args = [
    '--keep-in-foreground',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--bind-interfaces',
    '--user=root',
    '--pid-file',
    '--cache-size=0',
    ...listen.map((a) => `--listen-address=${a}`),
    ...Object.entries(records).flatMap(([name, addrs]) => addrs.map((a) => `--host-record=${name},${a}`)),
    ...extra,
  ];
  return ns.spawn('dnsmasq', args);
}

/** Resolves when something in `ns` answers DNS at addr, or throws after timeoutMs. */
export async function waitForDns(ns: Netns, server: string, name: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const out = await ns.exec('dig', ['+short', '+time=1', '+tries=1', `@${server}`, name, 'A']);
      if (out.trim() !== '') return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`no DNS answer from ${server} for ${name} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
