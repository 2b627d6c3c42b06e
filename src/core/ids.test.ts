import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import {
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ROOT_CONTEXT, SpanKind } from '@opentelemetry/api';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { requestId, traceId } from './ids.js';

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

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** The Unix milliseconds of a version-7 UUID. */
const msOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

afterEach(() => vi.restoreAllMocks());

describe('requestId', () => {
  it('keeps a plain client id and makes a UUID otherwise', () => {
    expect(requestId('order-42:retry.1')).toBe('order-42:retry.1');
    expect(requestId('has space')).toMatch(V7);
    expect(requestId(['a', 'b'])).not.toBe('a');
    expect(requestId()).not.toBe(requestId());
  });

  it('makes version-7 UUIDs that carry the time and sort in the order they were made', () => {
    const before = Date.now();
    const ids: string[] = [];
    // Long enough to cross milliseconds and several refills of the random pool.
    while (ids.length < 5000 || Date.now() - before < 5) ids.push(requestId());
    const after = Date.now();
    for (const id of ids) {
      expect(id).toMatch(V7);
      expect(msOf(id)).toBeGreaterThanOrEqual(before);
      expect(msOf(id)).toBeLessThanOrEqual(after);
    }
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!, `id ${i}`).toBe(true);
    expect(new Set(ids.map(msOf)).size).toBeGreaterThan(1);
    // Every hex digit shows up in every random position: the bytes are used, not a pattern.
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (const id of ids) for (let i = 0; i < 36; i++) seen[i]!.add(id[i]!);
    for (const i of [20, 21, 22, ...Array.from({ length: 12 }, (_, k) => 24 + k)])
      expect(seen[i]!.size, `position ${i}`).toBe(16);
  });

  it('keeps the order within one millisecond and when the clock goes back', () => {
    const t = Date.now() + 10_000_000;
    const now = vi.spyOn(Date, 'now').mockReturnValue(t);
    const ids: string[] = [];
    for (let i = 0; i < 5000; i++) ids.push(requestId());
    // The 12-bit counter starts below 2048: a millisecond holds 2048 to 4096 ids, then the
    // next one is borrowed.
    const inFirst = ids.filter((id) => msOf(id) === t).length;
    expect(inFirst).toBeGreaterThanOrEqual(2048);
    expect(inFirst).toBeLessThanOrEqual(4096);
    expect(msOf(ids.at(-1)!)).toBe(t + 1);
    now.mockReturnValue(t - 60_000);
    for (let i = 0; i < 100; i++) ids.push(requestId());
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!, `id ${i}`).toBe(true);
  });

  it('makes ids that cost little heap while held (a fresh UUID string holds ~520 bytes)', () => {
    // A flat 36-character string (56 bytes) and its map entry (~40); a slice of a flattened
    // UUID held ~120, the UUID itself ~520.
    const ours = heldBytesPerId(() => requestId(), 20_000);
    expect(ours).toBeLessThan(110);
  });
});

describe('traceId', () => {
  it('starts with the time in seconds, then 96 random bits', () => {
    const before = Math.floor(Date.now() / 1000);
    const ids = Array.from({ length: 2000 }, () => traceId());
    const after = Math.floor(Date.now() / 1000);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      const s = parseInt(id.slice(0, 8), 16);
      expect(s).toBeGreaterThanOrEqual(before);
      expect(s).toBeLessThanOrEqual(after);
    }
    const seen = Array.from({ length: 32 }, () => new Set<string>());
    for (const id of ids) for (let i = 8; i < 32; i++) seen[i]!.add(id[i]!);
    for (let i = 8; i < 32; i++) expect(seen[i]!.size, `position ${i}`).toBe(16);
  });

  it('keeps head sampling fair: a 0.25 ratio samples a quarter of new traces', () => {
    const sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.25) });
    let sampled = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const d = sampler.shouldSample(ROOT_CONTEXT, traceId(), 'x', SpanKind.SERVER, {}, []);
      if (d.decision === SamplingDecision.RECORD_AND_SAMPLED) sampled++;
    }
    // Binomial(20000, 0.25): the standard deviation is ~61, so ±600 is ~10 of them.
    expect(Math.abs(sampled - n / 4)).toBeLessThan(600);
  });
});
