// A small Kubernetes API server for tests, on 127.0.0.1: the REST list/get/create/patch/
// delete verbs and the `?watch=true` stream as the real one speaks them, with
// resourceVersions, label and field selectors, BOOKMARK events, 410 Gone for a
// compacted resourceVersion, and controls to drop watches or take the server away.
// One reusable fake for every Kubernetes test; nothing is stubbed per test.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

interface Resource {
  kind: string;
  apiVersion: string;
  namespaced: boolean;
}

const RESOURCES: Record<string, Resource> = {
  pods: { kind: 'Pod', apiVersion: 'v1', namespaced: true },
  services: { kind: 'Service', apiVersion: 'v1', namespaced: true },
  configmaps: { kind: 'ConfigMap', apiVersion: 'v1', namespaced: true },
  events: { kind: 'Event', apiVersion: 'v1', namespaced: true },
  nodes: { kind: 'Node', apiVersion: 'v1', namespaced: false },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
};

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
  rv: number;
  resource: string;
}

interface Watcher {
  resource: string;
  namespace?: string;
  match: (o: Obj) => boolean;
  res: http.ServerResponse;
  bookmarks: boolean;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

function parsePath(pathname: string): { resource: string; namespace?: string; name?: string } | null {
  const parts = pathname.split('/').filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  const rest = parts[0] === 'api' ? parts.slice(2) : parts[0] === 'apis' ? parts.slice(3) : null;
  if (!rest) return null;
  if (rest[0] === 'namespaces' && rest.length >= 3) return { namespace: rest[1], resource: rest[2]!, ...(rest[3] ? { name: rest[3] } : {}) };
  if (rest.length >= 1) return { resource: rest[0]!, ...(rest[1] ? { name: rest[1] } : {}) };
  return null;
}

function labelMatcher(selector: string | undefined): (o: Obj) => boolean {
  if (!selector) return () => true;
  const terms = selector.split(',').map((t) => {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(t.trim());
    if (!m) throw new Error(`bad selector ${t}`);
    return { key: m[1]!, neg: m[2] === '!=', value: m[3]! };
  });
  return (o) => terms.every((t) => (o.metadata.labels?.[t.key] === t.value) !== t.neg);
}

function fieldMatcher(selector: string | undefined): (o: Obj) => boolean {
  if (!selector) return () => true;
  const terms = selector.split(',').map((t) => {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(t.trim());
    if (!m) throw new Error(`bad selector ${t}`);
    return { path: m[1]!.split('.'), neg: m[2] === '!=', value: m[3]! };
  });
  return (o) =>
    terms.every((t) => {
      let v: unknown = o;
      for (const k of t.path) v = (v as Record<string, unknown> | undefined)?.[k];
      return (String(v ?? '') === t.value) !== t.neg;
    });
}

/** RFC 7386 JSON merge patch; strategic merge is served the same way (enough for maps). */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function status(code: number, reason: string, message: string): Obj & { code: number; reason: string; message: string; status: string } {
  return { apiVersion: 'v1', kind: 'Status', metadata: { name: '' }, status: 'Failure', code, reason, message };
}

export class FakeApiServer {
  private readonly objects = new Map<string, Obj>();
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private server?: http.Server;
  private rv = 100;
  /** watches from a resourceVersion older than this get 410 Gone */
  private oldestRv = 0;
  private uidCounter = 0;
  readonly requests: RequestRecord[] = [];
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Where it listens: 127.0.0.1 (a free port, kept across stop() and start()), or a
   * unix socket, which a forwarder can expose inside another network namespace. */
  constructor(private readonly socketPath?: string) {}

  /** Starts listening (again, at the same place after stop()). */
  async start(): Promise<void> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      if (this.socketPath) {
        fs.rmSync(this.socketPath, { force: true });
        this.server!.listen(this.socketPath, () => resolve());
      } else this.server!.listen(this.port, '127.0.0.1', () => resolve());
    });
    if (!this.socketPath) this.port = (this.server.address() as AddressInfo).port;
  }

  /** An outage: every connection cut, nothing listening until start(). */
  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  /** Ends every watch stream cleanly, as an API server does at its timeout. */
  dropWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Forgets history: a watch from any resourceVersion seen so far now gets 410 Gone. */
  compact(): void {
    // as etcd after a compaction: the current revision moves on, older ones are gone
    this.rv += 1;
    this.oldestRv = this.rv;
    this.history.length = 0;
  }

  /** Sends a BOOKMARK to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const r = RESOURCES[w.resource]!;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: r.kind, apiVersion: r.apiVersion, metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
  }

  watchCount(resource?: string): number {
    return [...this.watchers].filter((w) => !resource || w.resource === resource).length;
  }

  // ---- direct access for tests (what kubectl would do) ----

  put(resource: string, obj: Omit<Obj, 'apiVersion' | 'kind'> & Partial<Pick<Obj, 'apiVersion' | 'kind'>>): Obj {
    const r = RESOURCES[resource]!;
    const key = this.key(resource, obj.metadata.namespace, obj.metadata.name);
    const existed = this.objects.has(key);
    const stored: Obj = structuredClone({ ...obj, apiVersion: r.apiVersion, kind: r.kind }) as Obj;
    stored.metadata.uid = this.objects.get(key)?.metadata.uid ?? `uid-${++this.uidCounter}`;
    stored.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, stored);
    this.emit({ type: existed ? 'MODIFIED' : 'ADDED', object: stored, rv: this.rv, resource });
    return stored;
  }

  remove(resource: string, namespace: string | undefined, name: string): void {
    const key = this.key(resource, namespace, name);
    const obj = this.objects.get(key);
    if (!obj) return;
    this.objects.delete(key);
    const gone = structuredClone(obj);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit({ type: 'DELETED', object: gone, rv: this.rv, resource });
  }

  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    return this.objects.get(this.key(resource, namespace, name));
  }

  list(resource: string, namespace?: string): Obj[] {
    const prefix = namespace === undefined ? `${resource}/` : `${resource}/${namespace}/`;
    return [...this.objects.entries()].filter(([k]) => k.startsWith(prefix)).map(([, o]) => o);
  }

  private key(resource: string, namespace: string | undefined, name: string): string {
    return `${resource}/${RESOURCES[resource]?.namespaced ? (namespace ?? '') : ''}/${name}`;
  }

  private emit(ev: WatchEvent): void {
    this.history.push(ev);
    for (const w of this.watchers) {
      if (w.resource === ev.resource && (!w.namespace || w.namespace === ev.object.metadata.namespace) && w.match(ev.object)) {
        w.res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
      }
    }
  }

  private send(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    let body: unknown;
    if (req.method === 'POST' || req.method === 'PATCH' || req.method === 'PUT') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      try {
        body = JSON.parse(Buffer.concat(chunks).toString() || 'null');
      } catch {
        return this.send(res, 400, status(400, 'BadRequest', 'body is not JSON'));
      }
    }
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query, ...(body !== undefined ? { body } : {}) });
    const target = parsePath(url.pathname);
    const r = target && RESOURCES[target.resource];
    if (!target || !r) return this.send(res, 404, status(404, 'NotFound', `no resource at ${url.pathname}`));
    const { namespace, name } = target;
    let match: (o: Obj) => boolean;
    try {
      const byLabel = labelMatcher(query.labelSelector);
      const byField = fieldMatcher(query.fieldSelector);
      match = (o) => byLabel(o) && byField(o);
    } catch (e) {
      return this.send(res, 400, status(400, 'BadRequest', (e as Error).message));
    }

    switch (req.method) {
      case 'GET': {
        if (name) {
          const o = this.get(target.resource, namespace, name);
          return o ? this.send(res, 200, o) : this.send(res, 404, status(404, 'NotFound', `${target.resource} "${name}" not found`));
        }
        const scoped = (o: Obj) => (!namespace || o.metadata.namespace === namespace) && match(o);
        if (query.watch === 'true' || query.watch === '1') return this.watch(res, target.resource, namespace, scoped, query);
        const items = [...this.objects.entries()].filter(([k]) => k.startsWith(`${target.resource}/`)).map(([, o]) => o).filter(scoped);
        return this.send(res, 200, { apiVersion: r.apiVersion, kind: `${r.kind}List`, metadata: { resourceVersion: String(this.rv) }, items });
      }
      case 'POST': {
        const o = body as Obj;
        if (!o?.metadata?.name && !(o?.metadata as { generateName?: string })?.generateName) return this.send(res, 422, status(422, 'Invalid', 'metadata.name is required'));
        const objName = o.metadata.name || `${(o.metadata as { generateName?: string }).generateName}${++this.uidCounter}`;
        if (this.get(target.resource, namespace, objName)) return this.send(res, 409, status(409, 'AlreadyExists', `${target.resource} "${objName}" already exists`));
        return this.send(res, 201, this.put(target.resource, { ...o, metadata: { ...o.metadata, name: objName, ...(r.namespaced ? { namespace } : {}) } }));
      }
      case 'PATCH': {
        if (!name) return this.send(res, 405, status(405, 'MethodNotAllowed', 'patch needs a name'));
        const o = this.get(target.resource, namespace, name);
        if (!o) return this.send(res, 404, status(404, 'NotFound', `${target.resource} "${name}" not found`));
        const type = req.headers['content-type'] ?? '';
        if (!/merge-patch\+json|strategic-merge-patch\+json/.test(type)) return this.send(res, 415, status(415, 'UnsupportedMediaType', `patch type ${type} is not served`));
        return this.send(res, 200, this.put(target.resource, mergePatch(o, body) as Obj));
      }
      case 'DELETE': {
        const o = name && this.get(target.resource, namespace, name);
        if (!o) return this.send(res, 404, status(404, 'NotFound', `${target.resource} "${name}" not found`));
        this.remove(target.resource, namespace, name!);
        return this.send(res, 200, o);
      }
      default:
        return this.send(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not served`));
    }
  }

  private watch(res: http.ServerResponse, resource: string, namespace: string | undefined, match: (o: Obj) => boolean, query: Record<string, string>): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const from = query.resourceVersion ? Number(query.resourceVersion) : this.rv;
    if (query.resourceVersion && from < this.oldestRv) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.oldestRv})`) })}\n`);
      return;
    }
    for (const ev of this.history) {
      if (ev.rv > from && ev.resource === resource && (!namespace || ev.object.metadata.namespace === namespace) && match(ev.object)) {
        res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
      }
    }
    const w: Watcher = { resource, ...(namespace ? { namespace } : {}), match, res, bookmarks: query.allowWatchBookmarks === 'true' };
    this.watchers.add(w);
    res.on('close', () => this.watchers.delete(w));
    if (query.timeoutSeconds) setTimeout(() => res.end(), Number(query.timeoutSeconds) * 1000).unref();
  }
}
