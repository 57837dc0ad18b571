// DNS messages on the wire (RFC 1035): query builder and a small response reader.

export const QTYPE = { A: 1, NS: 2, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, SVCB: 64, HTTPS: 65 } as const;
export type QtypeName = keyof typeof QTYPE;

export function qtypeName(qtype: number): string {
  for (const [name, value] of Object.entries(QTYPE)) if (value === qtype) return name;
  return `TYPE${qtype}`;
}

export interface QuerySpec {
  id?: number;
  /** dotted name; each label must be 1-63 bytes unless `labels` is given */
  name?: string;
  /** raw labels, for names a normal encoder refuses (over-long labels) */
  labels?: Uint8Array[];
  qtype: number;
  qclass?: number;
  /** header flags word; default RD (0x0100). Set 0x8000 for a response. */
  flags?: number;
  qdcount?: number;
  /** replaces the whole question name with these bytes (e.g. a compression pointer) */
  rawName?: Uint8Array;
}

export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const bytes = Buffer.from(label, 'ascii');
      if (bytes.length < 1 || bytes.length > 63) throw new Error(`DNS label "${label}" must be 1-63 bytes`);
      parts.push(Buffer.from([bytes.length]), bytes);
    }
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > 255) throw new Error(`DNS name "${name}" is ${out.length} bytes on the wire, over 255`);
  return out;
}

function rawLabels(labels: Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) parts.push(Buffer.from([l.length & 0xff]), Buffer.from(l));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function buildQuery(spec: QuerySpec): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(spec.id ?? 0x4242, 0);
  h.writeUInt16BE(spec.flags ?? 0x0100, 2);
  h.writeUInt16BE(spec.qdcount ?? 1, 4);
  const name = spec.rawName
    ? Buffer.from(spec.rawName)
    : spec.labels
      ? rawLabels(spec.labels)
      : encodeName(spec.name ?? 'example.test');
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(spec.qtype, 0);
  tail.writeUInt16BE(spec.qclass ?? 1, 2);
  return Buffer.concat([h, name, tail]);
}

/** A name whose wire form is exactly `wireLength` bytes (1 for the root, else 3..255), of labels up to 63. */
export function nameOfWireLength(wireLength: number, fill = 'a'): string {
  if (wireLength === 1) return '';
  if (wireLength < 3 || wireLength > 255) throw new Error('wire length must be 1 or 3-255');
  const labels: string[] = [];
  let left = wireLength - 1; // root byte
  while (left > 0) {
    // each label costs 1 + n bytes; avoid leaving a remainder of 1 that no label fits
    let n = Math.min(63, left - 1);
    if (left - (n + 1) === 1) n -= 1;
    labels.push(fill.repeat(n));
    left -= n + 1;
  }
  return labels.join('.');
}

export interface ResponseSummary {
  id: number;
  rcode: number;
  answers: number;
  qtype: number;
}

export function readResponse(msg: Uint8Array): ResponseSummary {
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (b.length < 12) throw new Error('DNS message shorter than its header');
  const flags = b.readUInt16BE(2);
  let off = 12;
  while (off < b.length && b[off] !== 0) {
    if ((b[off]! & 0xc0) === 0xc0) {
      off += 1;
      break;
    }
    off += b[off]! + 1;
  }
  off += 1;
  const qtype = off + 2 <= b.length ? b.readUInt16BE(off) : 0;
  return { id: b.readUInt16BE(0), rcode: flags & 0xf, answers: b.readUInt16BE(6), qtype };
}
