import { describe, expect, it } from 'vitest';
import type { ClusterPeer } from '../contracts/cluster.js';
import type { QuotaCharge } from '../contracts/limiter.js';
import type { Clock } from '../core/clock.js';
import { MemoryLimiter } from './memory-limiter.js';
import {
  LEASE_MS,
  LIMITER_TOPIC,
  PeerLimiter,
  runLimiterOps,
  type LimiterOp,
} from './peer-limiter.js';

const clock: Clock = { now: () => 0, wall: () => 1_800_000_000_000 };

/**
 * Workers whose channel to the primary answers a turn later, as the cluster IPC channel does;
 * the primary's side is the real one (`runLimiterOps` on one MemoryLimiter). Real processes:
 * test/reliability/workers.test.ts.
 */
function group(workers: number) {
  const primary = new MemoryLimiter(clock);
  /** The number of operations in each message a worker sent. */
  const batches: number[] = [];
  const peer = (id: number): ClusterPeer => ({
    id,
    workers,
    request: async (topic, body) => {
      expect(topic).toBe(LIMITER_TOPIC);
      batches.push((body as LimiterOp[]).length);
      await new Promise((r) => setImmediate(r));
      return runLimiterOps(primary, body as LimiterOp[]);
    },
    broadcast: () => Promise.resolve(),
    askPeer: () => Promise.resolve(undefined),
    on: () => undefined,
  });
  const limiters = Array.from({ length: workers }, (_, i) => new PeerLimiter(peer(i + 1), clock));
  return { primary, limiters, batches };
}

const charge = (limit: number, amount = 1): QuotaCharge => ({
  key: 't:acme:requests',
  limit,
  window: { ms: 3_600_000 },
  amount,
});

describe('PeerLimiter (#17)', () => {
  it('admits exactly the limit across three workers offered three times it', async () => {
    const { limiters } = group(3);
    const decisions = await Promise.all(
      Array.from({ length: 90 }, (_, i) => limiters[i % 3]!.reserve([charge(30)])),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(30);
    for (const d of decisions.filter((x) => !x.allowed)) expect(d.retryAfterMs).toBeGreaterThan(0);
  });

  it('sends the operations of one event-loop turn as one message, answered in order', async () => {
    const { limiters, batches } = group(1);
    const worker = limiters[0]!;
    const decisions = await Promise.all(
      Array.from({ length: 12 }, () => worker.reserve([charge(10)])),
    );
    expect(batches).toEqual([12]);
    expect(decisions.map((d) => d.allowed)).toEqual([
      ...Array<boolean>(10).fill(true),
      false,
      false,
    ]);
  });

  it('settles in the primary: a refund there makes room for another worker', async () => {
    const { limiters } = group(2);
    const [a, b] = limiters as [PeerLimiter, PeerLimiter];
    const taken = await a.reserve([charge(100, 100)]);
    expect(taken.allowed).toBe(true);
    expect((await b.reserve([charge(100, 40)])).allowed).toBe(false);
    await a.settle(taken.receipts[0]!, 50);
    expect(await b.usage('t:acme:requests', { ms: 3_600_000 })).toBeCloseTo(50, 0);
    expect((await b.reserve([charge(100, 40)])).allowed).toBe(true);
  });

  it('admits a tenant far from its limit from leases: a round trip per lease, every unit counted in the primary first', async () => {
    const { primary, limiters, batches } = group(2);
    const big = charge(1_000_000); // leases of 256 requests' worth (1% of the limit is 5,000 a worker)
    let admitted = 0;
    for (let i = 0; i < 200; i++)
      for (const w of limiters) if ((await w.reserve([big])).allowed) admitted++;
    expect(admitted).toBe(400);
    // Without leases, 400 round trips; with them, the first reserve of each worker and a lease
    // ahead of need when half of one is used.
    expect(batches.length).toBeLessThanOrEqual(2 * 2);
    // The primary counted more than was admitted (the leases' units left), never less...
    expect(primary.usageSync(big.key, big.window)).toBeGreaterThan(admitted);
    // ...and has them back once the workers give back what they did not use.
    for (const w of limiters) await w.close();
    expect(primary.usageSync(big.key, big.window)).toBeCloseTo(admitted, 2);
  });

  it('never admits more than the limit with leases out: three workers offered three times it', async () => {
    const { primary, limiters } = group(3);
    const limit = 3_000; // leases of up to 10 units (1% of the limit across three workers)
    let admitted = 0;
    let leased = false;
    for (let round = 0; round < 300; round++) {
      const decisions = await Promise.all(
        Array.from({ length: 30 }, (_, i) => limiters[i % 3]!.reserve([charge(limit)])),
      );
      admitted += decisions.filter((d) => d.allowed).length;
      leased ||= primary.usageSync('t:acme:requests', { ms: 3_600_000 }) > admitted;
    }
    expect(leased).toBe(true);
    expect(admitted).toBeLessThanOrEqual(limit);
    // Near the limit the leases shrink to nothing, so the last units are admitted too.
    expect(admitted).toBeGreaterThanOrEqual(limit - 3 * 10);
    for (const w of limiters) await w.close();
    expect(primary.usageSync('t:acme:requests', { ms: 3_600_000 })).toBeCloseTo(admitted, 2);
  });

  it('gives back a lease whose time is over when the next one lands, instead of adding the two', async () => {
    let t = 0;
    const wall = 1_800_000_000_000;
    const moving: Clock = { now: () => t, wall: () => wall };
    const primary = new MemoryLimiter(moving);
    const peer: ClusterPeer = {
      id: 1,
      workers: 1,
      request: async (_topic, body) => {
        await new Promise((r) => setImmediate(r));
        return runLimiterOps(primary, body as LimiterOp[]);
      },
      broadcast: () => Promise.resolve(),
      askPeer: () => Promise.resolve(undefined),
      on: () => undefined,
    };
    const worker = new PeerLimiter(peer, moving);
    const big = charge(1_000_000);
    expect((await worker.reserve([big])).allowed).toBe(true); // 1, and a lease of 256
    expect(primary.usageSync(big.key, big.window)).toBeCloseTo(257, 2);
    t += LEASE_MS; // the lease's time is over (the sweeper has not run yet)
    expect((await worker.reserve([big])).allowed).toBe(true); // 1 more, from the primary
    // The 255 left went back (a settle, sent on) when the new lease of 256 was kept: 2 used + 256.
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    expect(primary.usageSync(big.key, big.window)).toBeCloseTo(2 + 256, 2);
    await worker.close();
    expect(primary.usageSync(big.key, big.window)).toBeCloseTo(2, 2);
  });

  it('refuses when the primary is gone instead of counting alone', async () => {
    const gone: ClusterPeer = {
      id: 1,
      workers: 2,
      request: () => Promise.reject(new Error('the primary process is gone')),
      broadcast: () => Promise.resolve(),
      askPeer: () => Promise.resolve(undefined),
      on: () => undefined,
    };
    const d = await new PeerLimiter(gone).reserve([charge(10)]);
    expect(d.allowed).toBe(false);
  });
});
