import { expect } from 'vitest';
import { Pool } from 'undici';
import { hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from './gateway.js';

/** One answer read through a pinned connection. */
export interface PoolAnswer {
  readonly status: number;
  readonly text: string;
  /** The body parsed when it is a JSON object, else `{}`. */
  readonly body: Record<string, unknown>;
  /** The answer's `x-request-id`. */
  readonly id: string;
}

/** One call with a key over `pool` (a connection a test pinned to one worker). */
export async function poolCall(
  pool: Pool,
  method: 'GET' | 'PUT' | 'POST',
  path: string,
  key: string,
  body?: unknown,
): Promise<PoolAnswer> {
  const res = await pool.request({
    path,
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    text,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {},
    id: String(res.headers['x-request-id']),
  };
}

/**
 * Two keep-alive connections to `serve --workers 2`, each held by a different worker (told apart
 * by `/readyz`'s worker pid). The pools opened are pushed to `pools` for the test to destroy.
 */
export async function pinTwoWorkers(
  url: string,
  key: string,
  pools: Pool[],
): Promise<[Pool, Pool]> {
  const seen = new Map<number, Pool>();
  for (let i = 0; i < 20 && seen.size < 2; i++) {
    const pool = new Pool(url, { connections: 1, keepAliveTimeout: 120_000 });
    pools.push(pool);
    const r = await poolCall(pool, 'GET', '/readyz', key);
    const pid = (r.body['worker'] as { pid: number }).pid;
    if (!seen.has(pid)) seen.set(pid, pool);
  }
  const both = [...seen.values()];
  expect(both).toHaveLength(2);
  return [both[0]!, both[1]!];
}

/** The worker pid behind a pinned connection (`/readyz`'s worker). */
export async function workerPid(pool: Pool, key: string): Promise<number> {
  return ((await poolCall(pool, 'GET', '/readyz', key)).body['worker'] as { pid: number }).pid;
}

/**
 * A connection held by the worker that replaced a killed one: new connections go to the workers
 * in turn, so one lands on it soon after it serves. `known` are the pids of the killed worker and
 * of those that stayed up; undefined when none came within `waitMs`.
 */
export async function pinRestartedWorker(
  url: string,
  key: string,
  pools: Pool[],
  known: readonly number[],
  waitMs = 20_000,
): Promise<Pool | undefined> {
  for (const end = Date.now() + waitMs; Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 100));
    const pool = new Pool(url, { connections: 1, keepAliveTimeout: 120_000 });
    pools.push(pool);
    const pid = await workerPid(pool, key).catch(() => undefined);
    if (pid !== undefined && !known.includes(pid)) return pool;
  }
  return undefined;
}

/**
 * The config every `serve --workers 2` reliability test starts from: a long keep-alive (so each
 * pinned connection stays on its worker), tenant `acme` with an admin key, and no models. A test
 * adds what it exercises (`privacy`, `features`, `log`, ...).
 */
export function workersBaseConfig(adminKey: string) {
  return {
    server: { host: '127.0.0.1', port: 0, limits: { keep_alive_timeout_ms: 120_000 } },
    tenants: {
      acme: {
        keys: [{ id: 'admin', hash: hashKey(adminKey, TEST_SECRET), admin: true }],
        models: ['*'],
      },
    },
    models: {},
  };
}
