import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock.js';
import { seededRandom } from '../core/random.js';
import {
  AdmissionController,
  shedProbability,
  type BeginRequest,
  type GateCall,
} from './admission-controller.js';
import { MemoryLimiter } from './memory-limiter.js';
import {
  TEST_CLASSES,
  TEST_CONCURRENCY,
  testSettings,
  ListAudit,
  silentLogger,
} from '../../test/support/admission-settings.js';

class ManualClock implements Clock {
  t = Date.UTC(2030, 0, 15, 12);
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
}

const open: AdmissionController[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

function setup(over: Parameters<typeof testSettings>[0] = {}) {
  const clock = new ManualClock();
  const limiter = new MemoryLimiter(clock);
  const c = new AdmissionController(testSettings(over), {
    clock,
    random: seededRandom(7),
    limiter,
    audit: new ListAudit(),
    logger: silentLogger,
  });
  open.push(c);
  const signal = new AbortController().signal;
  const req = (r: Partial<BeginRequest> = {}): BeginRequest => ({
    tenant: 'acme',
    keyId: 'k1',
    trafficClass: 'interactive',
    estimate: { tokens: 100, spend: 0.01 },
    ...r,
  });
  const call = (r: Partial<GateCall> = {}): GateCall => ({
    trafficClass: 'interactive',
    deadlineAt: clock.t + 10_000,
    signal,
    ...r,
  });
  const admit = (r: Partial<GateCall> = {}) => c.acquireGate('m', call(r));
  return { c, clock, limiter, req, call, admit };
}

const tenants = {
  acme: {
    keys: [{ id: 'k1', quotas: { window_s: 60, requests: 2 } }],
    quotas: { window_s: 60, tokens: 1_000, spend_per_day: 1 },
  },
};

describe('AdmissionController', () => {
  it('refuses the request over a key’s request quota with 429 and a Retry-After inside the window', async () => {
    const { c, req } = setup({ tenants });
    (await c.begin(req())).settle();
    (await c.begin(req())).settle();
    const err = await c.begin(req()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SY_ERR_RATE_LIMITED', status: 429 });
    expect((err as { retryAfterS: number }).retryAfterS).toBeGreaterThanOrEqual(1);
    expect((err as { retryAfterS: number }).retryAfterS).toBeLessThanOrEqual(120);
  });

  it('refuses with SY_ERR_QUOTA_EXCEEDED when the token estimate does not fit', async () => {
    const { c, req } = setup({ tenants });
    await expect(c.begin(req({ estimate: { tokens: 1_001, spend: 0 } }))).rejects.toMatchObject({
      code: 'SY_ERR_QUOTA_EXCEEDED',
    });
  });

  it('reserves the estimate and settles to the actual usage', async () => {
    const { c, req, limiter } = setup({ tenants });
    const t = await c.begin(req({ estimate: { tokens: 400, spend: 0.25 } }));
    expect(await limiter.usage('t:acme:tok', { ms: 60_000 })).toBe(400);
    expect(await limiter.usage('t:acme:spend', 'day')).toBe(250_000);
    t.settle({ tokens: 37, spend: 0.002 });
    t.settle({ tokens: 999, spend: 9 }); // a second settle changes nothing
    await Promise.resolve();
    expect(await limiter.usage('t:acme:tok', { ms: 60_000 })).toBe(37);
    expect(await limiter.usage('t:acme:spend', 'day')).toBe(2_000);
    expect(await limiter.usage('k:acme:k1:req', { ms: 60_000 })).toBe(1);
  });

  it('lets a data request (requests only) in when the token quota is spent, and counts its request', async () => {
    const { c, req, limiter } = setup({ tenants });
    (await c.begin(req({ estimate: { tokens: 1_000, spend: 0 } }))).settle({
      tokens: 1_000,
      spend: 0,
    });
    await expect(c.begin(req({ estimate: { tokens: 1, spend: 0 } }))).rejects.toMatchObject({
      code: 'SY_ERR_QUOTA_EXCEEDED',
    });
    (await c.begin(req({ estimate: { tokens: 0, spend: 0 }, requestsOnly: true }))).settle();
    expect(await limiter.usage('k:acme:k1:req', { ms: 60_000 })).toBe(2);
  });

  it('settles to the sum of what the request’s model calls charged', async () => {
    const { c, req, limiter } = setup({ tenants });
    const t = await c.begin(req({ estimate: { tokens: 400, spend: 0.25 } }));
    t.charge({ tokens: 30, spend: 0.001 });
    t.charge({ tokens: 12, spend: 0.0005 });
    t.settle();
    await Promise.resolve();
    expect(await limiter.usage('t:acme:tok', { ms: 60_000 })).toBe(42);
    expect(await limiter.usage('t:acme:spend', 'day')).toBe(1_500);
  });

  it('sheds a call at a full gate queue with 503, and starts the waiter when a slot frees', async () => {
    const { c, admit } = setup({
      admission: {
        ...testSettings().admission,
        concurrency: { ...TEST_CONCURRENCY, max_queue: 1 },
      },
    });
    const running = await admit();
    const waiting = admit();
    await Promise.resolve();
    await expect(admit()).rejects.toMatchObject({ code: 'SY_ERR_SHED', status: 503 });
    running.release({ ok: true });
    (await waiting).release({ ok: true });
    expect(c.gateStats()['m']).toMatchObject({ inFlight: 0, queued: 0 });
  });

  it('sheds the classes the current mode sheds, with Retry-After, and admits the others', async () => {
    const { c, req } = setup();
    c.modes.force('emergency', 'key:x', 'test');
    await expect(c.begin(req({ trafficClass: 'background' }))).rejects.toMatchObject({
      code: 'SY_ERR_SHED',
      retryAfterS: 2,
    });
    await expect(c.begin(req({ trafficClass: 'batch' }))).rejects.toMatchObject({
      code: 'SY_ERR_SHED',
    });
    (await c.begin(req({ trafficClass: 'interactive' }))).settle();
  });

  it('admits everything, untouched, when admission is disabled', async () => {
    const { c, req } = setup({
      tenants,
      admission: { ...testSettings().admission, enabled: false },
    });
    for (let i = 0; i < 5; i++) {
      (await c.begin(req())).settle();
      (
        await c.acquireGate('m', { trafficClass: 'x', deadlineAt: 0, signal: AbortSignal.abort() })
      ).release({ ok: true });
    }
  });

  it('sheds on a curve: lowest priority first, none below its start, all above its end', () => {
    const bg = TEST_CLASSES['background']!;
    const inter = TEST_CLASSES['interactive']!;
    expect(shedProbability(0.1, bg)).toBe(0);
    expect(shedProbability(0.4, bg)).toBeCloseTo(0.5);
    expect(shedProbability(0.7, bg)).toBe(1);
    expect(shedProbability(0.7, inter)).toBe(0);
    for (let p = 0; p <= 1.5; p += 0.05)
      expect(shedProbability(p, bg)).toBeGreaterThanOrEqual(shedProbability(p, inter));
  });

  it('samples queue delay into the mode: sustained queueing enters surge', async () => {
    const { c, admit, clock } = setup();
    const running = await admit();
    const waiting = admit();
    clock.t += 200; // the waiter waits 200 ms
    running.release({ ok: true });
    const next = await waiting;
    for (let i = 0; i < 3; i++) {
      const s = c.sample();
      expect(s.queueDelayMs).toBeGreaterThan(0);
    }
    // One 200 ms wait moves the EWMA to 20 ms: under surge's 50. Sustained waits do it.
    expect(c.modes.current().mode).toBe('normal');
    next.release({ ok: true });
    for (let sample = 0; sample < 3; sample++) {
      for (let i = 0; i < 20; i++) {
        const a = await admit();
        const b = admit();
        clock.t += 200;
        a.release({ ok: true });
        (await b).release({ ok: true });
      }
      c.sample();
    }
    expect(c.modes.current()).toMatchObject({ mode: 'surge', reason: 'queue_delay' });
  });
});
