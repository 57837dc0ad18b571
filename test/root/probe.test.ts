// The probe needs no SYS_ADMIN: where it cannot create a scratch netns (the DaemonSet's
// base has only NET_ADMIN, BPF and PERFMON) it probes on unconnected scratch links in its
// own netns, finds the same, and leaves nothing behind.
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Netns } from '../../src/netns.js';
import { run } from '../../src/netops.js';
import { describeRoot, slow } from '../helpers/root.js';

describeRoot('probe', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await Netns.create('dnsp-probe-test');
  });
  afterAll(async () => {
    await ns?.delete();
  });

  const probeIn = (drop: string[]) =>
    execa('nsenter', [`--net=${ns.path}`, '--', 'setpriv', ...drop, '--', 'node', 'dist/cli.js', 'probe', '--json'], { reject: false });

  it('without SYS_ADMIN finds what it finds with it, and leaves the netns as it was', { timeout: slow(60_000) }, async () => {
    const links = () => run({ netns: ns.path }, 'ip', ['-o', 'link', 'show']);
    const rules = () => run({ netns: ns.path }, 'iptables-save', ['-t', 'mangle']).then((s) => s.replace(/^#.*$/gm, ''));
    const before = [await links(), await rules()];
    const full = await probeIn([]);
    expect(full.exitCode, String(full.stderr)).toBe(0);
    const limited = await probeIn(['--bounding-set', '-sys_admin']);
    expect(limited.exitCode, String(limited.stderr)).toBe(0);
    // the limited run really could not create a netns
    const denied = await execa('nsenter', [`--net=${ns.path}`, '--', 'setpriv', '--bounding-set', '-sys_admin', '--', 'ip', 'netns', 'add', 'dnsp-probe-denied'], { reject: false });
    expect(denied.exitCode).not.toBe(0);
    expect(JSON.parse(String(limited.stdout))).toEqual(JSON.parse(String(full.stdout)));
    expect([await links(), await rules()]).toEqual(before);
  });
});
