// Which mode and placement to run, from what the probe found. Pure.
//
// Order of preference for `auto`, from the lab's evidence (BENCHMARKS.md):
//   1. serialize at host placement: removes the race with no added delay and needs no
//      entry into pod namespaces (no hostPID, no SYS_ADMIN).
//   2. edt (pairs policy) at pod placement: delays only the second query of a racing pair.
//   3. edt at host placement: needs bpf_skb_set_tstamp(DELIVERY_MONO) and fq on the IFB.
//   4. bpf-netem at pod placement: kernels with BPF but no sch_fq.
//   5. iptables-netem at pod placement: no BPF at all (the anchors' recipe, IPv4 only).
//   6. observe at host placement: count and trace, change nothing.
import type { ConcreteMode, ConcretePlacement, Mode, Placement } from './config.js';

export interface Capability {
  ok: boolean;
  /** why not, naming the missing feature; absent when ok */
  reason?: string;
}

/** What this node's kernel and tools can do, as the probe measured it. */
export interface Capabilities {
  bpf: Capability;
  clsact: Capability;
  clsBpf: Capability;
  fq: Capability;
  prio: Capability;
  netem: Capability;
  fw: Capability;
  ifb: Capability;
  mirred: Capability;
  setTstamp: Capability;
  /** a direct-action bpf_redirect into the IFB delivers packets */
  serializeRedirect: Capability;
  /** cls_bpf (classify) + act_mirred into the IFB delivers packets */
  serializeMirred: Capability;
  /** u32 and string matches on either iptables backend */
  iptablesMatches: Capability;
}

export interface Environment {
  /** can enter other network namespaces (CAP_SYS_ADMIN and the host's /proc or /var/run/netns) */
  canEnterNetns: boolean;
  /** devices named for device placement */
  hasDevices: boolean;
}

export interface Choice {
  mode: ConcreteMode;
  placement: ConcretePlacement;
  /** serialize only: how packets reach the IFB */
  serializeVia?: 'redirect' | 'classify';
  /** why this choice, for logs and Events */
  reason: string;
  /** modes tried first and why they were passed over */
  passedOver: { mode: ConcreteMode; placement: ConcretePlacement; reason: string }[];
}

export class UnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedError';
  }
}

const ALLOWED: Record<ConcreteMode, ConcretePlacement[]> = {
  serialize: ['host'],
  edt: ['pod', 'host', 'device'],
  'bpf-netem': ['pod', 'device'],
  'iptables-netem': ['device', 'pod'],
  observe: ['host', 'pod', 'device'],
};

export function allowedPlacements(mode: ConcreteMode): readonly ConcretePlacement[] {
  return ALLOWED[mode];
}

function missing(caps: Capabilities, names: (keyof Capabilities)[]): string | undefined {
  for (const name of names) {
    const cap = caps[name];
    if (!cap.ok) return cap.reason ?? `${name} is unavailable`;
  }
  return undefined;
}

/** Why `mode` cannot run at `placement` here, or undefined when it can. */
export function whyNot(
  mode: ConcreteMode,
  placement: ConcretePlacement,
  caps: Capabilities,
  env: Environment,
): string | undefined {
  if (!ALLOWED[mode].includes(placement)) {
    return `mode ${mode} works only at placement ${ALLOWED[mode].join(' or ')}`;
  }
  if (placement === 'pod' && !env.canEnterNetns) {
    return 'pod placement needs CAP_SYS_ADMIN and the host PID namespace (or /var/run/netns) to enter pod network namespaces';
  }
  if (placement === 'device' && !env.hasDevices) {
    return 'device placement needs --interfaces naming the devices';
  }
  const bpfBase: (keyof Capabilities)[] = ['bpf', 'clsact', 'clsBpf'];
  switch (mode) {
    case 'observe':
      return missing(caps, bpfBase);
    case 'serialize': {
      const base = missing(caps, [...bpfBase, 'ifb']);
      if (base) return base;
      if (!caps.serializeRedirect.ok && !caps.serializeMirred.ok) {
        return `DNS cannot be sent through an IFB here: ${caps.serializeMirred.reason ?? caps.serializeRedirect.reason ?? 'neither redirect nor mirred delivered'}`;
      }
      return undefined;
    }
    case 'edt': {
      const base = missing(caps, [...bpfBase, 'fq']);
      if (base) return base;
      if (placement === 'host') {
        const host = missing(caps, ['setTstamp', 'ifb']);
        if (host) return `edt at host placement needs the departure time to survive into the IFB: ${host}`;
        if (!caps.serializeRedirect.ok && !caps.serializeMirred.ok) return 'edt at host placement needs a path into the IFB';
      }
      return undefined;
    }
    case 'bpf-netem':
      return missing(caps, [...bpfBase, 'prio', 'netem', 'fw']);
    case 'iptables-netem':
      return missing(caps, ['iptablesMatches', 'prio', 'netem', 'fw']);
  }
}

const AUTO_ORDER: { mode: ConcreteMode; placement: ConcretePlacement }[] = [
  { mode: 'serialize', placement: 'host' },
  { mode: 'edt', placement: 'pod' },
  { mode: 'edt', placement: 'host' },
  { mode: 'bpf-netem', placement: 'pod' },
  { mode: 'iptables-netem', placement: 'pod' },
  { mode: 'observe', placement: 'host' },
];

function serializeVia(caps: Capabilities): 'redirect' | 'classify' {
  // mirred is the one that works on every kernel measured; redirect saves a tc action.
  return caps.serializeRedirect.ok ? 'redirect' : 'classify';
}

function finish(mode: ConcreteMode, placement: ConcretePlacement, caps: Capabilities, reason: string, passedOver: Choice['passedOver']): Choice {
  const choice: Choice = { mode, placement, reason, passedOver };
  if (mode === 'serialize' || (mode === 'edt' && placement === 'host')) choice.serializeVia = serializeVia(caps);
  return choice;
}

/** Picks a mode and placement; throws UnsupportedError when a forced one cannot run. */
export function chooseMode(mode: Mode, placement: Placement, caps: Capabilities, env: Environment): Choice {
  if (mode !== 'auto') {
    const placements = placement === 'auto' ? ALLOWED[mode] : [placement];
    const passedOver: Choice['passedOver'] = [];
    for (const p of placements) {
      const why = whyNot(mode, p, caps, env);
      if (!why) return finish(mode, p, caps, `mode ${mode} was asked for`, passedOver);
      passedOver.push({ mode, placement: p, reason: why });
    }
    const first = passedOver[0]!;
    throw new UnsupportedError(
      placement === 'auto'
        ? `mode ${mode} cannot run here: ${passedOver.map((x) => `at ${x.placement}: ${x.reason}`).join('; ')}`
        : `mode ${mode} cannot run at placement ${first.placement}: ${first.reason}`,
    );
  }
  const passedOver: Choice['passedOver'] = [];
  for (const candidate of AUTO_ORDER) {
    if (placement !== 'auto' && candidate.placement !== placement) continue;
    const why = whyNot(candidate.mode, candidate.placement, caps, env);
    if (!why) {
      const reason = passedOver.length === 0 ? 'first choice' : `fell back: ${passedOver.map((x) => `${x.mode}@${x.placement}: ${x.reason}`).join('; ')}`;
      return finish(candidate.mode, candidate.placement, caps, reason, passedOver);
    }
    passedOver.push({ ...candidate, reason: why });
  }
  if (placement !== 'auto') {
    for (const m of ['edt', 'bpf-netem', 'iptables-netem', 'observe'] as const) {
      if (!ALLOWED[m].includes(placement) || passedOver.some((x) => x.mode === m)) continue;
      const why = whyNot(m, placement, caps, env);
      if (!why) return finish(m, placement, caps, `fell back at placement ${placement}`, passedOver);
      passedOver.push({ mode: m, placement, reason: why });
    }
  }
  throw new UnsupportedError(`no mode can run here: ${passedOver.map((x) => `${x.mode}@${x.placement}: ${x.reason}`).join('; ')}`);
}
