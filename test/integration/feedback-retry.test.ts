import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { call, errorCode, type Answer } from '../support/http-call.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * A `/v1/feedback` reward is never lost once the cost ledger has counted the feedback (#15): a
 * replica that did not serve the inference finds the exposure the reward goes to before the
 * ledger counts anything. While it cannot (the state store fails, or the serving replica has not
 * written the exposure yet), the answer is a retryable 503 and nothing is counted, so the
 * client's retry counts the outcome and credits the reward, once. Two in-process replicas share
 * a real store: one SQLite file, or PostgreSQL.
 */

const app = generateKey('sk');
/** B's `release.exposure_wait_s`. */
const LOST_AFTER_S = 3;
const ops = generateKey('sk');

interface Shared {
  readonly state: Record<string, unknown>;
  readonly log: Record<string, unknown>;
  /** Renames the exposures' table away (`away`) or back, as another client of the store. */
  rename(away: boolean): Promise<void>;
  close(): Promise<void>;
}

function sqliteShared(): Shared {
  const dir = mkdtempSync(join(tmpdir(), 'sy-feedback-retry-'));
  const path = join(dir, 'state.db');
  return {
    state: { sqlite: path },
    log: { path: join(dir, 'inference.db') },
    rename: (away) => {
      const db = new Database(path);
      try {
        db.exec(
          away
            ? 'ALTER TABLE rs_exposures RENAME TO rs_exposures_away'
            : 'ALTER TABLE rs_exposures_away RENAME TO rs_exposures',
        );
      } finally {
        db.close();
      }
      return Promise.resolve();
    },
    close: () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

function postgresShared(): Shared {
  const schema = freshSchema('sy_feedback_retry');
  return {
    state: { postgres: PG_URL, schema },
    log: { store: 'postgres', postgres_schema: schema },
    rename: async (away) => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(
          away
            ? `ALTER TABLE ${schema}.rs_exposures RENAME TO rs_exposures_away`
            : `ALTER TABLE ${schema}.rs_exposures_away RENAME TO rs_exposures`,
        );
      } finally {
        await c.end();
      }
    },
    close: async () => {
      const registry = await PostgresRegistryStore.open({ url: PG_URL, schema });
      await registry.dropSchema();
      await registry.close();
      const ledger = await PostgresCostLedger.open({ url: PG_URL, schema });
      await ledger.dropSchema();
      await ledger.close();
    },
  };
}

const pgSkip = await postgresSkip('feedback retries on PostgreSQL');
const stores: [string, () => Shared, boolean][] = [
  ['SQLite', sqliteShared, false],
  ['PostgreSQL', postgresShared, pgSkip !== false],
];

describe.each(stores)('feedback retried on a replica sharing %s (#15)', (_name, open, skip) => {
  let up: TestUpstream;
  let shared: Shared;
  let a: TestGateway; // serves the inferences
  let b: TestGateway; // takes their feedback

  beforeAll(async () => {
    if (skip) return;
    up = await startUpstream(
      json(200, chatCompletion('fine', { prompt_tokens: 5, completion_tokens: 1 })),
    );
    shared = open();
    const config = (releaseFlushMs: number, exposureWaitS = 300) => ({
      state: shared.state,
      // Records reach the shared log within 100 ms: the ledger's key is found at once.
      inference_log: { enabled: true, flush_ms: 100, ...shared.log },
      tenants: {
        acme: {
          keys: [
            { id: 'app', hash: hashKey(app, TEST_SECRET) },
            { id: 'ops', hash: hashKey(ops, TEST_SECRET), admin: true },
          ],
          models: ['*'],
        },
      },
      models: { big: openaiModel(up.url), small: openaiModel(up.url) },
      release: {
        flush_ms: releaseFlushMs,
        evaluate_ms: 60_000,
        poll_ms: 60_000,
        exposure_wait_s: exposureWaitS,
      },
      experiments: [
        {
          id: 'price-ab',
          slot: 'big',
          kind: 'ab',
          variants: [
            { name: 'control', model: 'big' },
            { name: 'treatment', model: 'small' },
          ],
        },
      ],
    });
    // A writes its exposures only when the test says so; B waits 100 ms + 0.5 s for one, and
    // takes an exposure still missing 3 s after its request for lost.
    a = await startTestGateway({ config: config(600_000) });
    b = await startTestGateway({ config: config(100, LOST_AFTER_S) });
  }, 30_000);

  afterAll(async () => {
    if (skip) return;
    await b?.close();
    await a?.close();
    await up?.close();
    await shared?.close();
  });

  const feedback = (gw: TestGateway, id: string): Promise<Answer> =>
    call(gw.url, 'POST', '/v1/feedback', app, { inference_id: id, reward: 1 });

  /** An inference A serves in the experiment: its id and variant. */
  async function serve(): Promise<{ id: string; variant: string }> {
    const r = await call(a.url, 'POST', '/v1/chat/completions', app, {
      model: 'big',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(r.status, r.text).toBe(200);
    const variant = /^exp:price-ab\/(control|treatment)$/.exec(
      String(r.headers['x-switchyard-release']),
    )?.[1];
    expect(variant).toBeDefined();
    return { id: String(r.headers['x-request-id']), variant: variant! };
  }

  /** Each variant's reward count in the shared store, once B has written its counters. */
  async function rewards(): Promise<Record<string, number>> {
    await b.gateway.runtime().release!.manager.flush();
    const r = await call(a.url, 'GET', '/admin/experiments/price-ab/stats', ops);
    expect(r.status, r.text).toBe(200);
    const out: Record<string, number> = {};
    for (const v of r.body['variants'] as {
      variant: string;
      metrics: Record<string, { n: number }>;
    }[])
      out[v.variant] = v.metrics['reward']?.n ?? 0;
    return out;
  }

  /** Outcomes the shared ledger counted, all arms together. */
  async function counted(): Promise<number> {
    const r = await call(a.url, 'GET', '/admin/costs?group_by=tenant', ops);
    expect(r.status, r.text).toBe(200);
    return (r.body['groups'] as { feedback: number }[]).reduce((n, g) => n + g.feedback, 0);
  }

  function expectRetryable(r: Answer): void {
    expect(r.status, r.text).toBe(503);
    expect(errorCode(r)).toBe('SY_ERR_FEEDBACK_STORE_FAILED');
    expect(r.headers['retry-after']).toBe('1'); // B's release.flush_ms, rounded up to 1 s
  }

  /** The retry counts and credits once; the same feedback after it, on either replica, neither. */
  async function retryCreditsOnce(id: string, variant: string, before: Record<string, number>) {
    const outcomes = await counted();
    const ok = await feedback(b, id);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body).toEqual({ accepted: true, experiment: 'price-ab', variant, recorded: true });
    for (const gw of [b, a]) {
      const again = await feedback(gw, id);
      expect(again.status, again.text).toBe(404);
      expect(errorCode(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
    }
    expect(await counted()).toBe(outcomes + 1);
    expect(await rewards()).toEqual({ ...before, [variant]: (before[variant] ?? 0) + 1 });
  }

  it.skipIf(skip)(
    'answers 503 with Retry-After, counting nothing, until the exposure is written; the retry credits once',
    async () => {
      const before = await rewards();
      const { id, variant } = await serve();
      // A holds the exposure in its buffer: B waits for it, bounded, then refuses retryably.
      const outcomes = await counted();
      expectRetryable(await feedback(b, id));
      expect(await counted()).toBe(outcomes);
      await a.gateway.runtime().release!.manager.flush();
      await retryCreditsOnce(id, variant, before);
    },
  );

  it.skipIf(skip)(
    'counts the outcome without the reward once the exposure is still missing release.exposure_wait_s after the request',
    async () => {
      const before = await rewards();
      const t0 = Date.now();
      const { id } = await serve();
      // A never writes the exposure (as if it died with it in its buffer): 503 while B may still
      // expect it...
      const outcomes = await counted();
      expectRetryable(await feedback(b, id));
      expect(await counted()).toBe(outcomes);
      // ...then, past the wait, the feedback counts, credits no experiment, and says so in a metric.
      await new Promise((r) =>
        setTimeout(r, Math.max(0, t0 + LOST_AFTER_S * 1000 + 200 - Date.now())),
      );
      const late = await feedback(b, id);
      expect(late.status, late.text).toBe(200);
      expect(late.body).toEqual({ accepted: true, recorded: true });
      expect(await counted()).toBe(outcomes + 1);
      expect(await rewards()).toEqual(before);
      const metrics = await call(b.url, 'GET', '/metrics', ops);
      expect(metrics.text).toMatch(/^switchyard_feedback_rewards_lost_total 1$/m);
      const again = await feedback(b, id);
      expect(errorCode(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      expect(await counted()).toBe(outcomes + 1);
    },
    20_000,
  );

  it.skipIf(skip)(
    'answers 503 with Retry-After, counting nothing, while the state store fails; the retry after it recovers credits once',
    async () => {
      const before = await rewards();
      const { id, variant } = await serve();
      await a.gateway.runtime().release!.manager.flush();
      const outcomes = await counted();
      await shared.rename(true);
      try {
        expectRetryable(await feedback(b, id));
      } finally {
        await shared.rename(false);
      }
      expect(await counted()).toBe(outcomes);
      await retryCreditsOnce(id, variant, before);
    },
  );
});
