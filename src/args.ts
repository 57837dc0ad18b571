// Command-line parsing: `--name value`, `--name=value`, boolean switches. Pure.
import { ConfigError } from './config.js';

export interface ArgSpec {
  /** flags that take a value, e.g. "--dns-port" */
  values: readonly string[];
  /** flags that take none, e.g. "--json" */
  switches: readonly string[];
}

export interface ParsedArgs {
  values: Map<string, string>;
  switches: Set<string>;
  positional: string[];
}

export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const out: ParsedArgs = { values: new Map(), switches: new Set(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (spec.switches.includes(name)) {
      if (eq >= 0) {
        const v = arg.slice(eq + 1);
        if (!['true', 'false'].includes(v)) throw new ConfigError(name.slice(2), `"${v}" is not true or false`);
        if (v === 'true') out.switches.add(name);
      } else out.switches.add(name);
      continue;
    }
    if (!spec.values.includes(name)) {
      const known = [...spec.values, ...spec.switches].sort().join(', ');
      throw new ConfigError(name.slice(2) || arg, `unknown option ${name}; accepted: ${known}`);
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined || (eq < 0 && value.startsWith('--'))) {
      throw new ConfigError(name.slice(2), `option ${name} needs a value`);
    }
    out.values.set(name, value);
  }
  return out;
}
