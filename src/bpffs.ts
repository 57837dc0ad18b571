// bpffs, where a program is pinned so that tc can take it by path. Many nodes mount
// it at boot; where not (this kind of CI machine), mount it once.
import fs from 'node:fs';
import { sh } from './netns.js';

export const BPFFS = '/sys/fs/bpf';

export function isBpffsMounted(dir = BPFFS): boolean {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => {
      const [, mountpoint, type] = l.split(' ');
      return mountpoint === dir && type === 'bpf';
    });
}

export async function ensureBpffs(dir = BPFFS): Promise<void> {
  if (isBpffsMounted(dir)) return;
  try {
    await sh('mount', ['-t', 'bpf', 'bpf', dir]);
  } catch (e) {
    throw new Error(`bpffs is not mounted at ${dir} and mounting it failed (${(e as Error).message}); mount it with: mount -t bpf bpf ${dir}`);
  }
}
