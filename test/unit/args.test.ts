import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/args.js';

const spec = { values: ['--dns-port', '--mode'], switches: ['--json', '--keep-on-exit'] };

describe('parseArgs', () => {
  it('reads values in both spellings, switches and positionals', () => {
    const p = parseArgs(['agent', '--dns-port', '53,5353', '--mode=edt', '--json', '--keep-on-exit=false', '--', '--x'], spec);
    expect(p.positional).toEqual(['agent', '--x']);
    expect(p.values.get('--dns-port')).toBe('53,5353');
    expect(p.values.get('--mode')).toBe('edt');
    expect([...p.switches]).toEqual(['--json']);
  });

  it('names an unknown option and the accepted ones in one line', () => {
    expect(() => parseArgs(['--mdoe', 'edt'], spec)).toThrow(
      'invalid mdoe: unknown option --mdoe; accepted: --dns-port, --json, --keep-on-exit, --mode',
    );
  });

  it('refuses an option without its value', () => {
    expect(() => parseArgs(['--mode'], spec)).toThrow('invalid mode: option --mode needs a value');
    expect(() => parseArgs(['--mode', '--json'], spec)).toThrow('invalid mode: option --mode needs a value');
  });
});
