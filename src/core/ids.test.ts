import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { requestId } from './ids.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap bytes per id while `n` ids made by `make` are held in a Map, as the cost ledger holds them. */
function heldBytesPerId(make: () => string, n: number): number {
  gc();
  const before = process.memoryUsage().heapUsed;
  const held = new Map<string, number>();
  for (let i = 0; i < n; i++) held.set(make(), i);
  gc();
  const bytes = process.memoryUsage().heapUsed - before;
  expect(held.size).toBe(n);
  return bytes / n;
}

describe('requestId', () => {
  it('keeps a plain client id and makes a UUID otherwise', () => {
    expect(requestId('order-42:retry.1')).toBe('order-42:retry.1');
    expect(requestId('has space')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    expect(requestId(['a', 'b'])).not.toBe('a');
    expect(requestId()).not.toBe(requestId());
  });

  it('makes ids that cost little heap while held (a fresh UUID string holds ~520 bytes)', () => {
    const ours = heldBytesPerId(() => requestId(), 20_000);
    expect(ours).toBeLessThan(200);
  });
});
