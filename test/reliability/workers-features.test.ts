import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'undici';
import { generateKey } from '../../src/core/api-key.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import {
  pinRestartedWorker,
  pinTwoWorkers,
  poolCall,
  workerPid,
  workersBaseConfig,
} from '../support/worker-pools.js';

interface Value {
  readonly value: unknown;
  readonly written_at: number;
  readonly expires_at?: number;
}

/**
 * #17: "every guarantee that holds for one process holds for N; embedded mode coordinates through
 * the primary process or SQLite, never silently per worker". The embedded feature store under the
 * built bin with `--workers 2`: a value written through one worker is read at once through the
 * other; a consent purge through either removes it from both; a worker killed with SIGKILL comes
 * back holding every value. The journal is written behind only every ten minutes, so a restarted
 * worker can get the values only from the other worker, not from the file; the file is read only
 * when the whole gateway starts again.
 */
describe('serve --workers 2 with the embedded feature store (#17)', () => {
  let gw: ProcessGateway;
  let again: ProcessGateway | undefined;
  const adminKey = generateKey('sk');
  const pools: Pool[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'sy-workers-features-'));

  const config = {
    ...workersBaseConfig(adminKey),
    features: {
      store: { kind: 'embedded', sqlite: join(dataDir, 'features.db'), flush_ms: 600_000 },
      definitions: {
        'user.tier': {
          entity: 'user',
          type: 'string',
          label: 'public',
          lineage: { source: 'test', transformation: 'identity' },
        },
        'user.rides_7d': {
          entity: 'user',
          type: 'int',
          label: 'consented',
          purpose: 'behavioral_inference',
          lineage: { source: 'test', transformation: 'identity' },
        },
        'session.score': {
          entity: 'session',
          type: 'float',
          ttl_ms: 600_000,
          label: 'public',
          lineage: { source: 'test', transformation: 'identity' },
        },
      },
    },
  };

  beforeAll(async () => {
    gw = await startProcessGateway({ args: ['--workers', '2'], config });
  }, 60_000);

  afterAll(async () => {
    for (const p of pools) await p.destroy().catch(() => undefined);
    await gw?.close();
    await again?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const call = (pool: Pool, method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown) =>
    poolCall(pool, method, path, adminKey, body);
  const write = async (pool: Pool, entity: string, feature: string, value: unknown) => {
    const r = await call(pool, 'POST', '/v1/features', {
      writes: [{ entity_id: entity, feature, value }],
    });
    expect(r.status, r.text).toBe(200);
  };
  const read = async (pool: Pool, entity: string, feature: string): Promise<Value | undefined> => {
    const r = await call(pool, 'GET', `/v1/features/${entity}?names=${feature}`);
    expect(r.status, r.text).toBe(200);
    return (r.body['features'] as Record<string, Value>)[feature];
  };

  it('reads a value written through one worker at once through the other, stamped and expiring alike', async () => {
    const [a, b] = await pinTwoWorkers(gw.url, adminKey, pools);
    for (let i = 0; i < 20; i++) {
      const [w, r] = i % 2 === 0 ? [a, b] : [b, a];
      await write(w, 'rider-1', 'user.tier', `tier-${i}`);
      expect((await read(r, 'rider-1', 'user.tier'))?.value, `round ${i}`).toBe(`tier-${i}`);
      await write(w, `s${i}`, 'session.score', i / 100);
      const there = await read(r, `s${i}`, 'session.score');
      // The TTL runs from the writer's stamp in both workers, not from when the value arrived.
      expect(there).toEqual(await read(w, `s${i}`, 'session.score'));
      expect(there?.expires_at).toBe((there?.written_at ?? 0) + 600_000);
    }
  });

  it('purges a value from both workers when the user revokes consent through either', async () => {
    const [a, b] = await pinTwoWorkers(gw.url, adminKey, pools);
    for (let i = 0; i < 10; i++) {
      const [w, r] = i % 2 === 0 ? [a, b] : [b, a];
      const user = `rider-p${i}`;
      const grant = () =>
        call(r, 'PUT', `/v1/consent/${user}`, { purposes: { behavioral_inference: true } });
      expect((await grant()).status).toBe(200);
      await write(w, user, 'user.rides_7d', i);
      expect((await read(r, user, 'user.rides_7d'))?.value).toBe(i);
      const revoked = await call(r, 'POST', `/v1/consent/${user}/revoke`, {
        purposes: ['behavioral_inference'],
      });
      expect(revoked.status).toBe(200);
      // Granted again: a value only withheld would show again; a purged one is gone everywhere.
      expect((await grant()).status).toBe(200);
      expect(await read(w, user, 'user.rides_7d'), `round ${i}`).toBeUndefined();
      expect(await read(r, user, 'user.rides_7d'), `round ${i}`).toBeUndefined();
    }
  });

  it('serves the values written before a kill -9, and while it was down, from the restarted worker', async () => {
    const [a, b] = await pinTwoWorkers(gw.url, adminKey, pools);
    for (let i = 0; i < 10; i++)
      await write(i % 2 === 0 ? a : b, `k${i}`, 'user.tier', `before-${i}`);
    const killed = await workerPid(a, adminKey);
    process.kill(killed, 'SIGKILL');
    // The other worker answers on while the killed one is restarted.
    for (let i = 0; i < 5; i++) await write(b, `d${i}`, 'user.tier', `down-${i}`);
    const fresh = await pinRestartedWorker(gw.url, adminKey, pools, [
      killed,
      await workerPid(b, adminKey),
    ]);
    expect(fresh, 'the killed worker was not restarted').toBeDefined();
    expect(gw.output()).toMatch(/exited \(SIGKILL\); restarting it/);
    for (let i = 0; i < 10; i++)
      expect((await read(fresh!, `k${i}`, 'user.tier'))?.value).toBe(`before-${i}`);
    for (let i = 0; i < 5; i++)
      expect((await read(fresh!, `d${i}`, 'user.tier'))?.value).toBe(`down-${i}`);
    // And what is written after it came back reaches both.
    await write(b, 'k-after', 'user.tier', 'after');
    expect((await read(fresh!, 'k-after', 'user.tier'))?.value).toBe('after');
    await write(fresh!, 'k-after-2', 'user.tier', 'after-2');
    expect((await read(b, 'k-after-2', 'user.tier'))?.value).toBe('after-2');
  });

  it('brings every value back from the SQLite file when the whole gateway starts again', async () => {
    for (const p of pools.splice(0)) await p.destroy().catch(() => undefined);
    // Drained on SIGTERM: each worker writes what it holds before it exits.
    await gw.close();
    again = await startProcessGateway({ args: ['--workers', '2'], config });
    const [a, b] = await pinTwoWorkers(again.url, adminKey, pools);
    for (const p of [a, b]) {
      expect((await read(p, 'rider-1', 'user.tier'))?.value).toBe('tier-19');
      expect((await read(p, 'k3', 'user.tier'))?.value).toBe('before-3');
      expect((await read(p, 'd4', 'user.tier'))?.value).toBe('down-4');
      expect((await read(p, 'k-after-2', 'user.tier'))?.value).toBe('after-2');
      // Purged, not withheld: no consent store here, so consent is back to its default (none).
      const purged = await call(p, 'GET', '/v1/features/rider-p3?names=user.rides_7d');
      expect(purged.body).toMatchObject({ features: {}, withheld: [] });
    }
  }, 60_000);
});
