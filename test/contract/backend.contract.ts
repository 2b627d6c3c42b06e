import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type {
  Backend,
  BackendRequest,
  CallContext,
  Operation,
} from '../../src/contracts/backend.js';
import { systemClock } from '../../src/core/clock.js';
import { SwitchyardError } from '../../src/core/errors.js';
import {
  delayed,
  hang,
  json,
  raw,
  refusedPort,
  reset,
  startUpstream,
  truncated,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * The shared contract every HTTP backend passes, run against a real local upstream that speaks
 * the backend's protocol. Each implementation's test file only provides a harness.
 */
export interface HttpBackendHarness {
  readonly kind: string;
  readonly operation: Operation;
  /** A backend for the upstream at `baseUrl` with the given caps. */
  make(
    baseUrl: string,
    caps: { timeoutMs: number; firstByteTimeoutMs: number; maxResponseBytes: number },
  ): Backend;
  /** The base URL of a backend for an upstream server origin. */
  baseUrl(origin: string): string;
  readonly request: BackendRequest;
  /** An upstream answer for `request` that the backend must accept. */
  readonly success: unknown;
  /** Asserts a successful result carries what the upstream answered. */
  checkSuccess(result: Awaited<ReturnType<Backend['call']>>): void;
  /** An upstream error body in this protocol's shape. */
  errorBody(message: string): unknown;
}

export function callContext(overrides: Partial<CallContext> = {}, budgetMs = 5_000): CallContext {
  const controller = new AbortController();
  return {
    requestId: 'req-1',
    tenant: 'acme',
    trafficClass: 'interactive',
    signal: controller.signal,
    deadlineAt: systemClock.now() + budgetMs,
    attempts: [],
    ...overrides,
  };
}

async function failure(p: Promise<unknown>): Promise<SwitchyardError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error('expected the call to fail');
}

export function httpBackendContract(h: HttpBackendHarness): void {
  describe(`${h.kind} backend contract`, () => {
    let up: TestUpstream;
    let backend: Backend;
    // A first-byte wait over a second: undici would time it on its coarse clock (a sweep every
    // half second), which the gateway must not rely on.
    const caps = { timeoutMs: 2_000, firstByteTimeoutMs: 1_200, maxResponseBytes: 64 * 1024 };

    beforeAll(async () => {
      up = await startUpstream();
      backend = h.make(h.baseUrl(up.url), caps);
    });
    afterAll(async () => {
      await backend.close();
      await up.close();
    });
    afterEach(() => {
      up.calls.length = 0;
    });

    const behave = (b: Behaviour): void => up.behave(b);

    it('returns the upstream answer on success', async () => {
      behave(json(200, h.success));
      const result = await backend.call(h.request, callContext());
      h.checkSuccess(result);
      expect(up.calls).toHaveLength(1);
    });

    it('describes itself with its kind, tier, upstream and operation', () => {
      const d = backend.describe();
      expect(d.kind).toBe(h.kind);
      expect(d.operations).toContain(h.operation);
      expect(d.upstream).toBe(h.baseUrl(up.url));
      expect(['edge', 'regional', 'central']).toContain(d.tier);
    });

    it('forwards the remaining budget, never more than the caller has', async () => {
      behave(json(200, h.success));
      await backend.call(h.request, callContext({}, 700));
      const forwarded = Number(up.calls[0]!.headers['x-switchyard-timeout-ms']);
      expect(forwarded).toBeGreaterThan(0);
      expect(forwarded).toBeLessThanOrEqual(700);
      expect(up.calls[0]!.headers['x-request-id']).toBe('req-1');
    });

    it('maps an upstream 400 to SY_ERR_UPSTREAM_REJECTED with the upstream message', async () => {
      behave(json(400, h.errorBody('temperature too hot')));
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_REJECTED');
      expect(err.status).toBe(400);
      expect(err.message).toContain('temperature too hot');
    });

    it('maps upstream 401 and 404 to SY_ERR_UPSTREAM_REFUSED (a gateway misconfiguration, 502)', async () => {
      for (const status of [401, 404]) {
        behave(json(status, h.errorBody('nope')));
        const err = await failure(backend.call(h.request, callContext()));
        expect(err.code).toBe('SY_ERR_UPSTREAM_REFUSED');
        expect(err.status).toBe(502);
      }
    });

    it('maps an upstream 429 to SY_ERR_UPSTREAM_RATE_LIMITED and keeps its Retry-After', async () => {
      behave(json(429, h.errorBody('slow down'), { 'retry-after': '7' }));
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_RATE_LIMITED');
      expect(err.retryAfterS).toBe(7);
    });

    it('maps upstream 5xx to the retryable SY_ERR_UPSTREAM_ERROR', async () => {
      for (const status of [500, 502, 503]) {
        behave(json(status, h.errorBody('boom')));
        const err = await failure(backend.call(h.request, callContext()));
        expect(err.code).toBe('SY_ERR_UPSTREAM_ERROR');
        expect(err.retryable).toBe(true);
      }
    });

    it('keeps the status when the upstream error body is not JSON', async () => {
      behave(raw(503, '<html>Service Unavailable</html>', 'text/html'));
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_ERROR');
      expect(err.message).toContain('503');
    });

    it('times out an upstream that never answers with SY_ERR_UPSTREAM_TIMEOUT', async () => {
      behave(hang);
      const t0 = performance.now();
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_TIMEOUT');
      const took = performance.now() - t0;
      expect(took).toBeGreaterThanOrEqual(caps.firstByteTimeoutMs - 50);
      expect(took).toBeLessThan(caps.firstByteTimeoutMs + 250);
      await expect.poll(() => up.calls[0]?.aborted, { timeout: 2_000 }).toBe(true);
    });

    it('times out a body that stops after the head at timeout_ms, with SY_ERR_UPSTREAM_TIMEOUT', async () => {
      behave((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{');
      });
      const t0 = performance.now();
      const err = await failure(backend.call(h.request, callContext()));
      const took = performance.now() - t0;
      expect(err.code).toBe('SY_ERR_UPSTREAM_TIMEOUT');
      expect(took).toBeGreaterThanOrEqual(caps.timeoutMs - 50);
      expect(took).toBeLessThan(caps.timeoutMs + 250);
      await expect.poll(() => up.calls[0]?.aborted, { timeout: 2_000 }).toBe(true);
    });

    it('ends at the caller deadline with SY_ERR_DEADLINE_EXCEEDED and aborts the upstream call', async () => {
      behave(hang);
      const controller = new AbortController();
      const ctx = callContext({ signal: controller.signal }, 300);
      const timer = setTimeout(
        () => controller.abort(new SwitchyardError('SY_ERR_DEADLINE_EXCEEDED', '300')),
        300,
      );
      const err = await failure(backend.call(h.request, ctx));
      clearTimeout(timer);
      expect(err.code).toBe('SY_ERR_DEADLINE_EXCEEDED');
      await expect.poll(() => up.calls[0]?.aborted, { timeout: 2_000 }).toBe(true);
    });

    it('ends at the caller deadline in the middle of the body, with SY_ERR_DEADLINE_EXCEEDED', async () => {
      behave((_req, res) => {
        const text = JSON.stringify(h.success);
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.write(text.slice(0, Math.floor(text.length / 2))); // and the rest never comes
      });
      const controller = new AbortController();
      const ctx = callContext({ signal: controller.signal }, 300);
      const timer = setTimeout(
        () => controller.abort(new SwitchyardError('SY_ERR_DEADLINE_EXCEEDED', '300')),
        300,
      );
      const t0 = performance.now();
      const err = await failure(backend.call(h.request, ctx));
      clearTimeout(timer);
      expect(err.code).toBe('SY_ERR_DEADLINE_EXCEEDED');
      expect(performance.now() - t0).toBeLessThan(2_000);
    });

    it('makes no upstream call when the caller signal has already fired', async () => {
      behave(json(200, h.success));
      const controller = new AbortController();
      controller.abort(new SwitchyardError('SY_ERR_CLIENT_CLOSED'));
      const err = await failure(
        backend.call(h.request, callContext({ signal: controller.signal })),
      );
      expect(err.code).toBe('SY_ERR_CLIENT_CLOSED');
      await new Promise((r) => setTimeout(r, 50));
      expect(up.calls).toHaveLength(0);
    });

    it('maps a refused connection to the retryable SY_ERR_UPSTREAM_UNREACHABLE', async () => {
      const port = await refusedPort();
      const dead = h.make(h.baseUrl(`http://127.0.0.1:${port}`), caps);
      const err = await failure(dead.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_UNREACHABLE');
      expect(err.retryable).toBe(true);
      await dead.close();
    });

    it('maps a connection reset before the answer to SY_ERR_UPSTREAM_UNREACHABLE', async () => {
      behave(reset);
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_UNREACHABLE');
    });

    it('maps truncated JSON to SY_ERR_UPSTREAM_BAD_RESPONSE', async () => {
      behave(truncated(h.success));
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_BAD_RESPONSE');
    });

    it('maps a 200 that is not JSON to SY_ERR_UPSTREAM_BAD_RESPONSE', async () => {
      behave(raw(200, '{"outputs": [1, 2'));
      const err = await failure(backend.call(h.request, callContext()));
      expect(err.code).toBe('SY_ERR_UPSTREAM_BAD_RESPONSE');
    });

    it('refuses an answer over the size cap, declared or streamed, without reading it all', async () => {
      const big = 'x'.repeat(caps.maxResponseBytes * 4);
      behave(json(200, { padding: big }));
      const declared = await failure(backend.call(h.request, callContext()));
      expect(declared.code).toBe('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE');
      behave((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"padding":"');
        const timer = setInterval(() => {
          if (!res.write('y'.repeat(16_384))) return;
        }, 1);
        res.on('close', () => clearInterval(timer));
      });
      const chunked = await failure(backend.call(h.request, callContext()));
      expect(chunked.code).toBe('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE');
    });

    it('cuts an attempt at the share of the deadline a fallback chain left it, with SY_ERR_ATTEMPT_TIMEOUT', async () => {
      behave(hang);
      const t0 = performance.now();
      const err = await failure(
        backend.call(h.request, callContext({ firstByteBy: systemClock.now() + 200 })),
      );
      const took = performance.now() - t0;
      expect(err.code).toBe('SY_ERR_ATTEMPT_TIMEOUT');
      expect(err.retryable).toBe(true); // the fallback chain moves on
      expect(took).toBeGreaterThanOrEqual(190);
      expect(took).toBeLessThan(caps.firstByteTimeoutMs);
      await expect.poll(() => up.calls[0]?.aborted, { timeout: 2_000 }).toBe(true);
    });

    it('keeps its own first-byte timeout when the share a fallback left it is longer', async () => {
      behave(hang);
      const err = await failure(
        backend.call(h.request, callContext({ firstByteBy: systemClock.now() + 1_800 })),
      );
      expect(err.code).toBe('SY_ERR_UPSTREAM_TIMEOUT');
    });

    it('answers within its share, and reads the body past it', async () => {
      behave((_req, res) => {
        const body = JSON.stringify(h.success);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(body.slice(0, 5));
        setTimeout(() => res.end(body.slice(5)), 250);
      });
      const ctx = callContext({ firstByteBy: systemClock.now() + 150 });
      h.checkSuccess(await backend.call(h.request, ctx));
    });

    it('answers a slow but in-time upstream', async () => {
      behave(delayed(100, json(200, h.success)));
      h.checkSuccess(await backend.call(h.request, callContext()));
    });
  });
}
