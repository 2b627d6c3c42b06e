import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool, request } from 'undici';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from '../support/gateway.js';
import { pinRestartedWorker } from '../support/worker-pools.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import {
  chatCompletion,
  delayed,
  json,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #17 part 5: `switchyard serve --workers 2` keeps every guarantee of one process. The gateway is
 * the built bin (a node:cluster primary and two worker processes); each check goes through a
 * connection pinned to one worker and reads through another pinned to the other, so a state kept
 * per worker fails it.
 */
const LIMIT = 30;
const SLOW_MS = 1_500;

interface Pinned {
  readonly pool: Pool;
  readonly pid: number;
}

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

describe('serve --workers 2 (#17)', () => {
  let gw: ProcessGateway;
  let upstream: TestUpstream;
  let quick: TestUpstream;
  const adminKey = generateKey('sk');
  const quotaKey = generateKey('sk');
  const pools: Pool[] = [];

  beforeAll(async () => {
    upstream = await startUpstream(delayed(SLOW_MS, json(200, chatCompletion('slow answer'))));
    quick = await startUpstream(json(200, chatCompletion('quick answer')));
    gw = await startProcessGateway({
      args: ['--workers', '2'],
      config: {
        server: { host: '127.0.0.1', port: 0, limits: { keep_alive_timeout_ms: 120_000 } },
        tenants: {
          acme: {
            keys: [
              { id: 'admin', hash: hashKey(adminKey, TEST_SECRET), admin: true },
              // A rate that refills one request per two minutes: the test sees the burst only.
              {
                id: 'quota',
                hash: hashKey(quotaKey, TEST_SECRET),
                quotas: { window_s: 3_600, requests: LIMIT },
              },
            ],
            models: ['*'],
          },
        },
        models: {
          slow: { backend: 'openai', url: `${upstream.url}/v1` },
          fast: { backend: 'openai', url: `${quick.url}/v1` },
        },
        features: {
          definitions: {
            'user.rides_7d': {
              entity: 'user',
              type: 'int',
              label: 'consented',
              purpose: 'behavioral_inference',
              lineage: { source: 'test', transformation: 'identity' },
            },
          },
        },
        // Written behind rarely: only a read that has every worker write first sees it all.
        inference_log: { enabled: true, flush_ms: 600_000 },
        costs: { flush_ms: 600_000 },
        // One SQLite file for every worker; no polling, so only reading through can show a change.
        state: { sqlite: 'state/release.db' },
        release: { poll_ms: 0 },
      },
    });
  }, 60_000);

  afterAll(async () => {
    for (const p of pools) await p.destroy().catch(() => undefined);
    await gw?.close();
    await upstream?.close();
    await quick?.close();
  });

  const call = async (
    via: Pool | string,
    method: 'GET' | 'PUT' | 'POST',
    path: string,
    key: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer> => {
    const opts = {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    };
    const res =
      typeof via === 'string'
        ? await request(`${via}${path}`, { ...opts, reset: true })
        : await via.request({ path, ...opts });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
    };
  };

  const workerOf = async (via: Pool | string): Promise<number> => {
    const r = await call(via, 'GET', '/readyz', adminKey);
    expect(r.status).toBe(200);
    return (r.body['worker'] as { pid: number }).pid;
  };

  /** Two keep-alive connections, each held by a different worker. */
  const pinTwo = async (): Promise<[Pinned, Pinned]> => {
    const seen = new Map<number, Pinned>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const pool = new Pool(gw.url, { connections: 1, keepAliveTimeout: 120_000 });
      pools.push(pool);
      const pid = await workerOf(pool);
      if (!seen.has(pid)) seen.set(pid, { pool, pid });
    }
    const both = [...seen.values()];
    expect(both.length).toBe(2);
    return [both[0]!, both[1]!];
  };

  it('serves from two worker processes, neither of them the primary', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 12; i++) pids.add(await workerOf(gw.url));
    expect(pids.size).toBe(2);
    expect(pids.has(gw.pid)).toBe(false);
    const r = await call(gw.url, 'GET', '/readyz', adminKey);
    expect(r.body['worker']).toMatchObject({ of: 2 });
  });

  it('admits exactly the quota across both workers when offered three times it', async () => {
    const [a, b] = await pinTwo();
    // Each worker is offered the whole quota and a half: counted per worker, both would admit LIMIT.
    const offer = (p: Pool): Promise<Answer[]> =>
      Promise.all(
        Array.from({ length: (3 * LIMIT) / 2 }, (_, i) =>
          call(p, 'GET', `/v1/consent/q${i}`, quotaKey),
        ),
      );
    const [fromA, fromB] = await Promise.all([offer(a.pool), offer(b.pool)]);
    const ok = (list: Answer[]) => list.filter((r) => r.status === 200).length;
    expect(ok(fromA) + ok(fromB)).toBe(LIMIT);
    expect(ok(fromA)).toBeGreaterThan(0);
    expect(ok(fromB)).toBeGreaterThan(0);
    for (const r of [...fromA, ...fromB].filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect((r.body['error'] as { code: string }).code).toBe('SY_ERR_RATE_LIMITED');
    }
  });

  it('applies a consent revocation made in one worker to the very next request in the other', async () => {
    const [a, b] = await pinTwo();
    for (let i = 0; i < 40; i++) {
      const [write, read] = i % 2 === 0 ? [a, b] : [b, a];
      const user = `user-${i}`;
      const granted = await call(write.pool, 'PUT', `/v1/consent/${user}`, adminKey, {
        purposes: { location: true, behavioral_inference: true },
      });
      expect(granted.status).toBe(200);
      const seen = await call(read.pool, 'GET', `/v1/consent/${user}`, adminKey);
      expect(seen.body['purposes']).toMatchObject({ location: true, behavioral_inference: true });
      const revoked = await call(read.pool, 'POST', `/v1/consent/${user}/revoke`, adminKey, {
        purposes: ['location'],
      });
      expect(revoked.status).toBe(200);
      const after = await call(write.pool, 'GET', `/v1/consent/${user}`, adminKey);
      expect(after.body['purposes']).toMatchObject({
        location: false,
        behavioral_inference: true,
      });
    }
  });

  it("purges a worker's feature values when the user revokes consent through another", async () => {
    const [a, b] = await pinTwo();
    const stored = async (): Promise<number> => {
      const res = await a.pool.request({ path: '/metrics', method: 'GET' });
      const line = (await res.body.text())
        .split('\n')
        .find((l) => l.startsWith('switchyard_tenant_stored{kind="feature_values",tenant="acme"}'));
      return Number(line?.split(' ').pop() ?? 0);
    };
    const user = 'rider-1';
    await call(a.pool, 'PUT', `/v1/consent/${user}`, adminKey, {
      purposes: { behavioral_inference: true },
    });
    const wrote = await call(a.pool, 'POST', '/v1/features', adminKey, {
      writes: [{ entity_id: user, feature: 'user.rides_7d', value: 5 }],
    });
    expect(wrote.status).toBe(200);
    // Both workers hold it (the gauge is the largest of their counts); the purge empties both.
    expect(await stored()).toBe(1);
    const revoked = await call(b.pool, 'POST', `/v1/consent/${user}/revoke`, adminKey, {
      purposes: ['behavioral_inference'],
    });
    expect(revoked.status).toBe(200);
    expect(await stored()).toBe(0);
  });

  it('puts a mode override made through one worker in force in the other before it answers', async () => {
    const [a, b] = await pinTwo();
    const batch = { 'x-switchyard-class': 'batch' };
    expect((await call(b.pool, 'GET', '/v1/consent/u1', adminKey, undefined, batch)).status).toBe(
      200,
    );
    const forced = await call(a.pool, 'PUT', '/admin/mode', adminKey, {
      mode: 'surge',
      reason: 'workers test',
    });
    expect(forced.status).toBe(200);
    try {
      const there = await call(b.pool, 'GET', '/admin/mode', adminKey);
      expect(there.body).toMatchObject({ mode: 'surge', forced: true });
      expect(there.body['since']).toBe(forced.body['since']);
      // Surge sheds the batch class (the defaults): in the worker that did not take the PUT too.
      const shed = await call(b.pool, 'GET', '/v1/consent/u1', adminKey, undefined, batch);
      expect(shed.status).toBe(503);
      expect((shed.body['error'] as { code: string }).code).toBe('SY_ERR_SHED');
    } finally {
      const auto = await call(b.pool, 'PUT', '/admin/mode', adminKey, {
        mode: 'auto',
        reason: 'done',
      });
      expect(auto.status).toBe(200);
    }
    // On record once (by the worker that took it), and the same trail whichever worker reads it.
    for (const p of [a.pool, b.pool]) {
      const trail = await call(p, 'GET', '/admin/audit?action=mode.override', adminKey);
      const entries = trail.body['entries'] as { reason: string }[];
      expect(entries.filter((e) => e.reason === 'workers test')).toHaveLength(1);
    }
    // Handed back to the signals in both (the mode steps down once they allow it).
    for (const p of [a.pool, b.pool])
      expect((await call(p, 'GET', '/admin/mode', adminKey)).body).toMatchObject({
        reason: 'released',
        forced: false,
      });
  });

  it('shows an experiment change made through one worker in the other at once', async () => {
    const [a, b] = await pinTwo();
    const created = await call(a.pool, 'POST', '/admin/experiments', adminKey, {
      id: 'ranker-ab',
      slot: 'ranker',
      kind: 'ab',
      layer: 'ranking',
      variants: [
        { name: 'control', model: 'ranker', version: '1' },
        { name: 'treatment', model: 'ranker', version: '2' },
      ],
      reason: 'workers test',
    });
    expect(created.status).toBe(201);
    const there = await call(b.pool, 'GET', '/admin/experiments/ranker-ab', adminKey);
    expect(there.status).toBe(200);
    expect(there.body['status']).toBe('running');
    const paused = await call(b.pool, 'POST', '/admin/experiments/ranker-ab/status', adminKey, {
      status: 'paused',
      reason: 'workers test',
    });
    expect(paused.status).toBe(200);
    const list = await call(a.pool, 'GET', '/admin/experiments', adminKey);
    const listed = list.body['experiments'] as { spec: { id: string }; status: string }[];
    expect(listed.find((e) => e.spec.id === 'ranker-ab')?.status).toBe('paused');
  });

  it("shows every worker's requests in the cost ledger and the inference log, whichever worker reads", async () => {
    const [a, b] = await pinTwo();
    const N = 10;
    for (let i = 0; i < N; i++) {
      const r = await call(
        i % 2 === 0 ? a.pool : b.pool,
        'POST',
        '/v1/chat/completions',
        adminKey,
        {
          model: 'fast',
          messages: [{ role: 'user', content: 'hi' }],
        },
      );
      expect(r.status).toBe(200);
    }
    const costs = await call(a.pool, 'GET', '/admin/costs?group_by=model', adminKey);
    expect(costs.status).toBe(200);
    const groups = costs.body['groups'] as { key: string; calls: number }[];
    expect(groups.find((g) => g.key === 'fast')?.calls).toBe(N);
    const log = await call(b.pool, 'GET', '/admin/requests?model=fast&limit=100', adminKey);
    expect(log.status).toBe(200);
    expect(log.body['requests'] as unknown[]).toHaveLength(N);
  });

  it('sums /metrics over the workers, whichever one the scrape lands on', async () => {
    const [a, b] = await pinTwo();
    const count = async (p: Pool): Promise<number> => {
      const res = await p.request({ path: '/metrics', method: 'GET' });
      const text = await res.body.text();
      const line = text
        .split('\n')
        .find(
          (l) => l.startsWith('switchyard_requests_total{route="/readyz"') && l.includes('"200"'),
        );
      return Number(line?.split(' ').pop() ?? NaN);
    };
    const before = await count(a.pool);
    await workerOf(a.pool);
    await workerOf(b.pool);
    // Both readyz calls count, whichever worker took them; and both scrapes agree.
    expect(await count(b.pool)).toBe(before + 2);
    expect(await count(a.pool)).toBe(before + 2);
  });

  it('restarts a killed worker while the other keeps answering', async () => {
    const [a, b] = await pinTwo();
    process.kill(a.pid, 'SIGKILL');
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++)
      statuses.push((await call(b.pool, 'GET', '/readyz', adminKey)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    let pids = new Set<number>();
    for (let i = 0; i < 100 && (pids.size < 2 || pids.has(a.pid)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      pids = new Set<number>();
      for (let j = 0; j < 4; j++) pids.add(await workerOf(gw.url));
    }
    expect(pids.size).toBe(2);
    expect(pids.has(a.pid)).toBe(false);
    expect(pids.has(b.pid)).toBe(true);
    // The quota counters live in the primary: a worker's death hands out no fresh quota.
    for (let i = 0; i < 4; i++)
      expect((await call(gw.url, 'GET', '/v1/consent/x', quotaKey)).status).toBe(429);
    expect(gw.output()).toMatch(/worker \d \(pid \d+\) exited \(SIGKILL\); restarting it/);
  });

  it('enforces, in a worker restarted after kill -9, a revocation made before and one made while it was down', async () => {
    // No consent store here: the records live in the workers only (the primary keeps none), so the
    // restarted worker must copy them from the one that stayed up.
    const [a, b] = await pinTwo();
    const grant = { purposes: { location: true, behavioral_inference: true } };
    for (const user of ['kill-before', 'kill-during'])
      expect((await call(a.pool, 'PUT', `/v1/consent/${user}`, adminKey, grant)).status).toBe(200);
    const revoke = (user: string) =>
      call(b.pool, 'POST', `/v1/consent/${user}/revoke`, adminKey, { purposes: ['location'] });
    expect((await revoke('kill-before')).status).toBe(200);
    process.kill(a.pid, 'SIGKILL');
    expect((await revoke('kill-during')).status).toBe(200);

    const restarted = await pinRestartedWorker(gw.url, adminKey, pools, [a.pid, b.pid]);
    expect(restarted, 'the killed worker was not restarted').toBeDefined();
    // Revoked, and the purpose still granted kept (a lost record would show the defaults).
    for (const user of ['kill-before', 'kill-during']) {
      const seen = await call(restarted!, 'GET', `/v1/consent/${user}`, adminKey);
      expect(seen.status).toBe(200);
      expect(seen.body['purposes'], user).toMatchObject({
        location: false,
        behavioral_inference: true,
      });
      expect(seen.body['version'], user).toBe(2);
    }
    // A change made since the restart reaches it at once, as in any worker.
    expect((await call(b.pool, 'PUT', '/v1/consent/kill-after', adminKey, grant)).status).toBe(200);
    const after = await call(restarted!, 'GET', '/v1/consent/kill-after', adminKey);
    expect(after.body['purposes']).toMatchObject({ location: true, behavioral_inference: true });
  });

  it('drains every worker on SIGTERM: requests in flight finish, then it exits 0', async () => {
    const [a, b] = await pinTwo();
    const chat = (p: Pool): Promise<Answer> =>
      call(p, 'POST', '/v1/chat/completions', adminKey, {
        model: 'slow',
        messages: [{ role: 'user', content: 'hi' }],
      });
    const inFlight = [chat(a.pool), chat(b.pool)];
    await new Promise((r) => setTimeout(r, SLOW_MS / 3));
    gw.signal('SIGTERM');
    const answers = await Promise.all(inFlight);
    for (const r of answers) {
      expect(r.status).toBe(200);
      expect(JSON.stringify(r.body)).toContain('slow answer');
    }
    expect(await gw.exited()).toBe(0);
    expect(gw.output()).toContain('SIGTERM: draining 2 worker processes');
  });
});

describe('server.workers and --workers (#17)', () => {
  const readyz = async (url: string): Promise<Record<string, unknown>> => {
    const res = await request(`${url}/readyz`, { reset: true });
    return (await res.body.json()) as Record<string, unknown>;
  };

  it('starts the workers server.workers asks for', async () => {
    const gw = await startProcessGateway({
      config: { server: { host: '127.0.0.1', port: 0, workers: 2 } },
    });
    try {
      const pids = new Set<number>();
      for (let i = 0; i < 8; i++)
        pids.add(((await readyz(gw.url))['worker'] as { pid: number }).pid);
      expect(pids.size).toBe(2);
      expect(gw.output()).toContain('(2 worker processes)');
    } finally {
      await gw.close();
    }
  }, 30_000);

  it('lets --workers 1 override server.workers: one process, no primary', async () => {
    const gw = await startProcessGateway({
      config: { server: { host: '127.0.0.1', port: 0, workers: 2 } },
      args: ['--workers', '1'],
    });
    try {
      expect((await readyz(gw.url))['worker']).toBeUndefined();
      expect(gw.output()).not.toContain('worker processes');
    } finally {
      await gw.close();
    }
  }, 30_000);
});
