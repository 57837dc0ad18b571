// A real attach: the classifier on a veth in a namespace, real queries from dig
// and glibc to a real dnsmasq in another namespace, counters read back, then a
// clean detach that leaves nothing behind.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ResultPromise } from 'execa';
import { Classifier, defaultClassifierConfig } from '../../src/datapath/datapath.js';
import { Netns, startDnsmasq, stopProcess, vethPair, waitForDns } from '../../src/netns.js';
import { describeRoot } from '../helpers/root.js';

describeRoot('classifier attached to a veth', () => {
  let client: Netns;
  let server: Netns;
  let dnsmasq: ResultPromise | undefined;
  let classifier: Classifier;

  beforeAll(async () => {
    client = await Netns.create('dnsp-att-c');
    server = await Netns.create('dnsp-att-s');
    await vethPair(
      { ns: client, name: 'c0', addrs: ['198.18.60.1/24', '2001:2:0:60::1/64'] },
      { ns: server, name: 's0', addrs: ['198.18.60.53/24', '2001:2:0:60::53/64'] },
    );
    dnsmasq = startDnsmasq(server, ['198.18.60.53', '2001:2:0:60::53'], { 'web.dnspacer.test': ['198.18.61.7', '2001:2:0:61::7'] });
    await waitForDns(client, '198.18.60.53', 'web.dnspacer.test');
    client.writeResolvConf(['198.18.60.53']);
    classifier = Classifier.load();
  });

  afterAll(async () => {
    for (const att of classifier?.attachments() ?? []) classifier.detach(att);
    classifier?.close();
    await stopProcess(dnsmasq);
    await client?.delete();
    await server?.delete();
  });

  it('counts real queries by type at egress, answers stay correct, and detach removes everything', async () => {
    classifier.configure(defaultClassifierConfig({ action: 'observe', tracePerSec: 0 }), [53], []);
    const att = classifier.attach({ ifname: 'c0', netns: client.path, direction: 'egress' });
    expect(att.createdHook).toBe(true);
    expect(await client.exec('tc', ['filter', 'show', 'dev', 'c0', 'egress'])).toMatch(/dnspacer_classi/);

    const a = await client.exec('dig', ['+short', '@198.18.60.53', 'web.dnspacer.test', 'A']);
    const aaaa = await client.exec('dig', ['+short', '@2001:2:0:60::53', 'web.dnspacer.test', 'AAAA']);
    const srv = await client.exec('dig', ['+short', '@198.18.60.53', '_x._tcp.web.dnspacer.test', 'SRV']);
    expect(a.trim()).toBe('198.18.61.7');
    expect(aaaa.trim()).toBe('2001:2:0:61::7');
    expect(srv.trim()).toBe('');
    // glibc's getaddrinfo: an A and an AAAA query from one socket
    const gai = await client.exec('getent', ['ahosts', 'web.dnspacer.test']);
    expect(gai).toMatch(/198\.18\.61\.7/);
    expect(gai).toMatch(/2001:2:0:61::7/);

    const c = classifier.counters(att.slot);
    expect(c.queriesA).toBe(2n); // dig A + getaddrinfo A
    expect(c.queriesAaaa).toBe(2n); // dig AAAA over IPv6 + getaddrinfo AAAA
    expect(c.queriesOther).toBe(1n);
    expect(c.paced).toBe(0n);
    expect(c.malformed).toBe(0n);
    expect(c.udp).toBeGreaterThanOrEqual(5n);
    expect(c.packets).toBeGreaterThanOrEqual(c.udp);

    classifier.detach(att);
    expect(await client.exec('tc', ['filter', 'show', 'dev', 'c0', 'egress'])).toBe('');
    expect(await client.exec('tc', ['qdisc', 'show', 'dev', 'c0'])).not.toMatch(/clsact/);
    // after detach the slot stops counting
    await client.exec('dig', ['+short', '@198.18.60.53', 'web.dnspacer.test', 'A']);
    expect(classifier.counters(att.slot).queriesA).toBe(2n);
  });

  it('keeps a clsact it did not create, and its other filters', async () => {
    await client.exec('tc', ['qdisc', 'add', 'dev', 'c0', 'clsact']);
    // someone else's filter (cls_u32 matching everything, no action)
    await client.exec('tc', ['filter', 'add', 'dev', 'c0', 'egress', 'pref', '9', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0']);
    const att = classifier.attach({ ifname: 'c0', netns: client.path, direction: 'egress' });
    expect(att.createdHook).toBe(false);
    classifier.detach(att);
    const filters = await client.exec('tc', ['filter', 'show', 'dev', 'c0', 'egress']);
    expect(filters).toMatch(/pref 9/);
    expect(filters).not.toMatch(/dnspacer/);
    await client.exec('tc', ['qdisc', 'del', 'dev', 'c0', 'clsact']);
  });
});
