// Which namespaces count as pods: the far ends of host-side veths, matched by the id our
// namespace gives theirs, never a namespace merely having an eth0.
import { describe, expect, it } from 'vitest';
import { AUTO_GLOBS, matches, parseHostVeths, podPeers } from '../../src/placement.js';

// `ip -j link show type veth` in a node namespace: two pods' veths, a veth pair whose
// both ends are here (no link_netnsid), and a veth to a namespace that is not a pod
const DUMP = JSON.stringify([
  { ifindex: 7, link_index: 2, ifname: 'veth1a2b', link_netnsid: 0 },
  { ifindex: 8, link_index: 3, ifname: 'cali77', link_netnsid: 1 },
  { ifindex: 9, link_index: 10, ifname: 'loopa' },
  { ifindex: 10, link_index: 9, ifname: 'loopb' },
  { ifindex: 11, link_index: 2, ifname: 'uplink0', link_netnsid: 2 },
]);

describe('pod discovery', () => {
  it('keeps only veths whose peer lives in another namespace', () => {
    expect(parseHostVeths(DUMP)).toEqual([
      { ifname: 'veth1a2b', peerIndex: 2, peerNsid: 0 },
      { ifname: 'cali77', peerIndex: 3, peerNsid: 1 },
      { ifname: 'uplink0', peerIndex: 2, peerNsid: 2 },
    ]);
    expect(parseHostVeths('')).toEqual([]);
  });

  it('a namespace is a pod when a matching host-side veth leads to it; its own device is the peer index', () => {
    const nsids = new Map([
      ['/var/run/netns/pod-a', 0],
      ['/proc/42/ns/net', 1],
      ['/var/run/netns/outside', 2],
      // no id: no link between it and us was ever reported, whatever it holds
      ['/proc/43/ns/net', -1],
    ]);
    expect(podPeers(parseHostVeths(DUMP), nsids, AUTO_GLOBS)).toEqual([
      { netns: '/var/run/netns/pod-a', peerIndex: 2, hostDev: 'veth1a2b' },
      { netns: '/proc/42/ns/net', peerIndex: 3, hostDev: 'cali77' },
    ]);
    expect(podPeers(parseHostVeths(DUMP), nsids, ['uplink*'])).toEqual([{ netns: '/var/run/netns/outside', peerIndex: 2, hostDev: 'uplink0' }]);
    expect(podPeers(parseHostVeths(DUMP), new Map(), AUTO_GLOBS)).toEqual([]);
  });

  it('globs match whole names', () => {
    expect(matches('veth1a2b', ['veth*'])).toBe(true);
    expect(matches('xveth1', ['veth*'])).toBe(false);
    expect(matches('eth0', ['eth?'])).toBe(true);
    expect(matches('flannel.1', ['flannel.1'])).toBe(true);
    expect(matches('flannelx1', ['flannel.1'])).toBe(false);
  });
});
