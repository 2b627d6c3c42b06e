import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { FeatureEntry } from '../contracts/feature-source.js';
import { SqliteFeatureJournal } from './sqlite-feature-journal.js';

const T0 = 1_800_000_000_000;

const tier = (value: string, writtenAt: number, userId = 'u1'): FeatureEntry => ({
  feature: 'user.tier',
  entityId: 'u1',
  value,
  version: 1,
  label: 'public',
  userId,
  writtenAt,
});

/**
 * #17: with `serve --workers N` each worker writes every value to the one file, from its own
 * queue: two journals on one file stand for two workers whose transactions land in either order.
 */
describe('the SQLite feature journal written by several workers', () => {
  const dirs: string[] = [];
  const journals: SqliteFeatureJournal[] = [];
  afterEach(() => {
    for (const j of journals.splice(0)) j.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const two = (): [SqliteFeatureJournal, SqliteFeatureJournal] => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-journal-'));
    dirs.push(dir);
    const a = new SqliteFeatureJournal(join(dir, 'features.db'));
    const b = new SqliteFeatureJournal(join(dir, 'features.db'));
    journals.push(a, b);
    return [a, b];
  };
  const held = (j: SqliteFeatureJournal) => j.load(0).map((r) => r.entry.value);
  const put = (j: SqliteFeatureJournal, e: FeatureEntry) =>
    j.apply([{ tenant: 'acme', entityId: e.entityId, feature: e.feature, entry: e }]);

  it('keeps the newest value of a key whatever order the workers write it in', () => {
    const [a, b] = two();
    put(a, tier('gold', T0 + 1));
    put(b, tier('plus', T0));
    expect(held(a)).toEqual(['gold']);
    put(b, tier('basic', T0 + 2));
    expect(held(a)).toEqual(['basic']);
    // Two values of one millisecond: the one whose JSON sorts last, as in memory (`newer`).
    put(a, tier('plus', T0 + 5));
    put(b, tier('gold', T0 + 5));
    put(a, tier('plus', T0 + 5));
    expect(held(b)).toEqual(['plus']);
  });

  it('deletes a dropped value but not a newer one another worker wrote meanwhile', () => {
    const [a, b] = two();
    put(a, tier('gold', T0 + 10));
    b.apply([{ tenant: 'acme', entityId: 'u1', feature: 'user.tier', entry: null, upTo: T0 }]);
    expect(held(a)).toEqual(['gold']);
    b.apply([{ tenant: 'acme', entityId: 'u1', feature: 'user.tier', entry: null, upTo: T0 + 10 }]);
    expect(held(a)).toEqual([]);
  });

  it("purges a user's values written up to the purge, not the ones written after it", () => {
    const [a, b] = two();
    put(a, tier('gold', T0 + 10));
    b.purgeUser('acme', 'u1', undefined, T0 + 5);
    expect(held(a)).toEqual(['gold']);
    b.purgeUser('acme', 'u1', undefined, T0 + 10);
    expect(held(a)).toEqual([]);
    put(a, tier('plus', T0 + 20));
    b.purgeUser('acme', 'u1');
    expect(held(a)).toEqual([]);
  });
});
