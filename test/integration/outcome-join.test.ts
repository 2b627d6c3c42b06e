import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CostKey } from '../../src/contracts/cost-ledger.js';
import { systemClock } from '../../src/core/clock.js';
import { OutcomeJoin } from '../../src/observability/outcome-join.js';
import { SqliteCostLedger } from '../../src/state/sqlite-cost-ledger.js';
import { SqliteInferenceLog } from '../../src/state/sqlite-inference-log.js';
import { call, request } from '../contract/inference-log.contract.js';

/**
 * How `/v1/feedback` finds a request's cost key (#15): in this replica's memory, else in the
 * shared inference log (by the caller's tenant), waiting a bounded time for a record still in the
 * serving replica's buffer. Real SQLite stores: the log and the ledger other replicas share.
 */

const DAY = 86_400_000;
const MIDNIGHT = Date.UTC(2026, 11, 7); // 2026-12-07T00:00Z

describe('outcome join (#15)', () => {
  let dir: string | undefined;
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function open(
    flushMs = 0,
    local: (t: string, id: string) => { key: CostKey; at: number } | undefined = () => undefined,
  ) {
    dir = mkdtempSync(join(tmpdir(), 'sy-outcome-'));
    const log = SqliteInferenceLog.open(join(dir, 'inference.db'));
    const ledger = SqliteCostLedger.open(join(dir, 'costs.db'));
    closers.push(
      () => log.close(),
      () => ledger.close(),
    );
    const join_ = new OutcomeJoin({
      store: ledger,
      clock: systemClock,
      local,
      log: () => ({ reader: log, flushMs }),
    });
    return { log, ledger, join: join_ };
  }

  it("finds a request another replica served in the shared log, by the caller's tenant only", async () => {
    const { log, ledger, join: j } = open();
    await log.append(
      [
        request('r1', MIDNIGHT + 5_000, {
          journey: 'support',
          model: 'journey:support',
          trafficClass: 'personalization',
          experiments: ['price-ab/treatment', 'other/x'],
        }),
      ],
      [call('r1', MIDNIGHT + 4_000)],
    );
    expect(await j.record('beta', 'r1', 1)).toBe('unknown');
    expect(await j.record('acme', 'r1', 1)).toBe('counted');
    expect(await j.record('acme', 'r1', 0)).toBe('duplicate');
    const arms = await ledger.totals({ groupBy: 'arm' });
    expect(arms.map((g) => [g.key, g.feedback, g.conversions])).toEqual([
      ['price-ab/treatment', 1, 1],
    ]);
    const rows = await ledger.totals({ groupBy: 'class' });
    expect(rows.map((g) => g.key)).toEqual(['personalization']);
    expect((await ledger.totals({ groupBy: 'journey' })).map((g) => g.key)).toEqual(['support']);
    expect((await ledger.totals({ groupBy: 'day' })).map((g) => g.key)).toEqual(['2026-12-07']);
    expect(await ledger.totals({ groupBy: 'tenant', tenant: 'beta' })).toEqual([]);
  });

  it('peeks at the cost key and whether the outcome is counted, counting nothing', async () => {
    const { log, ledger, join: j } = open();
    await log.append(
      [request('r1', MIDNIGHT + 5_000, { experiments: ['price-ab/treatment'] })],
      [call('r1', MIDNIGHT + 4_000)],
    );
    expect(await j.peek('beta', 'r1')).toEqual({ counted: false });
    const seen = await j.peek('acme', 'r1');
    expect(seen).toMatchObject({
      counted: false,
      key: { tenant: 'acme', experiment: 'price-ab', arm: 'treatment' },
      at: MIDNIGHT + 5_000, // when the request ended, from its record
    });
    expect(await ledger.totals({ groupBy: 'tenant' })).toEqual([]);
    // The claim takes the key peeked at: the log is not read again (it is gone here).
    await log.close();
    expect(await j.claim('acme', 'r1', 1, undefined, seen)).toMatchObject({ result: 'counted' });
    expect(await j.claim('acme', 'r1', 1, undefined, seen)).toMatchObject({ result: 'duplicate' });
    const arms = await ledger.totals({ groupBy: 'arm' });
    expect(arms.map((g) => [g.key, g.feedback])).toEqual([['price-ab/treatment', 1]]);
    // Now the peek says so, from any replica sharing the ledger.
    const other = new OutcomeJoin({
      store: ledger,
      clock: systemClock,
      local: (t, id) => (t === 'acme' && id === 'r1' ? { key: seen.key!, at: 1 } : undefined),
      log: () => undefined,
    });
    expect(await other.peek('acme', 'r1')).toEqual({ key: seen.key, counted: true, at: 1 });
    await ledger.close();
    await expect(other.peek('acme', 'r1')).rejects.toMatchObject({
      code: 'SY_ERR_FEEDBACK_STORE_FAILED',
    });
  });

  it('files a request that spanned midnight under the day of its first model call', async () => {
    const { log, ledger, join: j } = open();
    await log.append(
      [
        request('late', MIDNIGHT + 1_000, { durationMs: 5_000 }),
        request('shadowed', MIDNIGHT + 1_000, { durationMs: 5_000, tenant: 'beta' }),
      ],
      [
        call('late', MIDNIGHT - 2_000),
        call('late', MIDNIGHT + 500),
        // A shadow copy is not the request's own call: its row is the day of the live call.
        call('shadowed', MIDNIGHT - 3_000, { origin: 'shadow', tenant: 'beta' }),
        call('shadowed', MIDNIGHT + 200, { tenant: 'beta' }),
      ],
    );
    expect(await j.record('acme', 'late', 1)).toBe('counted');
    expect(await j.record('beta', 'shadowed', 1)).toBe('counted');
    const days = await ledger.totals({ groupBy: 'day' });
    expect(days.map((g) => [g.key, g.feedback])).toEqual([
      [new Date(MIDNIGHT - DAY).toISOString().slice(0, 10), 1],
      ['2026-12-07', 1],
    ]);
    const late = await ledger.totals({ groupBy: 'day', tenant: 'acme' });
    expect(late.map((g) => g.key)).toEqual(['2026-12-06']);
  });

  it('knows no cost key for a request that called no model and ran no journey', async () => {
    const { log, join: j } = open();
    await log.append([request('refused', MIDNIGHT, { versions: [], status: 429 })], []);
    expect(await j.record('acme', 'refused', 1)).toBe('unknown');
  });

  it("takes the key from this replica's memory without reading the log", async () => {
    const key: CostKey = {
      day: '2026-12-06',
      tenant: 'acme',
      journey: 'ask',
      model: '',
      trafficClass: 'interactive',
      experiment: '',
      arm: '',
    };
    const { ledger, join: j } = open(0, (t, id) =>
      t === 'acme' && id === 'mem' ? { key, at: 1 } : undefined,
    );
    expect(await j.record('acme', 'mem', 0)).toBe('counted');
    expect(await j.record('acme', 'mem', 0)).toBe('duplicate');
    const t = await ledger.totals({ groupBy: 'journey' });
    expect(t.map((g) => [g.key, g.feedback, g.conversions])).toEqual([['ask', 1, 0]]);
  });

  it('waits for a record that lands within the flush interval, and no longer', async () => {
    const { log, join: j } = open(300);
    const pending = j.record('acme', 'slow', 1);
    // The serving replica writes its buffer 150 ms later.
    await new Promise((r) => setTimeout(r, 150));
    await log.append([request('slow', Date.now())], [call('slow', Date.now())]);
    expect(await pending).toBe('counted');
    const started = Date.now();
    expect(await j.record('acme', 'never', 1)).toBe('unknown');
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(750); // flush_ms + 500 ms margin
    expect(waited).toBeLessThan(2_000);
  });

  it('stops waiting when the client goes away', async () => {
    const { join: j } = open(3_000);
    const gone = new AbortController();
    const started = Date.now();
    setTimeout(() => gone.abort(), 100);
    expect(await j.record('acme', 'never', 1, gone.signal)).toBe('unknown');
    expect(Date.now() - started).toBeLessThan(1_000); // not flush_ms + 500 ms
  });

  it('fails with SY_ERR_FEEDBACK_STORE_FAILED, counting nothing, when a store fails', async () => {
    const { log, ledger, join: j } = open();
    await log.append([request('r', MIDNIGHT)], [call('r', MIDNIGHT)]);
    await ledger.close(); // the ledger's database is gone
    await expect(j.record('acme', 'r', 1)).rejects.toMatchObject({
      code: 'SY_ERR_FEEDBACK_STORE_FAILED',
    });
    await log.close();
    await expect(j.record('acme', 'other', 1)).rejects.toMatchObject({
      code: 'SY_ERR_FEEDBACK_STORE_FAILED',
    });
  });

  it('answers at once, unknown, when the inference log is off', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sy-outcome-'));
    const ledger = SqliteCostLedger.open(join(dir, 'costs.db'));
    closers.push(() => ledger.close());
    const j = new OutcomeJoin({
      store: ledger,
      clock: systemClock,
      local: () => undefined,
      log: () => undefined,
    });
    const started = Date.now();
    expect(await j.record('acme', 'anything', 1)).toBe('unknown');
    expect(Date.now() - started).toBeLessThan(100);
  });
});
