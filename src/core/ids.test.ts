import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { requestId } from './ids.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap bytes per id while `n` ids made by `make` are held in a Map. */
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

  it('makes random version-4 UUIDs, 256 and more in a row (across a refill of its pool)', () => {
    const ids = new Set<string>();
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (let i = 0; i < 1000; i++) {
      const id = requestId();
      expect(id).toMatch(uuid);
      ids.add(id);
    }
    expect(ids.size).toBe(1000);
    // Every hex digit shows up in every free position: the bytes are used, not a fixed pattern.
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (const id of ids) for (let i = 0; i < 36; i++) seen[i]!.add(id[i]!);
    const free = [...Array(36).keys()].filter((i) => ![8, 13, 14, 18, 19, 23].includes(i));
    for (const i of free) expect(seen[i]!.size, `position ${i}`).toBe(16);
  });

  it('makes ids that cost little heap while held (a fresh UUID string holds ~520 bytes)', () => {
    // A flat 36-character string (56 bytes) and its map entry (~40); a slice of a flattened
    // UUID held ~120, the UUID itself ~520.
    const ours = heldBytesPerId(() => requestId(), 20_000);
    expect(ours).toBeLessThan(110);
  });
});
