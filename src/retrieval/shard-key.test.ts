import { describe, expect, it } from 'vitest';
import { filterForKey } from './shard-key.js';

describe('filterForKey', () => {
  const key = { tier: 'warm' as const, geos: ['de'], entityTypes: ['item'] };

  it('drops the geo and entity-type clauses the shard key already guarantees', () => {
    expect(filterForKey(key, { geos: ['de', 'fr'], entityTypes: ['item'] })).toBeUndefined();
    expect(filterForKey(key, { geos: ['de'], labels: ['public'] })).toEqual({
      labels: ['public'],
    });
  });

  it('keeps clauses the key does not imply, and every privacy clause', () => {
    const f = {
      geos: ['fr'],
      entityTypes: ['user'],
      jurisdictions: ['eu'],
      excludeUserIds: ['u1'],
    };
    expect(filterForKey(key, f)).toBe(f);
    // A key without geos guarantees nothing about geo.
    expect(filterForKey({ tier: 'hot' }, { geos: ['de'] })).toEqual({ geos: ['de'] });
    expect(filterForKey(key, { geos: ['de'], jurisdictions: ['eu'], userIds: ['u2'] })).toEqual({
      jurisdictions: ['eu'],
      userIds: ['u2'],
    });
  });
});
