// Kubernetes awareness, only in-cluster or with --kubeconfig: the cluster DNS Services'
// addresses and ports for the classifier, the pods on this node, the agent's own
// ConfigMap, Events, and an optional Node annotation. Watches restart with backoff and
// list again on 410 Gone; while the API server is away the datapath keeps running
// exactly as it was: nothing here ever clears what was last learned.
import fs from 'node:fs';
import { CoreV1Api, KubeConfig, type KubernetesObject, ListWatch, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type AgentConfig, type Cidr, parseCidr } from './config.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 30_000;

export interface ServiceLike {
  metadata?: { name?: string; namespace?: string };
  spec?: { clusterIP?: string; clusterIPs?: string[]; ports?: { port: number; protocol?: string }[] };
}

export interface PodLike {
  metadata?: { name?: string; namespace?: string; deletionTimestamp?: unknown };
  spec?: { nodeName?: string; hostNetwork?: boolean };
  status?: { podIP?: string; podIPs?: { ip: string }[] };
}

export interface DnsTargets {
  cidrs: Cidr[];
  ports: number[];
}

export interface PodRef {
  namespace: string;
  name: string;
  ips: string[];
}

/** The classifier's destination filter from the DNS Services: every ClusterIP (IPv4 and
 * IPv6) as a host prefix, and every UDP port. Headless Services have no ClusterIP. Pure. */
export function dnsTargetsFrom(services: readonly ServiceLike[]): DnsTargets {
  const cidrs = new Map<string, Cidr>();
  const ports = new Set<number>();
  for (const s of services) {
    const ips = s.spec?.clusterIPs?.length ? s.spec.clusterIPs : s.spec?.clusterIP ? [s.spec.clusterIP] : [];
    for (const ip of ips) {
      if (!ip || ip === 'None') continue;
      const cidr = parseCidr(ip, 'dnsServices');
      cidrs.set(`${ip}/${cidr.prefixLen}`, cidr);
    }
    // the Service port's protocol defaults to TCP; the race is a UDP one
    for (const p of s.spec?.ports ?? []) if (p.protocol === 'UDP') ports.add(p.port);
  }
  return { cidrs: [...cidrs.values()], ports: [...ports].sort((a, b) => a - b) };
}

/** Pods on this node with their own network namespace (host-network pods have none). Pure. */
export function podsFrom(pods: readonly PodLike[]): PodRef[] {
  return pods
    .filter((p) => !p.spec?.hostNetwork && p.metadata?.name && p.metadata.namespace)
    .map((p) => ({
      namespace: p.metadata!.namespace!,
      name: p.metadata!.name!,
      ips: p.status?.podIPs?.length ? p.status.podIPs.map((x) => x.ip) : p.status?.podIP ? [p.status.podIP] : [],
    }));
}

/** In-cluster when the service account is mounted, else the given kubeconfig, else none. */
export function kubeConfigFor(config: Pick<AgentConfig, 'kubeconfig'>, env: NodeJS.ProcessEnv = process.env): KubeConfig | null {
  const kc = new KubeConfig();
  if (config.kubeconfig) {
    kc.loadFromFile(config.kubeconfig);
    return kc;
  }
  if (env.KUBERNETES_SERVICE_HOST && fs.existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
    return kc;
  }
  return null;
}

function splitName(namespaced: string): [string, string] {
  const [ns, name] = namespaced.split('/');
  return [ns!, name!];
}

export interface KubeHandlers {
  onDnsTargets(t: DnsTargets): void;
  onPods(pods: PodRef[]): void;
  onConfigText(text: string): void;
}

export type EventType = 'Normal' | 'Warning';

/** A list+watch that restarts with exponential backoff after an error and lists
 * again after 410 Gone (ListWatch does the latter itself). */
class ResilientWatch<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private backoff = BACKOFF_MIN_MS;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    readonly what: string,
    path: string,
    list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>,
    onChange: (objects: T[]) => void,
    private readonly log: Logger,
    selectors: { label?: string; field?: string } = {},
  ) {
    // backoff starts over only once the API server has answered a list
    const listed = async () => {
      const r = await list();
      this.backoff = BACKOFF_MIN_MS;
      return r;
    };
    this.lw = new ListWatch<T>(path, new Watch(kc), listed as never, false, selectors.label, selectors.field);
    const changed = () => onChange([...this.lw.list()]);
    this.lw.on('add', changed);
    this.lw.on('update', changed);
    this.lw.on('delete', changed);
    this.lw.on('error', (err?: unknown) => this.retry(err));
  }

  start(): void {
    this.stopped = false;
    this.lw.start().catch((err: unknown) => this.retry(err));
  }

  private retry(err: unknown): void {
    if (this.stopped) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.log.warn({ watch: this.what, err: (err as Error)?.message ?? String(err), retryInMs: wait }, 'watch failed; keeping the last state and retrying');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.lw.start().catch((e: unknown) => this.retry(e));
    }, wait);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.lw.stop();
  }
}

export class KubeLink {
  private readonly core: CoreV1Api;
  private readonly watches: ResilientWatch<KubernetesObject>[] = [];
  private readonly services = new Map<string, ServiceLike[]>();

  constructor(
    private readonly kc: KubeConfig,
    private readonly config: AgentConfig,
    private readonly handlers: KubeHandlers,
    private readonly log: Logger,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  start(): void {
    const c = this.config;
    // DNS Services by name (one watch per namespace) and optionally by label
    const byNamespace = new Map<string, string[]>();
    for (const s of c.dnsServices) {
      const [ns, name] = splitName(s);
      byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), name]);
    }
    for (const [ns, names] of byNamespace) {
      this.add('services', `services in ${ns}`, `/api/v1/namespaces/${ns}/services`, () => this.core.listNamespacedService({ namespace: ns }), (items) => {
        this.services.set(`name:${ns}`, (items as ServiceLike[]).filter((s) => names.includes(s.metadata?.name ?? '')));
        this.publishDns();
      });
    }
    if (c.dnsServiceSelector) {
      this.add('services', `services labelled ${c.dnsServiceSelector}`, '/api/v1/services', () => this.core.listServiceForAllNamespaces({ labelSelector: c.dnsServiceSelector }), (items) => {
        this.services.set('selector', items as ServiceLike[]);
        this.publishDns();
      }, { label: c.dnsServiceSelector });
    }
    if (c.nodeName) {
      const field = `spec.nodeName=${c.nodeName}`;
      this.add('pods', `pods on ${c.nodeName}`, '/api/v1/pods', () => this.core.listPodForAllNamespaces({ fieldSelector: field }), (items) => this.handlers.onPods(podsFrom(items as PodLike[])), { field });
    }
    const [cmNs, cmName] = splitName(c.configMap);
    const cmField = `metadata.name=${cmName}`;
    this.add('configmaps', `configmap ${c.configMap}`, `/api/v1/namespaces/${cmNs}/configmaps`, () => this.core.listNamespacedConfigMap({ namespace: cmNs, fieldSelector: cmField }), (items) => {
      const cm = items.find((o) => o.metadata?.name === cmName) as { data?: Record<string, string> } | undefined;
      const text = cm?.data?.['config.yaml'];
      if (text !== undefined) this.handlers.onConfigText(text);
    }, { field: cmField });
    for (const w of this.watches) w.start();
  }

  private add(_resource: string, what: string, path: string, list: () => Promise<unknown>, onChange: (items: KubernetesObject[]) => void, selectors: { label?: string; field?: string } = {}): void {
    this.watches.push(new ResilientWatch(this.kc, what, path, list as never, onChange, this.log, selectors));
  }

  private publishDns(): void {
    this.handlers.onDnsTargets(dnsTargetsFrom([...this.services.values()].flat()));
  }

  /** A core/v1 Event about this node. Failures are logged, never thrown. */
  async event(type: EventType, reason: string, message: string): Promise<void> {
    if (!this.config.nodeName) return;
    const [ns] = splitName(this.config.configMap);
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace: ns,
        body: {
          metadata: { generateName: 'dnspacer-', namespace: ns },
          involvedObject: { apiVersion: 'v1', kind: 'Node', name: this.config.nodeName, uid: this.config.nodeName },
          type,
          reason,
          message,
          source: { component: 'dnspacer', host: this.config.nodeName },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (e) {
      this.log.warn({ reason, err: (e as Error).message }, 'could not publish an Event');
    }
  }

  /** Writes mode, placement and version on this Node (merge patch). */
  async annotateNode(annotations: Record<string, string>): Promise<void> {
    if (!this.config.annotateNode || !this.config.nodeName) return;
    try {
      await this.core.patchNode({ name: this.config.nodeName, body: { metadata: { annotations } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not annotate the Node');
    }
  }

  async stop(): Promise<void> {
    for (const w of this.watches) await w.stop();
  }
}
