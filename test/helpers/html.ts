// A strict-enough HTML checker for the lab report.
import { expect } from 'vitest';

/** Every element closed in order, attributes quoted, no stray '<': enough to catch broken markup. */
export function assertWellFormed(html: string): void {
  const voids = new Set(['meta', 'br', 'hr', 'img', 'input', 'link']);
  const stack: string[] = [];
  const body = html.replace(/^<!DOCTYPE html>\s*/i, '');
  const tag = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9-:]*(?:="[^"<]*")?)*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    expect(body.slice(last, m.index)).not.toMatch(/[<>]/);
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    const lower = name!.toLowerCase();
    if (closing) expect(stack.pop(), `closing </${lower}>`).toBe(lower);
    else if (!selfClosing && !voids.has(lower)) stack.push(lower);
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
}
