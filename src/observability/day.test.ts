import { describe, expect, it } from 'vitest';
import { dayOf } from './cost-recorder.js';

describe('dayOf', () => {
  it('names the UTC day of any instant, across day boundaries in both directions', () => {
    const midnight = Date.UTC(2026, 11, 6);
    expect(dayOf(midnight)).toBe('2026-12-06');
    expect(dayOf(midnight - 1)).toBe('2026-12-05');
    expect(dayOf(midnight + 86_400_000 - 1)).toBe('2026-12-06');
    expect(dayOf(midnight + 86_400_000)).toBe('2026-12-07');
    expect(dayOf(midnight - 1)).toBe('2026-12-05');
    expect(dayOf(Date.UTC(2024, 1, 29, 12))).toBe('2024-02-29');
  });
});
