// Builds a kustomization the way `kustomize build` does for the features manifests/
// uses (resources, namespace, images, JSON 6902 and strategic-merge patches), so the
// tests validate exactly what a user would apply. No kustomize binary is packaged for
// Debian 12; anything this does not understand is an error, never ignored.
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };

interface Kustomization {
  resources?: string[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  patches?: { path: string; target?: { kind?: string; name?: string } }[];
}

const KNOWN = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'Node', 'CustomResourceDefinition', 'PriorityClass']);

function readObjects(file: string): K8sObject[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** RFC 6902 add/replace/remove with JSON pointers; "-" appends to an array. */
function applyJsonPatch(target: unknown, ops: { op: string; path: string; value?: unknown }[]): void {
  for (const op of ops) {
    const keys = op.path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = keys.pop()!;
    let parent = target as Record<string, unknown>;
    for (const k of keys) {
      const next = (parent as Record<string, unknown>)[k];
      if (next === undefined || next === null || typeof next !== 'object') throw new Error(`patch path ${op.path}: ${k} does not exist`);
      parent = next as Record<string, unknown>;
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (op.op === 'add') parent.splice(index, 0, op.value);
      else if (op.op === 'replace') parent[index] = op.value;
      else if (op.op === 'remove') parent.splice(index, 1);
      else throw new Error(`patch op ${op.op} is not supported`);
    } else if (op.op === 'add' || op.op === 'replace') {
      if (op.op === 'replace' && !(last in parent)) throw new Error(`patch path ${op.path} does not exist`);
      parent[last] = op.value;
    } else if (op.op === 'remove') {
      if (!(last in parent)) throw new Error(`patch path ${op.path} does not exist`);
      delete parent[last];
    } else throw new Error(`patch op ${op.op} is not supported`);
  }
}

/** Strategic merge for maps; lists are replaced (enough for ConfigMap data). */
function mergeInto(base: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(patch)) {
    const b = base[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)) mergeInto(b as Record<string, unknown>, v as Record<string, unknown>);
    else base[k] = v;
  }
}

export function kustomize(dir: string): K8sObject[] {
  const k = parseYaml(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
  for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new Error(`${dir}: kustomization field ${key} is not understood by the test builder`);
  const objects: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    objects.push(...(fs.statSync(p).isDirectory() ? kustomize(p) : readObjects(p)));
  }
  for (const patch of k.patches ?? []) {
    const file = path.join(dir, patch.path);
    if (file.endsWith('.json')) {
      const ops = JSON.parse(fs.readFileSync(file, 'utf8'));
      const hits = objects.filter((o) => (!patch.target?.kind || o.kind === patch.target.kind) && (!patch.target?.name || o.metadata.name === patch.target.name));
      if (hits.length === 0) throw new Error(`${file}: patch target matches nothing`);
      for (const o of hits) applyJsonPatch(o, ops);
    } else {
      for (const p of readObjects(file)) {
        const o = objects.find((x) => x.kind === p.kind && x.metadata.name === p.metadata.name);
        if (!o) throw new Error(`${file}: no ${p.kind} ${p.metadata.name} to patch`);
        mergeInto(o, p);
      }
    }
  }
  for (const o of objects) {
    if (k.namespace && !CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
    for (const img of k.images ?? []) {
      const spec = (o as { spec?: { template?: { spec?: { containers?: { image?: string }[] } } } }).spec?.template?.spec;
      for (const c of spec?.containers ?? []) {
        if (c.image === img.name || c.image?.startsWith(`${img.name}:`)) c.image = `${img.newName ?? img.name}:${img.newTag ?? 'latest'}`;
      }
    }
  }
  return objects;
}
