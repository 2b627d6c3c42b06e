import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import type { SlotAssignment, SlotOutput } from '../../../src/contracts/slot-resolver.js';
import { systemClock } from '../../../src/core/clock.js';
import { seededRandom } from '../../../src/core/random.js';
import {
  ReleaseManager,
  type ReleaseManagerOptions,
} from '../../../src/release/release-manager.js';
import { SqliteRegistryStore } from '../../../src/state/sqlite-registry-store.js';
import {
  delayed,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../../support/upstream.js';

/** An upstream that answers `{label, score}` after a delay the test can change at any time. */
export async function modelUpstream(
  label: string,
  score: number,
): Promise<TestUpstream & { delayMs: number }> {
  const state = { delayMs: 0 };
  const answer: Behaviour = (_req, res) => {
    const body = JSON.stringify({ label, score });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  };
  const up = await startUpstream((req, res, call) =>
    state.delayMs > 0 ? delayed(state.delayMs, answer)(req, res, call) : answer(req, res, call),
  );
  return Object.defineProperty(up, 'delayMs', {
    get: () => state.delayMs,
    set: (ms: number) => {
      state.delayMs = ms;
    },
  }) as TestUpstream & { delayMs: number };
}

/** A release manager on a temp SQLite file, with test-friendly loop intervals. */
export async function startManager(over: Partial<ReleaseManagerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sy-release-'));
  const store = new SqliteRegistryStore(join(dir, 'state.db'));
  const manager = new ReleaseManager({
    store,
    clock: systemClock,
    random: seededRandom(9),
    evaluateMs: 100,
    flushMs: 200,
    pollMs: 0,
    shadow: { maxInFlight: 64, timeoutMs: 2_000 },
    feedbackTtlMs: 60_000,
    feedbackCapacity: 10_000,
    ...over,
  });
  await manager.start();
  return {
    manager,
    store,
    close: async () => {
      await manager.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Calls the model an assignment names over a real HTTP pool. */
export class ModelCaller {
  private readonly pools = new Map<string, Pool>();
  constructor(private readonly urls: ReadonlyMap<string, string>) {}

  async call(
    model: string,
    version: string | undefined,
    signal?: AbortSignal,
  ): Promise<SlotOutput> {
    const url = this.urls.get(`${model}@${version ?? ''}`);
    if (url === undefined) throw new Error(`no upstream for ${model}@${version}`);
    let pool = this.pools.get(url);
    if (pool === undefined) this.pools.set(url, (pool = new Pool(url, { connections: 32 })));
    const res = await pool.request({
      method: 'POST',
      path: '/infer',
      body: '{}',
      headers: { 'content-type': 'application/json' },
      ...(signal ? { signal } : {}),
    });
    return (await res.body.json()) as SlotOutput;
  }

  callFor(a: SlotAssignment, signal?: AbortSignal): Promise<SlotOutput> {
    return this.call(a.model, a.version, signal);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}
