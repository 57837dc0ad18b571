// Agent configuration: defaults < file (YAML or JSON) < DNSPACER_* environment < flags.
// Pure: parsing and validation only, so it tests without root. Every invalid value
// raises a ConfigError whose one-line message names the field and what is accepted.
import { parse as parseYaml } from 'yaml';

export const MODES = ['auto', 'serialize', 'edt', 'bpf-netem', 'iptables-netem', 'observe'] as const;
export const PLACEMENTS = ['auto', 'host', 'pod', 'device'] as const;
export const POLICIES = ['aaaa', 'pairs'] as const;

export type Mode = (typeof MODES)[number];
export type ConcreteMode = Exclude<Mode, 'auto'>;
export type Placement = (typeof PLACEMENTS)[number];
export type ConcretePlacement = Exclude<Placement, 'auto'>;
export type Policy = (typeof POLICIES)[number];

export interface Cidr {
  family: 4 | 6;
  /** 16 bytes; IPv4 as ::ffff:a.b.c.d */
  addr: Uint8Array;
  /** prefix length within the family (0-32 or 0-128) */
  prefixLen: number;
  text: string;
}

export interface Mark {
  value: number;
  mask: number;
}

export interface AgentConfig {
  dnsPorts: number[];
  dnsCidrs: Cidr[];
  policy: Policy;
  delayNs: number;
  windowNs: number;
  gapNs: number;
  mark: Mark;
  mode: Mode;
  placement: Placement;
  /** interface globs; empty = auto-detect the CNI's veth prefix */
  interfaces: string[];
  metricsAddress: { host: string; port: number };
  traceRate: number;
  stateFile: string;
  /** bpffs folder of the pinned maps: counters, flows and config outlive a restart */
  pinDir: string;
  keepOnExit: boolean;
  kubeconfig?: string;
  /** cluster DNS Services as namespace/name; their ClusterIPs and ports feed the classifier */
  dnsServices: string[];
  /** a label selector finding more DNS Services (e.g. k8s-app=kube-dns), or '' */
  dnsServiceSelector: string;
  /** this node, for the pod watch (the DaemonSet sets it from spec.nodeName) */
  nodeName: string;
  /** where the agent's own ConfigMap lives, as namespace/name */
  configMap: string;
  annotateNode: boolean;
  configFile?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export class ConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`invalid ${field}: ${message}`);
    this.name = 'ConfigError';
  }
}

/* Why 0x1000/0x1000: kube-proxy owns 0x4000 (masquerade) and 0x8000 (drop); Calico takes its
 * bits from 0xffff0000 by default; Cilium's magic values live in 0x0f00 and its identities in
 * the upper 16 bits; AWS VPC CNI uses 0x80, Istio 0x539, Weave 0x20000/0x40000. Bit 12 is
 * used by none of them. Cilium with IPsec puts its key index in 0xf000: override it there. */
export const DEFAULT_MARK: Mark = { value: 0x1000, mask: 0x1000 };

export const DEFAULTS: AgentConfig = {
  dnsPorts: [53],
  dnsCidrs: [],
  policy: 'pairs',
  delayNs: 1_000_000,
  windowNs: 2_000_000,
  gapNs: 100_000,
  mark: DEFAULT_MARK,
  mode: 'auto',
  placement: 'auto',
  interfaces: [],
  metricsAddress: { host: '127.0.0.1', port: 9741 },
  traceRate: 100,
  stateFile: '/run/dnspacer/state.json',
  pinDir: '/sys/fs/bpf/dnspacer',
  keepOnExit: false,
  dnsServices: ['kube-system/kube-dns'],
  dnsServiceSelector: '',
  nodeName: '',
  configMap: 'dnspacer/dnspacer',
  annotateNode: false,
  logLevel: 'info',
};

/** Raw values as they come from a flag, a variable or a file: strings, numbers, lists. */
export type RawConfig = Partial<Record<keyof typeof FIELDS, unknown>>;

type Parser<T> = (raw: unknown, field: string) => T;

const str = (raw: unknown, field: string): string => {
  if (typeof raw === 'string') return raw.trim();
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
  throw new ConfigError(field, `expected a string, got ${JSON.stringify(raw)}`);
};

const list = (raw: unknown, field: string): string[] => {
  if (Array.isArray(raw)) return raw.map((x) => str(x, field)).filter((s) => s !== '');
  return str(raw, field)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
};

function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return (raw, field) => {
    const s = str(raw, field);
    if (!(values as readonly string[]).includes(s)) {
      throw new ConfigError(field, `"${s}" is not one of ${values.join(', ')}`);
    }
    return s as T;
  };
}

export function parsePort(raw: unknown, field: string): number {
  const s = str(raw, field);
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) {
    throw new ConfigError(field, `"${s}" is not a port number (1-65535)`);
  }
  return Number(s);
}

const UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9 };

/** "100us", "1.5ms", "0" -> nanoseconds */
export function parseDuration(raw: unknown, field: string, min: number, max: number): number {
  const s = str(raw, field);
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s)?$/.exec(s);
  const accepted = `a duration like 100us, 1.5ms or 0 (units ns, us, ms, s) from ${formatDuration(min)} to ${formatDuration(max)}`;
  if (!m) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  const value = Number(m[1]);
  const unit = m[2];
  if (unit === undefined && value !== 0) throw new ConfigError(field, `"${s}" needs a unit; expected ${accepted}`);
  const ns = Math.round(value * (unit ? UNITS[unit]! : 1));
  if (ns < min || ns > max) throw new ConfigError(field, `"${s}" is out of range; expected ${accepted}`);
  return ns;
}

export function formatDuration(ns: number): string {
  if (ns === 0) return '0';
  if (ns % 1e9 === 0) return `${ns / 1e9}s`;
  if (ns % 1e6 === 0) return `${ns / 1e6}ms`;
  if (ns % 1e3 === 0) return `${ns / 1e3}us`;
  return `${ns}ns`;
}

function parseIpv4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    out[12 + i] = Number(p);
  }
  return out;
}

function parseIpv6(s: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIpv4(p);
        if (!v4) return null;
        out.push((v4[12]! << 8) | v4[13]!, (v4[14]! << 8) | v4[15]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** An address without a prefix means a single host (/32 or /128). */
export function parseCidr(raw: unknown, field: string): Cidr {
  const s = str(raw, field);
  const [addrText, lenText, extra] = s.split('/');
  const accepted = 'an IPv4 or IPv6 address or CIDR like 198.18.0.10/32 or 2001:db8::/64';
  if (extra !== undefined || addrText === undefined) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  const v4 = parseIpv4(addrText);
  const addr = v4 ?? parseIpv6(addrText);
  if (!addr) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  const family = v4 ? 4 : 6;
  const maxLen = family === 4 ? 32 : 128;
  let prefixLen = maxLen;
  if (lenText !== undefined) {
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLen) {
      throw new ConfigError(field, `"${s}" has a prefix length outside 0-${maxLen}`);
    }
    prefixLen = Number(lenText);
  }
  return { family, addr, prefixLen, text: s };
}

/** "0x1000/0x1000" or "4096" (mask = value) */
export function parseMark(raw: unknown, field: string): Mark {
  const s = str(raw, field);
  const accepted = 'a mark like 0x1000/0x1000 (value/mask, 32-bit, value within mask, nonzero)';
  const num = (t: string): number | null => {
    if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(t)) return null;
    const n = Number(t);
    return n <= 0xffffffff ? n : null;
  };
  const [v, m, extra] = s.split('/');
  const value = v === undefined ? null : num(v);
  const mask = m === undefined ? value : num(m);
  if (extra !== undefined || value === null || mask === null) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  if (mask === 0 || value === 0 || (value & ~mask) >>> 0 !== 0) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  return { value, mask };
}

function parseAddress(raw: unknown, field: string): { host: string; port: number } {
  const s = str(raw, field);
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d+)$/.exec(s);
  const accepted = 'host:port like 127.0.0.1:9741 or [::1]:9741 or 0.0.0.0:9741';
  if (!m) throw new ConfigError(field, `"${s}" is not ${accepted}`);
  const host = (m[1] ?? m[2])!;
  if (m[1] ? !parseIpv6(host) : !parseIpv4(host) && !/^[a-zA-Z0-9.-]+$/.test(host)) {
    throw new ConfigError(field, `"${s}" is not ${accepted}`);
  }
  return { host, port: parsePort(m[3], field) };
}

function parseBool(raw: unknown, field: string): boolean {
  if (typeof raw === 'boolean') return raw;
  const s = str(raw, field).toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  throw new ConfigError(field, `"${s}" is not a boolean (true/false)`);
}

function parseInteger(min: number, max: number): Parser<number> {
  return (raw, field) => {
    const s = str(raw, field);
    if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) {
      throw new ConfigError(field, `"${s}" is not an integer from ${min} to ${max}`);
    }
    return Number(s);
  };
}

const DNS_LABEL = '[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?';
const DNS_SUBDOMAIN = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);
const LABEL_SELECTOR = /^[A-Za-z0-9./_-]+(=|==|!=)[A-Za-z0-9._-]*(,[A-Za-z0-9./_-]+(=|==|!=)[A-Za-z0-9._-]*)*$/;

function namespacedName(raw: unknown, field: string): string {
  const s = str(raw, field);
  const [ns, name, extra] = s.split('/');
  if (extra !== undefined || !ns || !name || !new RegExp(`^${DNS_LABEL}$`).test(ns) || !DNS_SUBDOMAIN.test(name)) {
    throw new ConfigError(field, `"${s}" is not namespace/name like kube-system/kube-dns`);
  }
  return s;
}

const INTERFACE_GLOB = /^[A-Za-z0-9_.:@*?[\]!-]{1,15}$/;

/** Field name (as in flags without dashes, camelCase in files) -> parser and target. */
const FIELDS = {
  dnsPort: (c: AgentConfig, raw: unknown) => {
    const ports = list(raw, 'dnsPort').map((p) => parsePort(p, 'dnsPort'));
    if (ports.length === 0) throw new ConfigError('dnsPort', 'expected at least one port (1-65535)');
    c.dnsPorts = [...new Set(ports)];
  },
  dnsCidr: (c: AgentConfig, raw: unknown) => {
    c.dnsCidrs = list(raw, 'dnsCidr').map((x) => parseCidr(x, 'dnsCidr'));
  },
  policy: (c: AgentConfig, raw: unknown) => {
    c.policy = oneOf(POLICIES)(raw, 'policy');
  },
  delay: (c: AgentConfig, raw: unknown) => {
    c.delayNs = parseDuration(raw, 'delay', 0, 1e9);
  },
  window: (c: AgentConfig, raw: unknown) => {
    c.windowNs = parseDuration(raw, 'window', 1e3, 1e9);
  },
  gap: (c: AgentConfig, raw: unknown) => {
    c.gapNs = parseDuration(raw, 'gap', 1e3, 100e6);
  },
  mark: (c: AgentConfig, raw: unknown) => {
    c.mark = parseMark(raw, 'mark');
  },
  mode: (c: AgentConfig, raw: unknown) => {
    c.mode = oneOf(MODES)(raw, 'mode');
  },
  placement: (c: AgentConfig, raw: unknown) => {
    c.placement = oneOf(PLACEMENTS)(raw, 'placement');
  },
  interfaces: (c: AgentConfig, raw: unknown) => {
    const globs = list(raw, 'interfaces');
    for (const g of globs) {
      if (!INTERFACE_GLOB.test(g)) {
        throw new ConfigError('interfaces', `"${g}" is not an interface name or glob (1-15 characters, * ? [..] allowed, no / or spaces)`);
      }
    }
    c.interfaces = globs;
  },
  metricsAddress: (c: AgentConfig, raw: unknown) => {
    c.metricsAddress = parseAddress(raw, 'metricsAddress');
  },
  traceRate: (c: AgentConfig, raw: unknown) => {
    c.traceRate = parseInteger(0, 100000)(raw, 'traceRate');
  },
  stateFile: (c: AgentConfig, raw: unknown) => {
    const s = str(raw, 'stateFile');
    if (!s.startsWith('/')) throw new ConfigError('stateFile', `"${s}" is not an absolute path`);
    c.stateFile = s;
  },
  pinDir: (c: AgentConfig, raw: unknown) => {
    const s = str(raw, 'pinDir');
    if (!s.startsWith('/sys/fs/bpf/') || s.includes('..')) throw new ConfigError('pinDir', `"${s}" is not a folder under /sys/fs/bpf/`);
    c.pinDir = s;
  },
  keepOnExit: (c: AgentConfig, raw: unknown) => {
    c.keepOnExit = parseBool(raw, 'keepOnExit');
  },
  kubeconfig: (c: AgentConfig, raw: unknown) => {
    c.kubeconfig = str(raw, 'kubeconfig') || undefined;
  },
  dnsServices: (c: AgentConfig, raw: unknown) => {
    c.dnsServices = list(raw, 'dnsServices').map((x) => namespacedName(x, 'dnsServices'));
  },
  dnsServiceSelector: (c: AgentConfig, raw: unknown) => {
    const s = str(raw, 'dnsServiceSelector');
    if (s && !LABEL_SELECTOR.test(s)) throw new ConfigError('dnsServiceSelector', `"${s}" is not a label selector like k8s-app=kube-dns (key=value, comma-separated)`);
    c.dnsServiceSelector = s;
  },
  nodeName: (c: AgentConfig, raw: unknown) => {
    const s = str(raw, 'nodeName');
    if (s && !DNS_SUBDOMAIN.test(s)) throw new ConfigError('nodeName', `"${s}" is not a Kubernetes node name (lower-case DNS subdomain)`);
    c.nodeName = s;
  },
  configMap: (c: AgentConfig, raw: unknown) => {
    c.configMap = namespacedName(raw, 'configMap');
  },
  annotateNode: (c: AgentConfig, raw: unknown) => {
    c.annotateNode = parseBool(raw, 'annotateNode');
  },
  logLevel: (c: AgentConfig, raw: unknown) => {
    c.logLevel = oneOf(['debug', 'info', 'warn', 'error'] as const)(raw, 'logLevel');
  },
} as const;

export type FieldName = keyof typeof FIELDS;
export const FIELD_NAMES = Object.keys(FIELDS) as FieldName[];

/** --dns-port -> dnsPort */
export function flagToField(flag: string): FieldName | undefined {
  const camel = flag.replace(/^--/, '').replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
  return (FIELD_NAMES as string[]).includes(camel) ? (camel as FieldName) : undefined;
}

export function fieldToFlag(field: FieldName): string {
  return '--' + field.replace(/[A-Z]/g, (ch) => '-' + ch.toLowerCase());
}

/** DNSPACER_DNS_PORT -> dnsPort */
export function envToField(name: string): FieldName | undefined {
  if (!name.startsWith('DNSPACER_')) return undefined;
  const camel = name
    .slice('DNSPACER_'.length)
    .toLowerCase()
    .replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase());
  return (FIELD_NAMES as string[]).includes(camel) ? (camel as FieldName) : undefined;
}

export function fieldToEnv(field: FieldName): string {
  return 'DNSPACER_' + field.replace(/[A-Z]/g, (ch) => '_' + ch).toUpperCase();
}

/** Parse a config file's text (YAML is a superset of JSON). Unknown keys are errors. */
export function parseConfigText(text: string, source: string): RawConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError('configFile', `${source} is not valid YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError('configFile', `${source} must hold a mapping of settings`);
  }
  const raw: RawConfig = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!(FIELD_NAMES as string[]).includes(key)) {
      throw new ConfigError(key, `unknown setting in ${source}; accepted: ${FIELD_NAMES.join(', ')}`);
    }
    raw[key as FieldName] = value;
  }
  return raw;
}

export function rawFromEnv(env: NodeJS.ProcessEnv): RawConfig {
  const raw: RawConfig = {};
  for (const [name, value] of Object.entries(env)) {
    const field = envToField(name);
    if (field && value !== undefined) raw[field] = value;
  }
  return raw;
}

/** Layers are applied in order; later layers win. Cross-field rules are checked at the end. */
export function buildConfig(...layers: RawConfig[]): AgentConfig {
  const c: AgentConfig = structuredClone(DEFAULTS);
  for (const layer of layers) {
    for (const field of FIELD_NAMES) {
      const value = layer[field];
      if (value !== undefined) FIELDS[field](c, value);
    }
  }
  if (c.gapNs > c.windowNs) {
    throw new ConfigError('gap', `${formatDuration(c.gapNs)} is larger than window ${formatDuration(c.windowNs)}; gap must be ≤ window`);
  }
  return c;
}

/** Settings that a live reload may change by map update alone. */
export const LIVE_FIELDS: readonly (keyof AgentConfig)[] = [
  'dnsPorts',
  'dnsCidrs',
  'policy',
  'delayNs',
  'windowNs',
  'gapNs',
  'mark',
  'traceRate',
  'logLevel',
  'keepOnExit',
  'dnsServices',
  'dnsServiceSelector',
  'annotateNode',
];

/** Names of the settings that differ and need a restart to take effect. */
export function restartNeeded(a: AgentConfig, b: AgentConfig): string[] {
  const out: string[] = [];
  for (const key of Object.keys(a) as (keyof AgentConfig)[]) {
    if (LIVE_FIELDS.includes(key)) continue;
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) out.push(key);
  }
  return out;
}
