// Byte layouts of the structs in bpf/dnspacer.h, encoded and decoded little-endian
// as the (x86_64, arm64) hosts we run on store them. Keep in step with the header.

export const MAX_SLOTS = 4096;

export const Policy = { aaaa: 0, pairs: 1 } as const;
export type PolicyName = keyof typeof Policy;

export const Action = { observe: 0, pace: 1, mark: 2, serialize: 3 } as const;
export type ActionName = keyof typeof Action;

export const SerializeVia = { redirect: 0, classify: 1 } as const;
export type SerializeViaName = keyof typeof SerializeVia;

export const TraceAction = ['none', 'paced', 'marked', 'serialized'] as const;
export type TraceActionName = (typeof TraceAction)[number];

export interface ClassifierConfig {
  enabled: boolean;
  policy: PolicyName;
  action: ActionName;
  matchPrefixes: boolean;
  delayNs: bigint;
  windowNs: bigint;
  gapNs: bigint;
  markValue: number;
  markMask: number;
  tracePerSec: number;
  /** time 1 in 2^n non-DNS UDP 5-tuples for the any-port racing-pair count (0-15; 0 = all) */
  udpSampleShift: number;
}

export const CONFIG_SIZE = 56;

export function encodeConfig(c: ClassifierConfig): Buffer {
  const b = Buffer.alloc(CONFIG_SIZE);
  b.writeUInt32LE(c.enabled ? 1 : 0, 0);
  b.writeUInt32LE(Policy[c.policy], 4);
  b.writeUInt32LE(Action[c.action], 8);
  b.writeUInt32LE(c.matchPrefixes ? 1 : 0, 12);
  b.writeBigUInt64LE(c.delayNs, 16);
  b.writeBigUInt64LE(c.windowNs, 24);
  b.writeBigUInt64LE(c.gapNs, 32);
  b.writeUInt32LE(c.markValue >>> 0, 40);
  b.writeUInt32LE(c.markMask >>> 0, 44);
  b.writeUInt32LE(c.tracePerSec >>> 0, 48);
  b.writeUInt32LE(c.udpSampleShift >>> 0, 52);
  return b;
}

export function decodeConfig(b: Buffer): ClassifierConfig {
  return {
    enabled: b.readUInt32LE(0) !== 0,
    policy: nameOf(Policy, b.readUInt32LE(4), 'policy'),
    action: nameOf(Action, b.readUInt32LE(8), 'action'),
    matchPrefixes: b.readUInt32LE(12) !== 0,
    delayNs: b.readBigUInt64LE(16),
    windowNs: b.readBigUInt64LE(24),
    gapNs: b.readBigUInt64LE(32),
    markValue: b.readUInt32LE(40),
    markMask: b.readUInt32LE(44),
    tracePerSec: b.readUInt32LE(48),
    udpSampleShift: b.readUInt32LE(52),
  };
}

function nameOf<T extends Record<string, number>>(table: T, value: number, what: string): keyof T {
  for (const [k, v] of Object.entries(table)) if (v === value) return k as keyof T;
  throw new Error(`unknown ${what} ${value} in the classifier's config map`);
}

export interface InstanceConfig {
  slot: number;
  ingress: boolean;
  redirectIfindex: number;
  serializeVia: SerializeViaName;
}

export function encodeInstance(i: InstanceConfig): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(i.slot, 0);
  b.writeUInt32LE(i.ingress ? 1 : 0, 4);
  b.writeUInt32LE(i.redirectIfindex, 8);
  b.writeUInt32LE(SerializeVia[i.serializeVia], 12);
  return b;
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** Field order of struct dnspacer_counters. */
export const COUNTER_FIELDS = [
  'packets',
  'udp',
  'queriesA',
  'queriesAaaa',
  'queriesOther',
  'paced',
  'delayNs',
  'racingUdpPairs',
  'racingDnsPairs',
  'racingLeft',
  'malformed',
  'serialized',
  'tstampUnsupported',
  'traceDropped',
] as const;
export type CounterName = (typeof COUNTER_FIELDS)[number];
export type Counters = Record<CounterName, bigint>;
export const COUNTERS_SIZE = COUNTER_FIELDS.length * 8;

export function zeroCounters(): Counters {
  return Object.fromEntries(COUNTER_FIELDS.map((f) => [f, 0n])) as Counters;
}

/** Sums a PERCPU_ARRAY value: nCpus records, each rounded up to 8 bytes. */
export function sumPerCpuCounters(value: Buffer): Counters {
  const out = zeroCounters();
  const stride = Math.ceil(COUNTERS_SIZE / 8) * 8;
  if (value.length % stride !== 0) throw new Error(`counters value of ${value.length} bytes is not a multiple of ${stride}`);
  for (let base = 0; base < value.length; base += stride) {
    COUNTER_FIELDS.forEach((f, i) => {
      out[f] += value.readBigUInt64LE(base + i * 8);
    });
  }
  return out;
}

export function addCounters(a: Counters, b: Counters): Counters {
  const out = zeroCounters();
  for (const f of COUNTER_FIELDS) out[f] = a[f] + b[f];
  return out;
}

/** A prefix as config.ts parses it: 16-byte address, IPv4 as ::ffff:a.b.c.d. */
export interface Prefix {
  family: 4 | 6;
  addr: Uint8Array;
  /** within the family: 0-32 or 0-128 */
  prefixLen: number;
}

/** LPM key: an IPv4 prefix sits under ::ffff:0:0/96, so its length grows by 96. */
export function encodePrefixKey(p: Prefix): Buffer {
  const b = Buffer.alloc(20);
  const bits = p.family === 4 ? p.prefixLen + 96 : p.prefixLen;
  b.writeUInt32LE(bits, 0);
  // the trie compares only prefixlen bits; zero the rest so equal prefixes are one key
  const addr = Buffer.from(p.addr);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    addr[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  addr.copy(b, 4);
  return b;
}

/** An LPM key back to its prefix, as text: 198.18.0.10/32, fd00::a/128. */
export function decodePrefixKey(b: Buffer): string {
  const bits = b.readUInt32LE(0);
  const addr = new Uint8Array(b.subarray(4, 20));
  const v4 = bits >= 96 && addr.subarray(0, 12).every((x, i) => x === (i < 10 ? 0 : 0xff));
  return v4 ? `${formatAddr(addr, 4)}/${bits - 96}` : `${formatAddr(addr, 6)}/${bits}`;
}

export interface TraceEvent {
  tsNs: bigint;
  gapNs: bigint;
  delayNs: bigint;
  family: 4 | 6;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  qtypePrev: number;
  qtype: number;
  slot: number;
  isDns: boolean;
  action: TraceActionName;
}

export const EVENT_SIZE = 72;

export function decodeEvent(b: Buffer): TraceEvent {
  if (b.length < EVENT_SIZE) throw new Error(`trace event of ${b.length} bytes, expected ${EVENT_SIZE}`);
  const family = b.readUInt8(68) === 6 ? 6 : 4;
  return {
    tsNs: b.readBigUInt64LE(0),
    gapNs: b.readBigUInt64LE(8),
    delayNs: b.readBigUInt64LE(16),
    saddr: formatAddr(b.subarray(24, 40), family),
    daddr: formatAddr(b.subarray(40, 56), family),
    sport: b.readUInt16LE(56),
    dport: b.readUInt16LE(58),
    qtypePrev: b.readUInt16LE(60),
    qtype: b.readUInt16LE(62),
    slot: b.readUInt32LE(64),
    family,
    isDns: b.readUInt8(69) !== 0,
    action: TraceAction[b.readUInt8(70)] ?? 'none',
  };
}

export function formatAddr(addr16: Uint8Array, family: 4 | 6): string {
  if (family === 4) return Array.from(addr16.subarray(12, 16)).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((addr16[i]! << 8) | addr16[i + 1]!).toString(16));
  // compress the longest run of zero groups, as RFC 5952 asks
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
