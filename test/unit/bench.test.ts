// The throughput benchmark's bookkeeping: arrivals read from the kernel's UDP counters,
// and the median sample.
import { expect, it } from 'vitest';
import { medianSample, udpArrivals } from '../../src/bench/ifb.js';

const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 100
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 120 3400 7 90 5 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 9 9 9 9 9 0 0 0 0
`;

it('counts every datagram that reached UDP: taken, refused for want of a socket, or dropped in error', () => {
  // InErrors already includes RcvbufErrors; UdpLite is another protocol
  expect(udpArrivals(SNMP)).toBe(120 + 3400 + 7);
  expect(() => udpArrivals('Ip: 1\n')).toThrow(/no Udp: rows/);
});

it('takes the median of each figure', () => {
  const s = (d: number, c: number, x: number) => ({ sentPerSec: d * 2, deliveredPerSec: d, cpuUsPerQuery: c, ifbDroppedPerSec: x });
  expect(medianSample([s(10, 3, 0), s(30, 1, 9), s(20, 2, 4)])).toEqual({ sentPerSec: 40, deliveredPerSec: 20, cpuUsPerQuery: 2, ifbDroppedPerSec: 4 });
});
