// A small typed API over the addon: load the classifier once (its maps shared by
// every attachment), configure it live, attach a copy per interface and direction,
// read counters, and stream trace events.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAddon, type NativeAddon, type NativeBpfObject, type TcDirection } from './addon.js';
import {
  type ClassifierConfig,
  type Counters,
  type InstanceConfig,
  type Prefix,
  type SerializeViaName,
  type TraceEvent,
  MAX_SLOTS,
  addCounters,
  decodeConfig,
  decodeEvent,
  encodeConfig,
  encodeInstance,
  encodePrefixKey,
  sumPerCpuCounters,
  u32Key,
  zeroCounters,
} from './layout.js';

/** Maps every attached copy shares; "instance" stays private to each copy. */
export const SHARED_MAPS = ['config', 'ports', 'prefixes', 'counters', 'flows', 'recent', 'events', 'trace_budget'] as const;
type SharedMap = (typeof SHARED_MAPS)[number];

export const PROGRAM_NAME = 'dnspacer_classify';

export function bpfObjectPath(name = 'dnspacer.bpf.o'): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '..', '..', 'bpf', name);
}

export interface LoadOptions {
  objectPath?: string;
  /** bpffs directory to pin the shared maps in, so a restarted agent keeps counters
   * and flows; maps already pinned there are reused. Omit to pin nothing. */
  pinDir?: string;
  log?: (level: 'warn' | 'info' | 'debug', message: string) => void;
}

export interface AttachOptions {
  ifname: string;
  direction: TcDirection;
  netns?: string;
  /** counters slot, 1..4095; allocated when omitted */
  slot?: number;
  serializeVia?: SerializeViaName;
  /** IFB ifindex for bpf_redirect serialization */
  redirectIfindex?: number;
  handle?: number;
  priority?: number;
}

export interface Attachment {
  ifname: string;
  direction: TcDirection;
  netns?: string;
  slot: number;
  handle: number;
  priority: number;
  progId: number;
  /** true when this attach created clsact on the interface */
  createdHook: boolean;
}

export const DEFAULT_HANDLE = 0xd45;
export const DEFAULT_PRIORITY = 0xd45;

export class Classifier {
  private readonly copies = new Map<Attachment, { close(): void }>();
  private readonly usedSlots = new Set<number>();
  private closed = false;

  private constructor(
    private readonly addon: NativeAddon,
    private readonly objectPath: string,
    private readonly main: NativeBpfObject,
    private readonly shared: Record<SharedMap, number>,
    private readonly pinnedFds: number[],
    readonly programFd: number,
  ) {}

  static load(opts: LoadOptions = {}): Classifier {
    const addon = loadAddon();
    if (opts.log) addon.setLogger(opts.log);
    const objectPath = opts.objectPath ?? bpfObjectPath();
    const reuseMaps: Record<string, number> = {};
    const pinnedFds: number[] = [];
    if (opts.pinDir) {
      for (const name of SHARED_MAPS) {
        const pin = path.join(opts.pinDir, name);
        if (fs.existsSync(pin)) {
          const fd = addon.objGet(pin);
          pinnedFds.push(fd);
          reuseMaps[name] = fd;
        }
      }
    }
    let main: NativeBpfObject;
    try {
      main = addon.openObject(objectPath, { reuseMaps });
    } catch (e) {
      pinnedFds.forEach((fd) => addon.closeFd(fd));
      throw e;
    }
    const maps = Object.fromEntries(main.maps().map((m) => [m.name, m.fd]));
    const shared = {} as Record<SharedMap, number>;
    for (const name of SHARED_MAPS) {
      const fd = maps[name];
      if (fd === undefined) throw new Error(`${objectPath} has no map "${name}"; rebuild bpf/`);
      shared[name] = fd;
    }
    if (opts.pinDir) {
      fs.mkdirSync(opts.pinDir, { recursive: true });
      for (const name of SHARED_MAPS) {
        if (reuseMaps[name] === undefined) addon.objPin(shared[name], path.join(opts.pinDir, name));
      }
    }
    const prog = main.programs().find((p) => p.name === PROGRAM_NAME);
    if (!prog) throw new Error(`${objectPath} has no program ${PROGRAM_NAME}`);
    return new Classifier(addon, objectPath, main, shared, pinnedFds, prog.fd);
  }

  /** The map fds, for tests and the metrics exporter. */
  mapFd(name: SharedMap): number {
    return this.shared[name];
  }

  readConfig(): ClassifierConfig | null {
    const v = this.addon.mapLookup(this.shared.config, u32Key(0));
    return v ? decodeConfig(v) : null;
  }

  /** Live: the next packet sees the new config. Ports and prefixes are replaced as
   * sets, adding the new entries before removing the old ones so no query slips by. */
  configure(cfg: ClassifierConfig, ports?: number[], prefixes?: Prefix[]): void {
    if (ports) this.setPorts(ports);
    if (prefixes) this.setPrefixes(prefixes);
    this.addon.mapUpdate(this.shared.config, u32Key(0), encodeConfig(cfg));
  }

  setPorts(ports: number[]): void {
    const want = new Set(ports);
    for (const p of want) this.addon.mapUpdate(this.shared.ports, u32Key(p), Buffer.from([1]));
    // An ARRAY has every key; the first time (maps may be pinned by an earlier run)
    // scan them all for set entries, afterwards clear only what we set ourselves.
    const candidates = this.portsSet ?? Array.from({ length: 65536 }, (_, p) => p);
    for (const p of candidates) {
      if (want.has(p)) continue;
      const v = this.portsSet ? Buffer.from([1]) : this.addon.mapLookup(this.shared.ports, u32Key(p));
      if (v && v[0]) this.addon.mapUpdate(this.shared.ports, u32Key(p), Buffer.from([0]));
    }
    this.portsSet = [...want];
  }

  private portsSet: number[] | undefined;

  setPrefixes(prefixes: Prefix[]): void {
    const want = new Map(prefixes.map((p) => [encodePrefixKey(p).toString('hex'), encodePrefixKey(p)]));
    for (const key of want.values()) this.addon.mapUpdate(this.shared.prefixes, key, Buffer.from([1]));
    for (const key of this.addon.mapKeys(this.shared.prefixes)) {
      if (!want.has(key.toString('hex'))) this.addon.mapDelete(this.shared.prefixes, key);
    }
  }

  /** Loads a private copy of the program bound to the shared maps, with its own
   * instance entry (slot, direction, serialize path), for tc to hold. */
  loadCopy(inst: InstanceConfig): { progFd: number; progId: number; close(): void } {
    this.check();
    const copy = this.addon.openObject(this.objectPath, { reuseMaps: this.shared });
    try {
      const instanceFd = copy.maps().find((m) => m.name === 'instance')!.fd;
      this.addon.mapUpdate(instanceFd, u32Key(0), encodeInstance(inst));
      const prog = copy.programs().find((p) => p.name === PROGRAM_NAME)!;
      this.usedSlots.add(inst.slot);
      return { progFd: prog.fd, progId: prog.id, close: () => copy.close() };
    } catch (e) {
      copy.close();
      throw e;
    }
  }

  /** A counters slot no attachment of this process uses yet. */
  allocateSlot(): number {
    const s = this.nextSlot();
    this.usedSlots.add(s);
    return s;
  }

  releaseSlot(slot: number): void {
    this.usedSlots.delete(slot);
  }

  /** Attach a copy of the classifier that counts into its own slot. */
  attach(opts: AttachOptions): Attachment {
    this.check();
    const slot = opts.slot ?? this.nextSlot();
    if (!Number.isInteger(slot) || slot < 1 || slot >= MAX_SLOTS) throw new Error(`slot must be 1-${MAX_SLOTS - 1}, got ${slot}`);
    const target = { ifname: opts.ifname, direction: opts.direction, ...(opts.netns ? { netns: opts.netns } : {}) };
    // Resolve first so a missing interface fails before anything is loaded or created.
    this.addon.ifNameToIndex(opts.ifname, opts.netns);
    const copy = this.loadCopy({
      slot,
      ingress: opts.direction === 'ingress',
      redirectIfindex: opts.redirectIfindex ?? 0,
      serializeVia: opts.serializeVia ?? 'redirect',
    });
    try {
      const { created } = this.addon.tcHookCreate(target);
      let result;
      try {
        result = this.addon.tcAttach({
          ...target,
          progFd: copy.progFd,
          handle: opts.handle ?? DEFAULT_HANDLE,
          priority: opts.priority ?? DEFAULT_PRIORITY,
          replace: true,
        });
      } catch (e) {
        if (created) this.addon.tcHookDestroy({ ...target, direction: 'both' });
        throw e;
      }
      const att: Attachment = {
        ifname: opts.ifname,
        direction: opts.direction,
        ...(opts.netns ? { netns: opts.netns } : {}),
        slot,
        handle: result.handle,
        priority: result.priority,
        progId: result.progId,
        createdHook: created,
      };
      this.copies.set(att, copy);
      return att;
    } catch (e) {
      copy.close();
      this.usedSlots.delete(slot);
      throw e;
    }
  }

  /** Remove the filter; remove clsact too when this attach created it. A filter
   * already gone (interface deleted) is not an error. */
  detach(att: Attachment, opts: { keepHook?: boolean } = {}): void {
    const target = { ifname: att.ifname, direction: att.direction, ...(att.netns ? { netns: att.netns } : {}) };
    try {
      const current = this.addon.tcQuery({ ...target, handle: att.handle, priority: att.priority });
      if (current && current.progId === att.progId) {
        this.addon.tcDetach({ ...target, handle: att.handle, priority: att.priority });
      }
      if (att.createdHook && !opts.keepHook) this.addon.tcHookDestroy({ ...target, direction: 'both' });
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENODEV' && (e as { code?: string }).code !== 'ENOENT') throw e;
    } finally {
      this.copies.get(att)?.close();
      this.copies.delete(att);
      this.usedSlots.delete(att.slot);
    }
  }

  attachments(): Attachment[] {
    return [...this.copies.keys()];
  }

  counters(slot?: number): Counters {
    if (slot !== undefined) return this.slotCounters(slot);
    let total = zeroCounters();
    for (const s of new Set([0, ...this.usedSlots])) total = addCounters(total, this.slotCounters(s));
    return total;
  }

  private slotCounters(slot: number): Counters {
    const v = this.addon.mapLookup(this.shared.counters, u32Key(slot));
    return v ? sumPerCpuCounters(v) : zeroCounters();
  }

  /** Racing-pair events as they arrive; ends when the loop is left or close() runs. */
  trace(): AsyncIterableIterator<TraceEvent> {
    this.check();
    const queue: TraceEvent[] = [];
    let wake: (() => void) | null = null;
    let done = false;
    const ring = this.addon.ringBufferOpen(this.shared.events, (record) => {
      queue.push(decodeEvent(record));
      wake?.();
    });
    this.traceClosers.add(finish);
    const self = this;
    function finish(): void {
      if (done) return;
      done = true;
      ring.close();
      self.traceClosers.delete(finish);
      wake?.();
    }
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next(): Promise<IteratorResult<TraceEvent>> {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = null;
        const value = queue.shift();
        if (value) return { value, done: false };
        return { value: undefined, done: true };
      },
      async return(): Promise<IteratorResult<TraceEvent>> {
        finish();
        return { value: undefined, done: true };
      },
    };
  }

  private readonly traceClosers = new Set<() => void>();

  /** Test run of the main copy (slot 0, instance zeroed unless set with setInstance). */
  testRun(...args: Parameters<NativeAddon['testRun']> extends [number, ...infer R] ? R : never) {
    return this.addon.testRun(this.programFd, ...args);
  }

  setInstance(inst: InstanceConfig): void {
    const fd = this.main.maps().find((m) => m.name === 'instance')!.fd;
    this.addon.mapUpdate(fd, u32Key(0), encodeInstance(inst));
  }

  /** Close every fd. Attached filters stay in the kernel unless detached first. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const f of [...this.traceClosers]) f();
    for (const copy of this.copies.values()) copy.close();
    this.copies.clear();
    this.main.close();
    this.pinnedFds.forEach((fd) => this.addon.closeFd(fd));
  }

  private nextSlot(): number {
    for (let s = 1; s < MAX_SLOTS; s++) if (!this.usedSlots.has(s)) return s;
    throw new Error(`all ${MAX_SLOTS - 1} counter slots are in use`);
  }

  private check(): void {
    if (this.closed) throw new Error('the classifier is closed');
  }
}

export function defaultClassifierConfig(overrides: Partial<ClassifierConfig> = {}): ClassifierConfig {
  return {
    enabled: true,
    policy: 'pairs',
    action: 'pace',
    matchPrefixes: false,
    delayNs: 1_000_000n,
    windowNs: 2_000_000n,
    gapNs: 100_000n,
    markValue: 0x1000,
    markMask: 0x1000,
    tracePerSec: 100,
    udpSampleShift: 4,
    ...overrides,
  };
}
