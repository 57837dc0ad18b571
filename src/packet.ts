// Builds Ethernet frames carrying IPv4/IPv6 with UDP or TCP, for the classifier
// tests, the benchmark and the lab. Checksums are real, so a frame can also be
// written to a socket or a tap and be accepted by a kernel.
import { isIPv4, isIPv6 } from 'node:net';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const ETH_HLEN = 14;

/** An IPv6 extension header to put before the transport header. */
export type Ipv6Extension =
  | { kind: 'hop-by-hop' | 'destination' | 'routing'; length?: number /* total bytes, multiple of 8, >= 8 */ }
  | { kind: 'fragment'; offset: number /* in 8-byte units */; more: boolean; id?: number };

export interface L4Spec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Uint8Array;
  protocol?: 'udp' | 'tcp';
  /** IPv4 only: raw option bytes (padded to 4 with NOPs/EOL by the caller or here) */
  ipv4Options?: Uint8Array;
  /** IPv4 only: fragment offset in 8-byte units, and the MF flag */
  ipv4Fragment?: { offset: number; more: boolean };
  ipv6Extensions?: Ipv6Extension[];
}

export function parseIp(text: string): Buffer {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text)) throw new Error(`"${text}" is not an IPv4 or IPv6 address`);
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

/** ::ffff:a.b.c.d for IPv4, the address itself for IPv6: how the classifier keys flows. */
export function mappedAddress(text: string): Buffer {
  const a = parseIp(text);
  if (a.length === 16) return a;
  return Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), a]);
}

function onesComplementSum(parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) sum += (p[i]! << 8) | (p[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function checksum(parts: Uint8Array[]): number {
  const c = ~onesComplementSum(parts) & 0xffff;
  return c;
}

function pseudoHeader(src: Buffer, dst: Buffer, protocol: number, length: number): Buffer {
  if (src.length === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = protocol;
    p.writeUInt16BE(length, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(length, 32);
  p[39] = protocol;
  return p;
}

function transport(spec: L4Spec, src: Buffer, dst: Buffer): { bytes: Buffer; protocol: number } {
  if ((spec.protocol ?? 'udp') === 'udp') {
    const h = Buffer.alloc(8);
    const len = 8 + spec.payload.length;
    h.writeUInt16BE(spec.sport, 0);
    h.writeUInt16BE(spec.dport, 2);
    h.writeUInt16BE(len & 0xffff, 4);
    const sum = checksum([pseudoHeader(src, dst, IPPROTO_UDP, len), h, spec.payload]);
    h.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
    return { bytes: Buffer.concat([h, spec.payload]), protocol: IPPROTO_UDP };
  }
  // TCP segment with PSH|ACK; DNS over TCP carries a 2-byte length before the message
  const h = Buffer.alloc(20);
  h.writeUInt16BE(spec.sport, 0);
  h.writeUInt16BE(spec.dport, 2);
  h.writeUInt32BE(1, 4);
  h.writeUInt32BE(1, 8);
  h[12] = 5 << 4;
  h[13] = 0x18;
  h.writeUInt16BE(65535, 14);
  const len = 20 + spec.payload.length;
  h.writeUInt16BE(checksum([pseudoHeader(src, dst, IPPROTO_TCP, len), h, spec.payload]), 16);
  return { bytes: Buffer.concat([h, spec.payload]), protocol: IPPROTO_TCP };
}

function ipv4(spec: L4Spec, src: Buffer, dst: Buffer): Buffer {
  const l4 = transport(spec, src, dst);
  let opts = Buffer.from(spec.ipv4Options ?? []);
  if (opts.length % 4) opts = Buffer.concat([opts, Buffer.alloc(4 - (opts.length % 4))]);
  if (opts.length > 40) throw new Error('IPv4 options are at most 40 bytes');
  const hlen = 20 + opts.length;
  const h = Buffer.alloc(hlen);
  h[0] = 0x40 | (hlen / 4);
  h.writeUInt16BE(hlen + l4.bytes.length, 2);
  h.writeUInt16BE(0x1234, 4);
  const frag = spec.ipv4Fragment;
  h.writeUInt16BE(frag ? (frag.more ? 0x2000 : 0) | (frag.offset & 0x1fff) : 0x4000, 6);
  h[8] = 64;
  h[9] = l4.protocol;
  src.copy(h, 12);
  dst.copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(checksum([h]), 10);
  return Buffer.concat([h, l4.bytes]);
}

const EXT_NEXTHDR = { 'hop-by-hop': 0, routing: 43, fragment: 44, destination: 60 } as const;

function ipv6(spec: L4Spec, src: Buffer, dst: Buffer): Buffer {
  const l4 = transport(spec, src, dst);
  const exts = spec.ipv6Extensions ?? [];
  const chain: Buffer[] = [];
  exts.forEach((ext, i) => {
    const next = i + 1 < exts.length ? EXT_NEXTHDR[exts[i + 1]!.kind] : l4.protocol;
    if (ext.kind === 'fragment') {
      const f = Buffer.alloc(8);
      f[0] = next;
      f.writeUInt16BE(((ext.offset & 0x1fff) << 3) | (ext.more ? 1 : 0), 2);
      f.writeUInt32BE(ext.id ?? 0xabcd, 4);
      chain.push(f);
      return;
    }
    const length = ext.length ?? 8;
    if (length < 8 || length % 8 || length > 2048) throw new Error('IPv6 extension length must be 8..2048 in steps of 8');
    const e = Buffer.alloc(length);
    e[0] = next;
    e[1] = length / 8 - 1;
    if (ext.kind === 'routing') e[2] = 0; // type 0 segments left 0: ignored by receivers
    else e.fill(0x00, 2); // Pad1 options
    chain.push(e);
  });
  const payload = Buffer.concat([...chain, l4.bytes]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = exts.length ? EXT_NEXTHDR[exts[0]!.kind] : l4.protocol;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** An IP packet (no link header). */
export function ipPacket(spec: L4Spec): Buffer {
  const src = parseIp(spec.src);
  const dst = parseIp(spec.dst);
  if (src.length !== dst.length) throw new Error('source and destination must be of one family');
  return src.length === 4 ? ipv4(spec, src, dst) : ipv6(spec, src, dst);
}

const SRC_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const DST_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);

export function ethernet(ethertype: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(ETH_HLEN);
  DST_MAC.copy(h, 0);
  SRC_MAC.copy(h, 6);
  h.writeUInt16BE(ethertype, 12);
  return Buffer.concat([h, payload]);
}

/** An Ethernet frame with an IP packet, as tc sees it on a veth. */
export function frame(spec: L4Spec): Buffer {
  const ip = ipPacket(spec);
  return ethernet(ip[0]! >> 4 === 4 ? ETH_P_IP : ETH_P_IPV6, ip);
}
