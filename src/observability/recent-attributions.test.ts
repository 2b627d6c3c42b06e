import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { CostKey } from '../contracts/cost-ledger.js';
import { requestId } from '../core/ids.js';
import { RecentAttributions } from './cost-recorder.js';

const key = (tenant: string): CostKey => ({
  day: '2026-12-07',
  tenant,
  journey: '',
  model: '',
  trafficClass: 'interactive',
  experiment: '',
  arm: '',
});

describe('RecentAttributions', () => {
  it('remembers the last `capacity` requests, the oldest forgotten first, across many laps', () => {
    const a = key('a');
    const b = key('b');
    const recent = new RecentAttributions(3);
    for (let i = 0; i < 10; i++) recent.add(`r${i}`, i % 2 === 0 ? a : b, 1000 + i);
    expect(recent.size).toBe(3);
    for (let i = 0; i < 7; i++) expect(recent.get(`r${i}`)).toBeUndefined();
    expect(recent.get('r7')).toEqual({ key: b, at: 1007 });
    expect(recent.get('r8')).toEqual({ key: a, at: 1008 });
    expect(recent.get('r9')).toEqual({ key: b, at: 1009 });
    expect(recent.get('r8')!.key).toBe(a); // the row's own object, not a copy
  });

  it('keeps the latest of a repeated id in its place, and what came after it intact', () => {
    const recent = new RecentAttributions(3);
    recent.add('x', key('a'), 1);
    recent.add('y', key('a'), 2);
    recent.add('x', key('b'), 3); // a client reused its x-request-id
    expect(recent.get('x')).toEqual({ key: key('b'), at: 3 });
    recent.add('z', key('a'), 4);
    recent.add('w', key('a'), 5); // full: x (the oldest entry) goes, its slot is w's
    expect(recent.get('x')).toBeUndefined();
    expect(recent.get('y')).toEqual({ key: key('a'), at: 2 });
    expect(recent.get('z')).toEqual({ key: key('a'), at: 4 });
    expect(recent.get('w')).toEqual({ key: key('a'), at: 5 });
  });

  it('holds ~45 bytes of heap per remembered request beyond its id (a Map of { key, at }: ~80)', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const n = 50_000;
    const rows = [key('a'), key('b'), key('c')];
    const ids = Array.from({ length: n }, () => requestId());
    const now = Date.now();
    gc();
    const before = process.memoryUsage().heapUsed;
    const recent = new RecentAttributions(n);
    for (let i = 0; i < n; i++) recent.add(ids[i]!, rows[i % 3]!, now + i);
    gc();
    const perRequest = (process.memoryUsage().heapUsed - before) / n;
    expect(recent.size).toBe(n);
    // The ids are counted apart (made before): this is what remembering costs beyond them.
    expect(perRequest).toBeLessThan(60);
  });
});
