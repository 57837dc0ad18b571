import { describe, expect, it } from 'vitest';
import { chooseMode, UnsupportedError, whyNot, type Capabilities, type Environment } from '../../src/modes.js';

const yes = { ok: true };
const no = (reason: string) => ({ ok: false, reason });

/** This machine's kernel as measured: BPF, clsact, IFB and mirred; no fq, prio, netem, fw. */
function hostKernel(): Capabilities {
  return {
    bpf: yes,
    clsact: yes,
    clsBpf: yes,
    fq: no('sch_fq is not in this kernel'),
    prio: no('sch_prio is not in this kernel'),
    netem: no('sch_netem is not in this kernel'),
    fw: no('cls_fw is not in this kernel'),
    ifb: yes,
    mirred: yes,
    setTstamp: yes,
    serializeRedirect: yes,
    serializeMirred: yes,
    iptablesMatches: yes,
  };
}

function stockKernel(): Capabilities {
  return { ...hostKernel(), fq: yes, prio: yes, netem: yes, fw: yes, serializeRedirect: no('redirected packets were lost') };
}

const daemonSet: Environment = { canEnterNetns: false, hasDevices: false };
const privileged: Environment = { canEnterNetns: true, hasDevices: true };

describe('chooseMode', () => {
  it('prefers serialize at host placement, which needs no pod namespaces', () => {
    const c = chooseMode('auto', 'auto', hostKernel(), daemonSet);
    expect(c).toMatchObject({ mode: 'serialize', placement: 'host', serializeVia: 'redirect', passedOver: [] });
  });

  it('uses mirred where redirect into the IFB loses packets', () => {
    expect(chooseMode('auto', 'auto', stockKernel(), daemonSet).serializeVia).toBe('classify');
  });

  it('falls back to edt in pods when no IFB path works, and says why', () => {
    const caps = { ...stockKernel(), ifb: no('ifb: Unknown device type') };
    const c = chooseMode('auto', 'auto', caps, privileged);
    expect(c.mode).toBe('edt');
    expect(c.placement).toBe('pod');
    expect(c.passedOver[0]).toEqual({ mode: 'serialize', placement: 'host', reason: 'ifb: Unknown device type' });
    expect(c.reason).toMatch(/serialize@host: ifb: Unknown device type/);
  });

  it('falls back to bpf-netem without fq, to iptables-netem without BPF, to observe at last', () => {
    const noIfb = { ...stockKernel(), ifb: no('no ifb') };
    expect(chooseMode('auto', 'auto', { ...noIfb, fq: no('no fq') }, privileged).mode).toBe('bpf-netem');
    const noBpf = { ...noIfb, bpf: no('loading BPF needs CAP_BPF or root') };
    expect(chooseMode('auto', 'auto', noBpf, privileged)).toMatchObject({ mode: 'iptables-netem', placement: 'pod' });
    const nothing = { ...hostKernel(), ifb: no('no ifb') };
    expect(chooseMode('auto', 'auto', nothing, daemonSet)).toMatchObject({ mode: 'observe', placement: 'host' });
  });

  it('refuses a forced mode the kernel cannot do, naming the missing feature', () => {
    expect(() => chooseMode('edt', 'pod', hostKernel(), privileged)).toThrowError(
      new UnsupportedError('mode edt cannot run at placement pod: sch_fq is not in this kernel'),
    );
    expect(() => chooseMode('bpf-netem', 'auto', hostKernel(), privileged)).toThrow(/at pod: sch_prio is not in this kernel; at device: sch_prio/);
    expect(() => chooseMode('serialize', 'pod', hostKernel(), privileged)).toThrow(/serialize works only at placement host/);
  });

  it('honours a forced placement in auto mode', () => {
    expect(chooseMode('auto', 'pod', stockKernel(), privileged)).toMatchObject({ mode: 'edt', placement: 'pod' });
    expect(chooseMode('auto', 'device', hostKernel(), privileged)).toMatchObject({ mode: 'observe', placement: 'device' });
  });

  it('refuses pod placement without access to pod namespaces and edt at host without set_tstamp', () => {
    expect(whyNot('edt', 'pod', stockKernel(), daemonSet)).toMatch(/CAP_SYS_ADMIN/);
    expect(whyNot('edt', 'host', { ...stockKernel(), setTstamp: no('no bpf_skb_set_tstamp') }, daemonSet)).toMatch(
      /departure time to survive into the IFB: no bpf_skb_set_tstamp/,
    );
    expect(whyNot('edt', 'host', stockKernel(), daemonSet)).toBeUndefined();
  });
});
