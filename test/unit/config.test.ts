import { describe, expect, it } from 'vitest';
import {
  buildConfig,
  ConfigError,
  DEFAULTS,
  envToField,
  fieldToEnv,
  fieldToFlag,
  flagToField,
  parseCidr,
  parseConfigText,
  parseDuration,
  parseMark,
  rawFromEnv,
  restartNeeded,
} from '../../src/config.js';

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('has defaults that pass their own validation', () => {
    expect(buildConfig()).toEqual(DEFAULTS);
  });

  it('later layers win: file < env < flags', () => {
    const c = buildConfig(
      parseConfigText('policy: aaaa\ndelay: 4ms\ndnsPort: [53, 5353]\n', 'f.yaml'),
      rawFromEnv({ DNSPACER_DELAY: '2ms', PATH: '/bin' }),
      { gap: '50us' },
    );
    expect(c.policy).toBe('aaaa');
    expect(c.delayNs).toBe(2_000_000);
    expect(c.gapNs).toBe(50_000);
    expect(c.dnsPorts).toEqual([53, 5353]);
  });

  it('parses durations with units and rejects others with the field and range', () => {
    expect(parseDuration('100us', 'gap', 0, 1e9)).toBe(100_000);
    expect(parseDuration('1.5ms', 'gap', 0, 1e9)).toBe(1_500_000);
    expect(parseDuration('0', 'delay', 0, 1e9)).toBe(0);
    const e = errorOf(() => parseDuration('5', 'delay', 0, 1e9));
    expect(e.message).toMatch(/^invalid delay: "5" needs a unit/);
    expect(e.message.split('\n')).toHaveLength(1);
    expect(errorOf(() => buildConfig({ delay: '2s' })).message).toMatch(/invalid delay: "2s" is out of range; .* from 0 to 1s/);
  });

  it('parses IPv4 and IPv6 CIDRs and rejects bad ones', () => {
    const v4 = parseCidr('198.18.0.10', 'dnsCidr');
    expect(v4.family).toBe(4);
    expect(v4.prefixLen).toBe(32);
    expect([...v4.addr.slice(10)]).toEqual([0xff, 0xff, 198, 18, 0, 10]);
    const v6 = parseCidr('2001:2::53/64', 'dnsCidr');
    expect(v6.family).toBe(6);
    expect(v6.prefixLen).toBe(64);
    expect([...v6.addr.slice(0, 4)]).toEqual([0x20, 0x01, 0x00, 0x02]);
    expect(v6.addr[15]).toBe(0x53);
    expect(parseCidr('::ffff:198.18.0.1', 'dnsCidr').addr[15]).toBe(1);
    for (const bad of ['198.18.0.256', '198.18.0.0/33', '2001:2::/129', '1:2:3', 'x', '1::2::3']) {
      expect(errorOf(() => buildConfig({ dnsCidr: bad })).message).toMatch(/^invalid dnsCidr: /);
    }
  });

  it('parses marks and refuses a value outside its mask', () => {
    expect(parseMark('0x1000/0x1000', 'mark')).toEqual({ value: 0x1000, mask: 0x1000 });
    expect(parseMark('4096', 'mark')).toEqual({ value: 4096, mask: 4096 });
    expect(parseMark('0x100/0xff00', 'mark')).toEqual({ value: 0x100, mask: 0xff00 });
    expect(errorOf(() => parseMark('0x3/0x1', 'mark')).message).toMatch(/invalid mark: .*value within mask/);
    expect(errorOf(() => parseMark('0x100000000', 'mark')).field).toBe('mark');
  });

  it('validates enums, ports, interfaces and addresses with one-line errors', () => {
    expect(errorOf(() => buildConfig({ mode: 'fast' })).message).toBe(
      'invalid mode: "fast" is not one of auto, serialize, edt, bpf-netem, iptables-netem, observe',
    );
    expect(errorOf(() => buildConfig({ dnsPort: '53,70000' })).message).toMatch(/invalid dnsPort: "70000" is not a port number \(1-65535\)/);
    expect(errorOf(() => buildConfig({ interfaces: 'veth*,bad/name' })).field).toBe('interfaces');
    expect(errorOf(() => buildConfig({ metricsAddress: '127.0.0.1' })).field).toBe('metricsAddress');
    expect(buildConfig({ metricsAddress: '[::1]:9000' }).metricsAddress).toEqual({ host: '::1', port: 9000 });
    expect(buildConfig({ interfaces: 'veth*, cali*,lxc*' }).interfaces).toEqual(['veth*', 'cali*', 'lxc*']);
  });

  it('validates the Kubernetes settings and the pin folder', () => {
    expect(buildConfig({ dnsServices: 'kube-system/kube-dns, kube-system/node-local-dns', nodeName: 'node-a.example', dnsServiceSelector: 'k8s-app=kube-dns,tier!=test', annotateNode: 'yes' })).toMatchObject({
      dnsServices: ['kube-system/kube-dns', 'kube-system/node-local-dns'],
      nodeName: 'node-a.example',
      dnsServiceSelector: 'k8s-app=kube-dns,tier!=test',
      annotateNode: true,
    });
    expect(errorOf(() => buildConfig({ dnsServices: 'kube-dns' })).message).toBe('invalid dnsServices: "kube-dns" is not namespace/name like kube-system/kube-dns');
    expect(errorOf(() => buildConfig({ configMap: 'a/b/c' })).field).toBe('configMap');
    expect(errorOf(() => buildConfig({ nodeName: 'Node_A' })).message).toMatch(/^invalid nodeName: "Node_A" is not a Kubernetes node name/);
    expect(errorOf(() => buildConfig({ dnsServiceSelector: 'k8s-app in (a)' })).field).toBe('dnsServiceSelector');
    expect(errorOf(() => buildConfig({ pinDir: '/sys/fs/bpf/../etc' })).message).toBe('invalid pinDir: "/sys/fs/bpf/../etc" is not a folder under /sys/fs/bpf/');
  });

  it('refuses a gap larger than the window', () => {
    expect(errorOf(() => buildConfig({ gap: '5ms', window: '1ms' })).field).toBe('gap');
  });

  it('rejects unknown file keys and non-mappings', () => {
    expect(errorOf(() => parseConfigText('polcy: pairs', 'c.yaml')).message).toMatch(/^invalid polcy: unknown setting in c.yaml/);
    expect(errorOf(() => parseConfigText('- a', 'c.yaml')).field).toBe('configFile');
    expect(errorOf(() => parseConfigText('{"a": ', 'c.json')).field).toBe('configFile');
  });

  it('maps flags and environment names to fields and back', () => {
    expect(flagToField('--dns-port')).toBe('dnsPort');
    expect(flagToField('--metrics-address')).toBe('metricsAddress');
    expect(flagToField('--nope')).toBeUndefined();
    expect(fieldToFlag('keepOnExit')).toBe('--keep-on-exit');
    expect(envToField('DNSPACER_DNS_CIDR')).toBe('dnsCidr');
    expect(fieldToEnv('metricsAddress')).toBe('DNSPACER_METRICS_ADDRESS');
  });

  it('knows which changes apply live and which need a restart', () => {
    const a = buildConfig();
    expect(restartNeeded(a, buildConfig({ gap: '10us', policy: 'aaaa', dnsPort: '53,5353' }))).toEqual([]);
    expect(restartNeeded(a, buildConfig({ mode: 'observe', placement: 'pod' }))).toEqual(['mode', 'placement']);
  });
});
