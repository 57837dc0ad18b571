// Typed view of the N-API addon in native/ (native/build/Release/dnspacer_native.node).
// Every call that fails throws a DnspacerNativeError: a plain Error with `errno`
// (positive, e.g. 2 for ENOENT) and `syscall`-like `op`, and a message a user
// understands ("interface veth9 does not exist", "loading BPF needs CAP_BPF or root").
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface DnspacerNativeError extends Error {
  errno: number;
  code: string; // 'ENOENT', 'EPERM', ...
  op: string; // 'bpf_object__load', 'bpf_tc_attach', ...
}

export type TcDirection = 'ingress' | 'egress';

/** Where a call runs: the calling process's own netns, or one given by path
 * (e.g. /var/run/netns/x or /proc/<pid>/ns/net). The addon enters it on the
 * calling thread and always returns to the original before it returns. */
export interface NetnsOption {
  netns?: string;
}

export interface TcHookTarget extends NetnsOption {
  /** interface name (resolved inside netns) or ifindex */
  ifname?: string;
  ifindex?: number;
  direction: TcDirection;
}

export interface TcFilterId {
  handle: number;
  priority: number;
}

export interface TcAttachOptions extends TcHookTarget, Partial<TcFilterId> {
  progFd: number;
  /** BPF_TC_F_REPLACE: swap the program on an existing handle/priority atomically */
  replace?: boolean;
}

export interface TcQueryResult extends TcFilterId {
  progId: number;
}

export interface MapInfo {
  name: string;
  fd: number;
  type: number; // enum bpf_map_type
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** true for PERCPU_ARRAY / PERCPU_HASH / LRU_PERCPU_HASH: lookups return nCpus * roundUp8(valueSize) bytes */
  perCpu: boolean;
}

export interface ProgramInfo {
  name: string;
  section: string;
  fd: number;
  id: number;
}

export interface TestRunInput {
  data: Uint8Array;
  /** __sk_buff fields to pass in; only these are supported by the kernel for SCHED_CLS */
  ctx?: { mark?: number; tstamp?: bigint; ifindex?: number; priority?: number };
  repeat?: number;
  /** size of the data_out buffer; defaults to data.length + 256 */
  dataOutSize?: number;
}

export interface TestRunOutput {
  retval: number; // signed
  durationNs: number; // average per repeat, as the kernel reports it
  data: Buffer;
  ctx: { mark: number; tstamp: bigint; ifindex: number; priority: number };
}

export interface NativeBpfObject {
  readonly path: string;
  maps(): MapInfo[];
  programs(): ProgramInfo[];
  /** Close every fd the object holds. Idempotent. Programs stay attached where tc holds them. */
  close(): void;
}

export interface OpenObjectOptions {
  /** map name -> fd of an existing map to share instead of creating a new one */
  reuseMaps?: Record<string, number>;
  /** map name -> bytes to load into it at creation (e.g. ".rodata") */
  initialValues?: Record<string, Uint8Array>;
  /** maps not to pin/create; unused here but reserved */
}

export interface NativeRingBuffer {
  /** Stop polling and free the ring buffer. Idempotent. */
  close(): void;
}

export interface RootQdiscStats {
  kind: string;
  qlen: number;
  backlog: number;
  drops: number;
  requeues: number;
  overlimits: number;
}

export interface NativeAddon {
  /** open + load an ELF BPF object. */
  openObject(file: string, opts?: OpenObjectOptions): NativeBpfObject;

  mapLookup(mapFd: number, key: Uint8Array): Buffer | null;
  mapUpdate(mapFd: number, key: Uint8Array, value: Uint8Array, flags?: number): void; // flags: 0 ANY, 1 NOEXIST, 2 EXIST
  mapDelete(mapFd: number, key: Uint8Array): boolean; // false if absent
  /** all keys, in iteration order */
  mapKeys(mapFd: number): Buffer[];

  /** number of possible CPUs, as libbpf_num_possible_cpus() */
  numPossibleCpus(): number;

  tcHookCreate(target: TcHookTarget): { created: boolean }; // false when clsact already existed
  /** direction 'both' removes clsact entirely; one direction only flushes its filters */
  tcHookDestroy(target: Omit<TcHookTarget, 'direction'> & { direction: TcDirection | 'both' }): void;
  tcAttach(opts: TcAttachOptions): TcQueryResult;
  tcDetach(target: TcHookTarget & TcFilterId): void;
  /** null when no filter at that handle/priority */
  tcQuery(target: TcHookTarget & TcFilterId): TcQueryResult | null;

  /** resolve a name inside a netns; throws ENODEV "interface X does not exist" */
  ifNameToIndex(ifname: string, netns?: string): number;

  /** The id the namespace `netns` (default: ours) gives the network namespace at `path`,
   * as veths name their peer's namespace (IFLA_LINK_NETNSID); -1 when it gave none. */
  netnsId(path: string, netns?: string): number;
  /** /proc/net/<name> as seen from inside netns ('' = ours), e.g. 'stat/nf_conntrack' */
  readProcNet(netns: string, name: string): string;
  /** the root qdisc's statistics (RTM_GETQDISC), null when the interface has none */
  rootQdiscStats(ifname: string, netns?: string): RootQdiscStats | null;

  testRun(progFd: number, input: TestRunInput): TestRunOutput;

  /** epoll fd of the ring buffer under uv_poll on the main loop; cb gets one Buffer per record */
  ringBufferOpen(mapFd: number, onRecord: (record: Buffer) => void): NativeRingBuffer;

  /** libbpf_set_print: level is 'warn' | 'info' | 'debug'; null restores silence */
  setLogger(cb: ((level: 'warn' | 'info' | 'debug', message: string) => void) | null): void;

  /** pin/unpin an fd (program or map) on bpffs; get an fd from a pinned path */
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  /** close an fd obtained by objGet */
  closeFd(fd: number): void;
  /** program id for an fd */
  progIdFromFd(fd: number): number;
}

let cached: NativeAddon | undefined;

export function addonPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src/datapath or dist/datapath -> repo root
  return path.resolve(here, '..', '..', 'native', 'build', 'Release', 'dnspacer_native.node');
}

export function loadAddon(): NativeAddon {
  if (!cached) {
    const require = createRequire(import.meta.url);
    cached = require(addonPath()) as NativeAddon;
  }
  return cached;
}
