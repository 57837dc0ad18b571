// The libbpf binding on the real kernel: objects, maps, tc hooks in another netns,
// errors a user can read, and no leaked file descriptors.
import fs from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadAddon } from '../../src/datapath/addon.js';
import { bpfObjectPath } from '../../src/datapath/datapath.js';
import { floodPath } from '../../src/lab/run.js';
import { Netns, sh, vethPair } from '../../src/netns.js';
import { describeRoot } from '../helpers/root.js';

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

describeRoot('native addon', () => {
  const addon = loadAddon();
  let ns: Netns;
  let peer: Netns;

  beforeAll(async () => {
    ns = await Netns.create('dnsp-native');
    peer = await Netns.create('dnsp-native-peer');
    await vethPair({ ns, name: 'nv0', addrs: ['198.18.50.1/30'] }, { ns: peer, name: 'nv1', addrs: ['198.18.50.2/30'] });
  });
  afterAll(async () => {
    await ns?.delete();
    await peer?.delete();
  });

  it('opens an object and lists its maps and programs', () => {
    const obj = addon.openObject(bpfObjectPath());
    try {
      const maps = Object.fromEntries(obj.maps().map((m) => [m.name, m]));
      expect(maps.counters).toMatchObject({ type: 6, keySize: 4, valueSize: 112, maxEntries: 4096, perCpu: true });
      expect(maps.flows).toMatchObject({ type: 2, keySize: 4, valueSize: 16, maxEntries: 65536, perCpu: false });
      expect(maps.prefixes).toMatchObject({ type: 11, keySize: 20, valueSize: 1 });
      const [prog] = obj.programs();
      expect(prog).toMatchObject({ name: 'dnspacer_classify', section: 'tc' });
      expect(prog!.fd).toBeGreaterThan(2);
      expect(addon.progIdFromFd(prog!.fd)).toBe(prog!.id);
    } finally {
      obj.close();
    }
    expect(() => obj.maps()).toThrow(/closed/);
    obj.close(); // idempotent
  });

  it('shares maps between two loaded copies', () => {
    const a = addon.openObject(bpfObjectPath());
    const fdOf = (o: typeof a, n: string) => o.maps().find((m) => m.name === n)!.fd;
    const b = addon.openObject(bpfObjectPath(), { reuseMaps: { flows: fdOf(a, 'flows') } });
    try {
      const key = Buffer.from([7, 0, 0, 0]);
      addon.mapUpdate(fdOf(a, 'flows'), key, Buffer.alloc(16, 1));
      expect(addon.mapLookup(fdOf(b, 'flows'), key)).toEqual(Buffer.alloc(16, 1));
      expect(addon.mapLookup(fdOf(b, 'recent'), Buffer.alloc(4))).toEqual(Buffer.alloc(8)); // not shared: fresh
    } finally {
      a.close();
      b.close();
    }
  });

  it('looks up, updates, deletes and iterates hash, LPM and per-CPU maps', () => {
    const obj = addon.openObject(bpfObjectPath());
    try {
      const fd = (n: string) => obj.maps().find((m) => m.name === n)!.fd;
      // LPM trie: a hash-like map with NOEXIST, delete and iteration
      const key = (len: number, b: number) => {
        const k = Buffer.alloc(20, b);
        k.writeUInt32LE(len, 0);
        return k;
      };
      const k1 = key(128, 1);
      const k2 = key(128, 2);
      expect(addon.mapLookup(fd('prefixes'), k1)).toBeNull();
      addon.mapUpdate(fd('prefixes'), k1, Buffer.from([1]));
      addon.mapUpdate(fd('prefixes'), k2, Buffer.from([2]));
      expect(() => addon.mapUpdate(fd('prefixes'), k1, Buffer.from([3]), 1)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      expect(addon.mapKeys(fd('prefixes')).map((k) => k[4]).sort()).toEqual([1, 2]);
      expect(addon.mapDelete(fd('prefixes'), k1)).toBe(true);
      expect(addon.mapDelete(fd('prefixes'), k1)).toBe(false);
      expect(addon.mapKeys(fd('prefixes'))).toHaveLength(1);
      addon.mapDelete(fd('prefixes'), k2);

      // ARRAY: every key exists; iteration walks all of them
      addon.mapUpdate(fd('flows'), Buffer.from([3, 0, 0, 0]), Buffer.alloc(16, 0xaa));
      expect(addon.mapLookup(fd('flows'), Buffer.from([3, 0, 0, 0]))).toEqual(Buffer.alloc(16, 0xaa));
      expect(addon.mapKeys(fd('flows'))).toHaveLength(65536);

      const prefix = Buffer.alloc(20);
      prefix.writeUInt32LE(120, 0);
      addon.mapUpdate(fd('prefixes'), prefix, Buffer.from([1]));
      expect(addon.mapKeys(fd('prefixes'))).toEqual([prefix]);

      const ncpu = addon.numPossibleCpus();
      expect(ncpu).toBeGreaterThanOrEqual(1);
      const perCpu = Buffer.alloc(112 * ncpu);
      for (let c = 0; c < ncpu; c++) perCpu.writeBigUInt64LE(BigInt(c + 1), c * 112);
      addon.mapUpdate(fd('counters'), Buffer.from([5, 0, 0, 0]), perCpu);
      expect(addon.mapLookup(fd('counters'), Buffer.from([5, 0, 0, 0]))).toEqual(perCpu);
      expect(() => addon.mapUpdate(fd('counters'), Buffer.from([5, 0, 0, 0]), Buffer.alloc(112))).toThrow(/value/);
      expect(() => addon.mapLookup(fd('flows'), Buffer.alloc(3))).toThrow(/key/);
      expect(() => addon.mapUpdate(fd('flows'), Buffer.alloc(4), Buffer.alloc(15))).toThrow(/value/);
    } finally {
      obj.close();
    }
  });

  it('creates clsact, attaches, replaces, queries and detaches inside another netns', async () => {
    const obj = addon.openObject(bpfObjectPath());
    const other = addon.openObject(bpfObjectPath());
    const progFd = obj.programs()[0]!.fd;
    const target = { ifname: 'nv0', netns: ns.path, direction: 'egress' as const };
    const ownNetns = fs.readlinkSync('/proc/thread-self/ns/net');
    try {
      expect(addon.tcHookCreate(target)).toEqual({ created: true });
      expect(addon.tcHookCreate(target)).toEqual({ created: false });
      const att = addon.tcAttach({ ...target, progFd, handle: 7, priority: 3 });
      expect(att).toEqual({ handle: 7, priority: 3, progId: addon.progIdFromFd(progFd) });
      expect(await ns.exec('tc', ['filter', 'show', 'dev', 'nv0', 'egress'])).toMatch(/direct-action.*name dnspacer_classi /); // the kernel keeps 15 characters
      expect(() => addon.tcAttach({ ...target, progFd, handle: 7, priority: 3 })).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      const otherFd = other.programs()[0]!.fd;
      const replaced = addon.tcAttach({ ...target, progFd: otherFd, handle: 7, priority: 3, replace: true });
      expect(replaced.progId).toBe(addon.progIdFromFd(otherFd));
      expect(addon.tcQuery({ ...target, handle: 7, priority: 3 })).toEqual(replaced);
      expect(addon.tcQuery({ ...target, direction: 'ingress', handle: 7, priority: 3 })).toBeNull();
      addon.tcDetach({ ...target, handle: 7, priority: 3 });
      expect(addon.tcQuery({ ...target, handle: 7, priority: 3 })).toBeNull();
      addon.tcHookDestroy({ ...target, direction: 'both' });
      expect(await ns.exec('tc', ['qdisc', 'show', 'dev', 'nv0'])).not.toMatch(/clsact/);
      // the calling thread is back in its own namespace
      expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(ownNetns);
    } finally {
      obj.close();
      other.close();
      await ns.exec('tc', ['qdisc', 'del', 'dev', 'nv0', 'clsact']).catch(() => undefined);
    }
  });

  it("reads an interface's root qdisc statistics inside another netns, as tc -s shows them", async () => {
    await ns.exec('tc', ['qdisc', 'replace', 'dev', 'nv0', 'root', 'tbf', 'rate', '8kbit', 'burst', '1600', 'limit', '1600']);
    try {
      // more than the tbf lets through or queues: the rest is dropped at the root qdisc
      await ns.exec(floodPath(), ['--server', '198.18.50.2', '--seconds', '0.2', '--threads', '1']);
      await new Promise((r) => setTimeout(r, 100)); // let the sender's last packets reach the qdisc
      const [shown] = JSON.parse(await ns.exec('tc', ['-s', '-j', 'qdisc', 'show', 'dev', 'nv0', 'root'])) as { kind: string; drops: number; qlen: number }[];
      const read = addon.rootQdiscStats('nv0', ns.path);
      // the drops are settled once the flood stops; the queue still drains between the reads
      expect(read).toMatchObject({ kind: 'tbf', drops: shown!.drops });
      expect(read!.qlen).toBeLessThanOrEqual(shown!.qlen);
      expect(read!.drops).toBeGreaterThan(0);
    } finally {
      await ns.exec('tc', ['qdisc', 'del', 'dev', 'nv0', 'root']);
    }
    // a veth without a queue has noqueue at its root; a missing interface is named
    expect(addon.rootQdiscStats('nv0', ns.path)).toMatchObject({ kind: 'noqueue', drops: 0 });
    expect(() => addon.rootQdiscStats('nv9', ns.path)).toThrow(/^interface nv9 does not exist in /);
  });

  it('turns failures into errors that name the problem, with errno and code', () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as Error & { errno: number; code: string };
      }
      throw new Error('expected a throw');
    };
    let e = err(() => addon.tcHookCreate({ ifname: 'veth9', direction: 'egress' }));
    expect(e.message).toMatch(/^interface veth9 does not exist/);
    expect(e).toMatchObject({ errno: 19, code: 'ENODEV' });
    e = err(() => addon.tcHookCreate({ ifname: 'nv0', netns: '/var/run/netns/dnsp-absent', direction: 'egress' }));
    expect(e.message).toMatch(/network namespace \/var\/run\/netns\/dnsp-absent/);
    expect(e.code).toBe('ENOENT');
    e = err(() => addon.openObject('/nonexistent.bpf.o'));
    expect(e.message).toMatch(/does not exist/);
    e = err(() => addon.tcDetach({ ifname: 'nv0', netns: ns.path, direction: 'ingress', handle: 1, priority: 1 }));
    expect(e.errno).toBeGreaterThan(0);
    expect(() => addon.objGet('/sys/fs/bpf/dnsp-none')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('runs a program on packet data with a context in and out, repeated', () => {
    const obj = addon.openObject(bpfObjectPath('empty.bpf.o'));
    try {
      const out = addon.testRun(obj.programs()[0]!.fd, {
        data: Buffer.alloc(64, 0x11),
        ctx: { mark: 9, tstamp: 1234n, priority: 2 },
        repeat: 1000,
      });
      expect(out.retval).toBe(0);
      expect(out.data).toEqual(Buffer.alloc(64, 0x11));
      expect(out.ctx).toMatchObject({ mark: 9, tstamp: 1234n, priority: 2 });
      expect(out.durationNs).toBeGreaterThanOrEqual(0);
    } finally {
      obj.close();
    }
  });

  it('leaks no file descriptors over many open/attach/close cycles', () => {
    const warm = addon.openObject(bpfObjectPath());
    warm.close();
    const before = openFds();
    for (let i = 0; i < 30; i++) {
      const obj = addon.openObject(bpfObjectPath());
      const ring = addon.ringBufferOpen(obj.maps().find((m) => m.name === 'events')!.fd, () => undefined);
      addon.tcHookCreate({ ifname: 'nv0', netns: ns.path, direction: 'ingress' });
      addon.tcAttach({ ifname: 'nv0', netns: ns.path, direction: 'ingress', progFd: obj.programs()[0]!.fd, handle: 1, priority: 1, replace: true });
      try {
        addon.tcHookCreate({ ifname: 'nope0', netns: ns.path, direction: 'ingress' });
      } catch {
        /* expected */
      }
      ring.close();
      obj.close();
    }
    addon.tcHookDestroy({ ifname: 'nv0', netns: ns.path, direction: 'both' });
    expect(openFds()).toBe(before);
  });

  it('routes libbpf messages to a JS callback', () => {
    const seen: string[] = [];
    addon.setLogger((level, message) => seen.push(`${level}: ${message}`));
    try {
      expect(() => addon.objGet('/sys/fs/bpf/dnsp-none')).toThrow();
      expect(() => addon.openObject('/etc/hostname')).toThrow();
    } finally {
      addon.setLogger(null);
    }
    expect(seen.some((l) => l.includes('hostname'))).toBe(true);
  });
});

it('the shell helper reports a failing command in one line', async () => {
  await expect(sh('ip', ['link', 'show', 'dnsp-nope0'])).rejects.toThrow(/^ip link show dnsp-nope0 failed \(exit 1\): .*dnsp-nope0/);
});
