import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { Clock } from '../../src/core/clock.js';
import { loadValidConfig } from '../../src/wiring/validate-config.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { call } from '../support/http-call.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

// Issue #15: each `inference_log` knob has a test here (or in inference-log.test.ts) that fails
// when the knob does nothing.

let up: TestUpstream;
beforeAll(async () => {
  up = await startUpstream(json(200, chatCompletion('ok')));
});
afterAll(() => up.close());

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'test.yaml', '/tmp');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

const config = (log: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  models: { chat: openaiModel(up.url) },
  inference_log: { enabled: true, flush_ms: 60_000, ...log },
  ...extra,
});

const chat = (gw: TestGateway, content = 'q') =>
  call(gw.url, 'POST', '/v1/chat/completions', gw.key, {
    model: 'chat',
    messages: [{ role: 'user', content }],
  });

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const until = Date.now() + 5_000;
  let v = await read();
  while (!ok(v) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
    v = await read();
  }
  return v;
}

describe('inference_log config', () => {
  it('refuses payload rules for unknown tenants and journeys, and postgres without a URL', () => {
    const out = problems(`
tenants: { acme: { models: ['*'] } }
inference_log:
  store: postgres
  payloads:
    ghost: { direct: true }
    acme: { journeys: [nowhere, '*'] }
`);
    expect(out).toEqual(
      expect.arrayContaining([
        'inference_log.payloads.ghost: unknown tenant "ghost"',
        'inference_log.payloads.acme.journeys[0]: unknown journey "nowhere"',
        'inference_log.postgres: store: postgres needs inference_log.postgres or state.postgres',
      ]),
    );
    expect(out).toHaveLength(3);
    expect(problems('inference_log: { buffer_size: 0 }')).toEqual([
      expect.stringMatching(/^inference_log\.buffer_size: /),
    ]);
    expect(problems('inference_log: { retention: { max_days: 3 } }')).toEqual([
      'inference_log.retention.max_days: unknown key',
    ]);
  });

  it('config check refuses an inference_log.path that is not a SQLite file', async () => {
    const gw = await startTestGateway({ config: config({ enabled: false }) });
    try {
      writeFileSync(join(gw.dir, 'junk.db'), 'not a database');
      gw.writeConfig(config({ path: 'junk.db' }));
      await expect(loadValidConfig(gw.configPath)).rejects.toThrow(/inference_log\.path/);
      gw.writeConfig(config({ enabled: false, path: 'junk.db' }));
      await expect(loadValidConfig(gw.configPath)).resolves.toBeDefined();
    } finally {
      await gw.close();
    }
  });

  it('retention.max_rows keeps the newest requests, run every retention.interval_ms', async () => {
    const gw = await startTestGateway({
      config: config({ retention: { max_rows: 2, max_age_s: 0, interval_ms: 30 } }),
    });
    try {
      for (let i = 0; i < 5; i++) await chat(gw, `q${i}`);
      const log = gw.gateway.runtime().inferenceLog!;
      const page = await eventually(
        () => log.query(),
        (p) => p.records.length === 2,
      );
      expect(page.records).toHaveLength(2);
    } finally {
      await gw.close();
    }
  });

  it('retention.max_bytes keeps what fits', async () => {
    const gw = await startTestGateway({
      config: config({ retention: { max_rows: 0, max_age_s: 0, max_bytes: 1, interval_ms: 30 } }),
    });
    try {
      for (let i = 0; i < 3; i++) await chat(gw);
      const log = gw.gateway.runtime().inferenceLog!;
      // No record fits in one byte: all go.
      const page = await eventually(
        () => log.query(),
        (p) => p.records.length === 0,
      );
      expect(page.records).toEqual([]);
    } finally {
      await gw.close();
    }
  });

  it('retention.max_age_s deletes records older than the bound by the wall clock', async () => {
    let offset = 0;
    const clock: Clock = { now: () => performance.now(), wall: () => Date.now() + offset };
    const gw = await startTestGateway({
      config: config({ retention: { max_age_s: 3600, max_rows: 0, interval_ms: 30 } }),
      options: { clock },
    });
    try {
      await chat(gw, 'old');
      const log = gw.gateway.runtime().inferenceLog!;
      await new Promise((r) => setTimeout(r, 100));
      expect((await log.query()).records).toHaveLength(1); // young enough: kept
      offset = 2 * 3600 * 1000;
      await chat(gw, 'new');
      const page = await eventually(
        () => log.query(),
        (p) => p.records.length === 1,
      );
      expect(page.records).toHaveLength(1);
      expect(page.records[0]!.at).toBeGreaterThan(Date.now() + 3600 * 1000);
    } finally {
      await gw.close();
    }
  });

  it('export.jsonl appends every written batch and rotates at export.max_bytes, keeping export.keep', async () => {
    const gw = await startTestGateway({
      config: config({
        flush_ms: 20,
        export: { jsonl: 'out/log.jsonl', max_bytes: 1000, keep: 2 },
      }),
    });
    const file = join(gw.dir, 'out', 'log.jsonl');
    try {
      for (let i = 0; i < 8; i++) {
        await chat(gw, `q${i}`);
        await gw.gateway.runtime().inferenceLog!.query(); // one batch per request
      }
      await gw.gateway.close();
      const lines = [file, `${file}.1`, `${file}.2`]
        .filter((f) => existsSync(f))
        .flatMap((f) => readFileSync(f, 'utf8').trim().split('\n'))
        .map((l) => JSON.parse(l) as { kind: string; id?: string });
      expect(existsSync(`${file}.1`)).toBe(true);
      expect(existsSync(`${file}.2`)).toBe(true);
      expect(existsSync(`${file}.3`)).toBe(false); // keep: 2
      expect(readFileSync(file).length).toBeLessThanOrEqual(1000);
      // The newest batches are all there, each a call and a request.
      expect(lines.filter((l) => l.kind === 'request').length).toBeGreaterThan(0);
      expect(lines.filter((l) => l.kind === 'request').length).toBe(
        lines.filter((l) => l.kind === 'call').length,
      );
    } finally {
      await gw.close();
    }
  });
});

const skipPg = await postgresSkip('the inference log on PostgreSQL');
describe.skipIf(skipPg !== false)('inference_log.store: postgres', () => {
  it('writes records to inference_log.postgres in inference_log.postgres_schema', async () => {
    const schema = freshSchema('sy_il');
    const gw = await startTestGateway({
      config: config({ store: 'postgres', postgres: PG_URL, postgres_schema: schema }),
    });
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const a = await chat(gw);
      await gw.gateway.close();
      const r = await client.query<{ id: string }>(
        `SELECT id FROM ${schema}.sy_inference_requests`,
      );
      expect(r.rows.map((x) => x.id)).toEqual([a.headers['x-request-id']]);
      expect(existsSync(join(gw.dir, 'var', 'inference.db'))).toBe(false);
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
      await gw.close();
    }
  });
});
