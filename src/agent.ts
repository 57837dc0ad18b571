// `dnspacer agent`: probe, choose, apply before conntrack, watch interfaces, export
// metrics, apply config changes live, and undo everything on SIGTERM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Mitigation, type Plan, type Target, targetKey, undoChange } from './apply.js';
import { ensureBpffs } from './bpffs.js';
import { type AgentConfig, type RawConfig, ConfigError, FIELD_NAMES, buildConfig, fieldToFlag, flagToField, parseConfigText, rawFromEnv, restartNeeded } from './config.js';
import { Classifier } from './datapath/datapath.js';
import { zeroCounters } from './datapath/layout.js';
import { conntrackInUse, parseConntrackStat } from './lab/conntrack.js';
import { loadAddon } from './datapath/addon.js';
import { type ConntrackSample, createMetrics } from './metrics.js';
import { type Capabilities, UnsupportedError, chooseMode } from './modes.js';
import { Journal } from './netops.js';
import { type DnsTargets, KubeLink, type PodRef, kubeConfigFor } from './kube.js';
import { discoverTargets, targetAddresses, watchLinks } from './placement.js';
import { probe } from './probe.js';
import { startServer } from './server.js';
import { parseArgs } from './args.js';

export const VERSION = '0.1.0';
export const SWITCHES = ['--keep-on-exit'];

export interface AgentInputs {
  argv: string[];
  env: NodeJS.ProcessEnv;
}

/** Flags > environment > file > defaults. Throws ConfigError with one line. */
export function loadConfig({ argv, env }: AgentInputs, fromConfigMap: RawConfig = {}): { config: AgentConfig; file?: string } {
  const valueFlags = [...FIELD_NAMES.filter((f) => f !== 'keepOnExit').map(fieldToFlag), '--config'];
  const a = parseArgs(argv, { values: valueFlags, switches: SWITCHES });
  if (a.positional.length) throw new ConfigError('arguments', `unexpected "${a.positional[0]}"; agent takes only options`);
  const flags: RawConfig = {};
  for (const [flag, value] of a.values) {
    const field = flagToField(flag);
    if (field) flags[field] = value;
  }
  if (a.switches.has('--keep-on-exit')) flags.keepOnExit = 'true';
  const file = a.values.get('--config') ?? env.DNSPACER_CONFIG;
  let fromFile: RawConfig = {};
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError('config', `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    fromFile = parseConfigText(text, file);
  }
  return { config: buildConfig(fromFile, fromConfigMap, rawFromEnv(env), flags), ...(file ? { file } : {}) };
}

export async function runAgent(inputs: AgentInputs, log = pino({ name: 'dnspacer' })): Promise<number> {
  let { config, file } = loadConfig(inputs);
  log.level = config.logLevel;
  const caps: Capabilities = await probe();
  log.info({ probe: Object.fromEntries(Object.entries(caps).map(([k, v]) => [k, v.ok ? true : v.reason])) }, 'probed kernel');
  const choice = chooseMode(config.mode, config.placement, caps, {
    canEnterNetns: canEnterNetns(),
    hasDevices: config.interfaces.length > 0,
  });
  log.info({ mode: choice.mode, placement: choice.placement, reason: choice.reason, passedOver: choice.passedOver }, 'mode chosen');

  const kc = kubeConfigFor(config);
  let fromConfigMap: RawConfig = {};
  let discovered: DnsTargets = { cidrs: [], ports: [] };
  let podRefs: PodRef[] = [];
  // the classifier's destination filter: configured prefixes and ports plus the cluster DNS Services found
  const effective = (c: AgentConfig): AgentConfig => ({
    ...c,
    dnsCidrs: [...c.dnsCidrs, ...discovered.cidrs],
    dnsPorts: [...new Set([...c.dnsPorts, ...discovered.ports])],
  });

  const plan: Plan = { mode: choice.mode, placement: choice.placement, serializeVia: choice.serializeVia ?? 'classify' };
  const journal = Journal.load(config.stateFile);
  if (journal.entries().length && (journal.meta?.mode !== plan.mode || journal.meta?.placement !== plan.placement)) {
    // leftovers of another mode: clean them before applying ours
    const failures = await journal.undoAll(undoChange);
    log.warn({ failures, previous: journal.meta }, 'removed what an earlier run of another mode left');
  } else if (journal.entries().length) {
    log.info({ changes: journal.entries().length }, 'adopting the datapath an earlier run left; programs are swapped in place');
  }
  journal.setMeta({ mode: plan.mode, placement: plan.placement });

  let classifier: Classifier | null = null;
  if (plan.mode !== 'iptables-netem') {
    await ensureBpffs();
    classifier = Classifier.load({ pinDir: config.pinDir, log: (level, message) => log[level === 'warn' ? 'warn' : 'debug']({ libbpf: message.trim() }) });
  }
  const mitigation = new Mitigation(plan, effective(config), classifier, journal, { pinDir: config.pinDir });
  const active = new Map<string, Target>();
  let ready = false;

  const addresses = new Map<string, string[]>();
  const podOf = (t: Target): { namespace: string; pod: string } => {
    const ips = addresses.get(targetKey(t)) ?? [];
    const p = podRefs.find((r) => r.ips.some((ip) => ips.includes(ip)));
    return p ? { namespace: p.namespace, pod: p.name } : { namespace: '', pod: '' };
  };
  const sync = async () => {
    const want = await discoverTargets(plan.placement, config.interfaces);
    const wantKeys = new Set(want.map(targetKey));
    for (const t of want) {
      if (active.has(targetKey(t))) continue;
      try {
        await mitigation.add(t);
        active.set(targetKey(t), t);
        addresses.set(targetKey(t), await targetAddresses(t));
        log.info({ interface: t.dev, netns: t.netns }, 'applied');
      } catch (e) {
        log.error({ interface: t.dev, netns: t.netns, err: (e as Error).message }, 'could not apply; rolled back this interface');
      }
    }
    for (const [key, t] of active) {
      if (wantKeys.has(key)) continue;
      const failures = await mitigation.remove(t);
      active.delete(key);
      addresses.delete(key);
      log.info({ interface: t.dev, netns: t.netns, failures }, 'interface gone');
    }
  };

  const kube = kc
    ? new KubeLink(kc, config, {
        onDnsTargets: (t) => {
          discovered = t;
          mitigation.configure(effective(config));
          log.info({ dnsServices: t.cidrs.length, ports: t.ports }, 'cluster DNS Services now in the classifier\'s filter');
        },
        onPods: (pods) => {
          podRefs = pods;
          // pod placement: a new pod's namespace is attached at once, not at the next link event
          if (plan.placement === 'pod') syncing = syncing.then(sync).catch((e: Error) => log.error({ err: e.message }, 'resync failed'));
        },
        onConfigText: (text) => {
          try {
            fromConfigMap = parseConfigText(text, `ConfigMap ${config.configMap}`);
            reload();
          } catch (e) {
            log.error({ err: (e as Error).message }, 'ConfigMap not applied; keeping the running config');
          }
        },
      }, log)
    : undefined;
  let syncing = Promise.resolve();
  const reload = () => {
    try {
      const next = loadConfig(inputs, fromConfigMap).config;
      const restart = restartNeeded(config, next);
      if (restart.length) log.warn({ settings: restart }, 'these settings change only on restart; the rest applies now');
      config = { ...config, ...Object.fromEntries(Object.entries(next).filter(([k]) => !restart.includes(k))) } as AgentConfig;
      mitigation.configure(effective(config));
      log.level = config.logLevel;
      log.info('config reloaded live');
    } catch (e) {
      log.error({ err: (e as Error).message }, 'config not reloaded; keeping the running one');
    }
  };

  try {
    await mitigation.start();
    await sync();
  } catch (e) {
    await mitigation.stop();
    classifier?.close();
    throw e;
  }
  kube?.start();
  void kube?.event('Normal', 'ModeChosen', `${plan.mode} at ${plan.placement} placement: ${choice.reason}`);
  for (const p of choice.passedOver) void kube?.event('Warning', 'Fallback', `${p.mode} at ${p.placement} passed over: ${p.reason}`);
  const missingFeatures = Object.entries(caps).filter(([k, v]) => !v.ok && k !== 'serializeRedirect');
  if (missingFeatures.length) void kube?.event('Warning', 'ProbeFailed', missingFeatures.map(([, v]) => v.reason).join('; '));
  void kube?.annotateNode({ 'dnspacer.io/mode': plan.mode, 'dnspacer.io/placement': plan.placement, 'dnspacer.io/version': VERSION });
  const watcher = watchLinks(() => {
    syncing = syncing.then(sync).catch((e: Error) => log.error({ err: e.message }, 'resync failed'));
  });

  const registry = createMetrics({
    attachments: () =>
      [...active.values()].map((t) => ({
        labels: { interface: t.dev, direction: plan.placement === 'host' ? 'ingress' : 'egress', netns: t.netns ?? '', ...podOf(t) },
        // iptables-netem has no classifier: its interfaces export zeros
        counters: classifier ? classifier.counters(mitigation.slotOf(t) ?? 0) : zeroCounters(),
      })),
    conntrack: async () => {
      // the agent's own namespace always; under pod placement also each pod whose own
      // conntrack is in use, where its DNS can race too. Read through the addon: no
      // process is started per scrape.
      const addon = loadAddon();
      const pods = plan.placement === 'pod' ? [...new Set([...active.values()].map((t) => t.netns ?? ''))].filter(Boolean) : [];
      const samples: ConntrackSample[] = [];
      for (const netns of ['', ...pods]) {
        let text: string;
        try {
          text = addon.readProcNet(netns, 'stat/nf_conntrack');
        } catch {
          continue; // nf_conntrack not loaded, or the pod went away
        }
        if (netns && !conntrackInUse(text)) continue;
        samples.push({ netns, ...parseConntrackStat(text) });
      }
      return samples;
    },
    info: () => ({ mode: plan.mode, placement: plan.placement, policy: config.policy, version: VERSION, kernel: os.release() }),
    probe: () => Object.fromEntries(Object.entries(caps).map(([k, v]) => [k, v.ok])),
    serializeQueue: () => mitigation.serializeQueue(),
  });
  const server = await startServer({
    host: config.metricsAddress.host,
    port: config.metricsAddress.port,
    registry,
    ready: () => (ready ? { ready: true } : { ready: false, reason: 'applying' }),
  });
  log.info({ url: server.url }, 'serving /metrics /healthz /readyz');

  process.on('SIGHUP', reload);
  const fileWatcher = file ? fs.watch(path.dirname(file), (_, name) => name === path.basename(file!) && reload()) : undefined;

  return new Promise((resolve) => {
    const stop = async (signal: string) => {
      log.info({ signal }, 'stopping');
      ready = false;
      fileWatcher?.close();
      await kube?.stop();
      await watcher.stop();
      await syncing;
      await server.close();
      if (config.keepOnExit) {
        log.info({ state: config.stateFile }, 'keep-on-exit: the datapath stays; the next start adopts it');
      } else {
        const failures = await mitigation.stop();
        if (failures.length) log.error({ failures }, 'some changes could not be undone');
        await kube?.event(failures.length ? 'Warning' : 'Normal', 'Cleanup', failures.length ? `could not undo: ${failures.join('; ')}` : 'removed everything dnspacer added on this node');
        journal.removeStateIfEmpty();
      }
      classifier?.close();
      if (!config.keepOnExit) fs.rmSync(config.pinDir, { recursive: true, force: true });
      log.info('stopped');
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
    // ready only once SIGTERM undoes what was applied
    ready = true;
  });
}

/** Entering pod namespaces needs root (CAP_SYS_ADMIN) and a way to name them: the
 * host's processes (hostPID) or /var/run/netns. */
function canEnterNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  if (fs.existsSync('/var/run/netns')) return true;
  try {
    fs.readlinkSync('/proc/1/ns/net');
    return true;
  } catch {
    return false;
  }
}

export { UnsupportedError };
