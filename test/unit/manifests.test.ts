// Every kustomization under manifests/ builds, every object validates against the
// Kubernetes OpenAPI schemas (kubernetes-models), the agent's own parser accepts the
// ConfigMap's settings, and the privileges are the least each placement needs.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConfig, parseConfigText } from '../../src/config.js';
import { type K8sObject, kustomize } from '../helpers/kustomize.js';

const ROOT = path.resolve(import.meta.dirname, '../../manifests');
const OVERLAYS = fs.readdirSync(path.join(ROOT, 'overlays')).sort();
const BUILDS = ['base', ...OVERLAYS.map((o) => `overlays/${o}`)];

/** The kubernetes-models class for an object, by group/version and kind. */
async function modelFor(o: K8sObject): Promise<{ validate(): void }> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const mod =
    group === 'monitoring.coreos.com'
      ? await import(`@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${o.kind}`)
      : await import(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`);
  const Model = mod[o.kind] as new (o: unknown) => { validate(): void };
  return new Model(o);
}

type Container = { securityContext: { capabilities: { add: string[]; drop: string[] }; readOnlyRootFilesystem: boolean; privileged?: boolean; allowPrivilegeEscalation: boolean }; [k: string]: unknown };
type PodSpec = { hostPID?: boolean; hostNetwork?: boolean; containers: Container[]; volumes: { name: string; hostPath?: { path: string } }[]; [k: string]: unknown };

function daemonSet(objects: K8sObject[]): { spec: { template: { spec: PodSpec } } } {
  return objects.find((o) => o.kind === 'DaemonSet') as unknown as { spec: { template: { spec: PodSpec } } };
}

function agentConfig(objects: K8sObject[]) {
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'dnspacer') as unknown as { data: Record<string, string> };
  return buildConfig(parseConfigText(cm.data['config.yaml']!, 'configmap'));
}

describe('manifests', () => {
  for (const build of BUILDS) {
    it(`${build}: builds, and every object validates against its OpenAPI schema`, async () => {
      const objects = kustomize(path.join(ROOT, build));
      expect(objects.length).toBeGreaterThan(5);
      for (const o of objects) {
        const model = await modelFor(o);
        expect(() => model.validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
        if (!['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)) expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe('dnspacer');
      }
      // the agent's own parser takes the ConfigMap's settings as they are
      expect(() => agentConfig(objects)).not.toThrow();
    });
  }

  it('a wrong type in a manifest is caught by the validation', async () => {
    const objects = kustomize(path.join(ROOT, 'base'));
    const ds = daemonSet(objects);
    (ds.spec.template.spec.containers[0]!.securityContext.capabilities as unknown as { add: string }).add = 'NET_ADMIN';
    const model = await modelFor(ds as unknown as K8sObject);
    expect(() => model.validate()).toThrow(/capabilities\/add must be array/);
  });

  it('base: host network, NET_ADMIN, BPF and PERFMON only, no hostPID, read-only root, probes, limits, every node', () => {
    const objects = kustomize(path.join(ROOT, 'base'));
    const pod = daemonSet(objects).spec.template.spec;
    const c = pod.containers[0]!;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID ?? false).toBe(false);
    expect(c.securityContext.privileged ?? false).toBe(false);
    expect(c.securityContext.capabilities.add.sort()).toEqual(['BPF', 'NET_ADMIN', 'PERFMON']);
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    // bpf() with CAP_BPF is refused by the runtimes' default seccomp profiles (test/container shows it)
    expect(c.securityContext).toMatchObject({ seccompProfile: { type: 'Unconfined' } });
    expect(c).toMatchObject({ livenessProbe: { httpGet: { path: '/healthz' } }, readinessProbe: { httpGet: { path: '/readyz' } } });
    expect(c).toHaveProperty('resources.limits.memory');
    expect(c).toHaveProperty('resources.requests.cpu');
    expect(pod).toMatchObject({ priorityClassName: 'system-node-critical', tolerations: [{ operator: 'Exists' }] });
    expect(pod.volumes.map((v) => v.hostPath?.path).filter(Boolean).sort()).toEqual(['/run/dnspacer', '/run/xtables.lock', '/sys/fs/bpf']);
    const config = agentConfig(objects);
    // a rolling update keeps the datapath: the next pod adopts it and swaps in place
    expect(config.keepOnExit).toBe(true);
    // probes and Prometheus reach the agent on the node's address
    expect(config.metricsAddress).toEqual({ host: '0.0.0.0', port: 9741 });
  });

  it('RBAC: read pods, services and endpointslices; its own ConfigMap by name; Events; Nodes only with annotations', () => {
    const rules = (objects: K8sObject[]) =>
      objects
        .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')
        .flatMap((o) => (o as unknown as { rules: { resources: string[]; verbs: string[]; resourceNames?: string[] }[] }).rules)
        .flatMap((r) => r.resources.flatMap((res) => r.verbs.map((v) => `${res}:${v}${r.resourceNames ? `:${r.resourceNames.join('|')}` : ''}`)))
        .sort();
    const base = rules(kustomize(path.join(ROOT, 'base')));
    expect(base).toEqual(
      [
        'configmaps:get:dnspacer', 'configmaps:list:dnspacer', 'configmaps:watch:dnspacer',
        'endpointslices:get', 'endpointslices:list', 'endpointslices:watch',
        'events:create', 'events:patch',
        'pods:get', 'pods:list', 'pods:watch',
        'services:get', 'services:list', 'services:watch',
      ].sort(),
    );
    expect(base.some((r) => r.startsWith('nodes:'))).toBe(false);
    const annotated = kustomize(path.join(ROOT, 'overlays/node-annotations'));
    expect(rules(annotated)).toContain('nodes:patch');
    expect(agentConfig(annotated).annotateNode).toBe(true);
  });

  it('only the pod-placement overlay adds SYS_ADMIN, hostPID and the netns mount', () => {
    for (const build of BUILDS) {
      const objects = kustomize(path.join(ROOT, build));
      const pod = daemonSet(objects).spec.template.spec;
      const caps = pod.containers[0]!.securityContext.capabilities.add;
      const isPod = build === 'overlays/pod-placement';
      expect(caps.includes('SYS_ADMIN'), build).toBe(isPod);
      expect(pod.hostPID ?? false, build).toBe(isPod);
      expect(pod.volumes.some((v) => v.hostPath?.path === '/var/run/netns'), build).toBe(isPod);
      expect(agentConfig(objects).placement === 'pod', build).toBe(isPod);
    }
  });

  it('device overlays pace on weave and flannel.1; observe-only changes no packet', () => {
    expect(agentConfig(kustomize(path.join(ROOT, 'overlays/device-weave')))).toMatchObject({ mode: 'edt', placement: 'device', interfaces: ['weave'] });
    expect(agentConfig(kustomize(path.join(ROOT, 'overlays/device-flannel')))).toMatchObject({ mode: 'edt', placement: 'device', interfaces: ['flannel.1'] });
    expect(agentConfig(kustomize(path.join(ROOT, 'overlays/observe-only')))).toMatchObject({ mode: 'observe' });
  });
});
