// Packet and DNS builders: the bytes a kernel would accept.
import { expect, it } from 'vitest';
import { QTYPE, buildQuery, encodeName, nameOfWireLength, readResponse } from '../../src/dns.js';
import { frame, ipPacket, parseIp } from '../../src/packet.js';
import { decodeEvent, encodeConfig, encodePrefixKey, formatAddr, sumPerCpuCounters, COUNTERS_SIZE } from '../../src/datapath/layout.js';
import { defaultClassifierConfig } from '../../src/datapath/datapath.js';

function sum16(b: Buffer): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

it('builds IPv4 with a valid header checksum and UDP checksum', () => {
  const ip = ipPacket({ src: '198.18.0.1', dst: '198.18.0.2', sport: 1234, dport: 53, payload: Buffer.from('abc') });
  expect(sum16(ip.subarray(0, 20))).toBe(0xffff);
  const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 17, 0, 11])]);
  expect(sum16(Buffer.concat([pseudo, ip.subarray(20)]))).toBe(0xffff);
});

it('builds IPv6 with extension headers chained to UDP', () => {
  const ip = ipPacket({ src: '2001:2::1', dst: '2001:2::2', sport: 1, dport: 53, payload: Buffer.alloc(4), ipv6Extensions: [{ kind: 'hop-by-hop' }, { kind: 'fragment', offset: 0, more: true }] });
  expect(ip[6]).toBe(0); // hop-by-hop
  expect(ip[40]).toBe(44); // then fragment
  expect(ip[48]).toBe(17); // then UDP
  expect(ip.readUInt16BE(4)).toBe(ip.length - 40);
});

it('parses addresses and frames with the right ethertype', () => {
  expect(parseIp('2001:2::a')).toEqual(Buffer.from('2001000200000000000000000000000a', 'hex'));
  expect(() => parseIp('198.18.0')).toThrow(/not an IPv4 or IPv6 address/);
  expect(frame({ src: '2001:2::1', dst: '2001:2::2', sport: 1, dport: 2, payload: Buffer.alloc(0) }).readUInt16BE(12)).toBe(0x86dd);
});

it('encodes names, refuses bad ones, and makes names of an exact wire length', () => {
  expect(encodeName('a.bc')).toEqual(Buffer.from([1, 0x61, 2, 0x62, 0x63, 0]));
  expect(() => encodeName(`${'a'.repeat(64)}.test`)).toThrow(/1-63 bytes/);
  for (const n of [1, 3, 4, 64, 65, 66, 200, 254, 255]) expect(encodeName(nameOfWireLength(n))).toHaveLength(n);
  expect(() => nameOfWireLength(2)).toThrow(/1 or 3-255/);
  const q = buildQuery({ id: 7, name: 'x.test', qtype: QTYPE.HTTPS });
  expect(q.readUInt16BE(0)).toBe(7);
  expect(q.readUInt16BE(q.length - 4)).toBe(65);
  expect(readResponse(q)).toMatchObject({ id: 7, qtype: 65 });
});

it('lays out the config and decodes counters and events as the header defines them', () => {
  const c = encodeConfig(defaultClassifierConfig({ markValue: 0x1000, udpSampleShift: 4 }));
  expect(c).toHaveLength(56);
  expect(c.readBigUInt64LE(24)).toBe(2_000_000n);
  expect(c.readUInt32LE(52)).toBe(4);
  const two = Buffer.alloc(COUNTERS_SIZE * 2);
  two.writeBigUInt64LE(3n, 0);
  two.writeBigUInt64LE(4n, COUNTERS_SIZE);
  expect(sumPerCpuCounters(two).packets).toBe(7n);
  const key = encodePrefixKey({ family: 4, addr: Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 198, 19, 7, 9]), prefixLen: 16 });
  expect(key.readUInt32LE(0)).toBe(112);
  expect([...key.subarray(16, 20)]).toEqual([198, 19, 0, 0]);
  const ev = Buffer.alloc(72);
  ev.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 198, 18, 0, 2], 24);
  ev.writeUInt16LE(53, 58);
  ev.writeUInt16LE(28, 62);
  ev[68] = 4;
  ev[69] = 1;
  ev[70] = 1;
  expect(decodeEvent(ev)).toMatchObject({ saddr: '198.18.0.2', dport: 53, qtype: 28, isDns: true, action: 'paced' });
  expect(formatAddr(Buffer.from('20010002000000000000000000000001', 'hex'), 6)).toBe('2001:2::1');
});
