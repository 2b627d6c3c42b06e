import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { DEFAULTS } from '../../src/config/defaults.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import {
  chatCompletion,
  hang,
  json,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #13 finding 3: an upstream that accepts the connection and never answers ran every request
 * into a 504 at the deadline, under the defaults: its first-byte timeout was the deadline, the
 * fallback never ran and the breaker never opened. The gateway runs as a child process; the
 * black hole and the fallback are local servers in this process.
 */
const CHAT = { messages: [{ role: 'user', content: 'hi' }] };

interface Answer {
  readonly status: number;
  readonly route: string;
  readonly text: string;
  readonly ms: number;
}

async function chat(gw: ProcessGateway, model: string, deadlineMs: number): Promise<Answer> {
  const t0 = performance.now();
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${gw.key}`,
      'content-type': 'application/json',
      'x-switchyard-timeout-ms': String(deadlineMs),
    },
    body: JSON.stringify({ ...CHAT, model }),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    route: String(res.headers['x-switchyard-route'] ?? ''),
    text,
    ms: performance.now() - t0,
  };
}

const openai = (url: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  backend: 'openai',
  url: `${url}/v1`,
  ...extra,
});

describe('a black-holed upstream with a fallback (#13 finding 3)', () => {
  let hole: TestUpstream;
  let backup: TestUpstream;
  let gw: ProcessGateway;
  /** Attempts the black hole saw for one model (the gateway sends the model's name upstream). */
  const attemptsOn = (model: string): number =>
    hole.calls.filter((c) => (JSON.parse(c.body) as { model?: string }).model === model).length;

  beforeAll(async () => {
    hole = await startUpstream(hang);
    backup = await startUpstream(json(200, chatCompletion('from-backup')));
    // One gateway; each model has its own breaker. `primary` and `lonely` have nothing but
    // the defaults (and the fallback): the defaults are shares of the deadline, so the client's
    // deadline header alone scales the whole picture down to a test's time.
    gw = await startProcessGateway({
      config: {
        models: {
          primary: openai(hole.url, { fallback: ['backup'] }),
          lonely: openai(hole.url),
          brief: openai(hole.url, { fallback: ['backup'], first_byte_share: 0.1 }),
          patient: openai(hole.url, { fallback: ['backup'], first_byte_share: 0.9 }),
          backup: openai(backup.url),
        },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await hole.close();
    await backup.close();
  });

  it('ships a first-byte timeout well under the default deadline, and a share that leaves the fallback half', () => {
    // At 30 s each, the black hole held every request until the deadline. The full-size picture
    // (10 s timeouts under a 30 s deadline) is what `npm run bench:faults blackhole` measures.
    expect(DEFAULTS.model.first_byte_timeout_ms).toBeLessThanOrEqual(
      DEFAULTS.server.deadline.default_ms / 2,
    );
    expect(DEFAULTS.model.first_byte_share).toBeLessThanOrEqual(0.5);
  });

  it('answers from the fallback within the deadline under the defaults, then opens the breaker so later requests skip the black hole', async () => {
    const deadline = 1_500;
    for (let i = 0; i < 5; i++) {
      // A 200 from the fallback is an answer within the deadline: the gateway enforces it.
      const a = await chat(gw, 'primary', deadline);
      expect(a.status).toBe(200);
      expect(a.text).toContain('from-backup');
      expect(a.route).toBe('primary#1:ATTEMPT_TIMEOUT>backup#1:ok');
    }
    expect(attemptsOn('primary')).toBe(5);
    // Five attempts cut while the upstream answered nobody: the breaker's default run of failures.
    const after = await chat(gw, 'primary', deadline);
    expect(after.status).toBe(200);
    expect(after.route).toBe('primary#1:CIRCUIT_OPEN>backup#1:ok');
    expect(attemptsOn('primary')).toBe(5);
    const metrics = await (await request(`${gw.url}/metrics`)).body.text();
    expect(metrics).toMatch(/^switchyard_breaker_state\{backend="primary"\} 1$/m);
  });

  it('counts a deadline expiry against the breaker of a model without a fallback', async () => {
    for (let i = 0; i < 5; i++) {
      const a = await chat(gw, 'lonely', 300);
      expect(a.status).toBe(504);
      expect(a.text).toContain('SY_ERR_DEADLINE_EXCEEDED');
    }
    const after = await chat(gw, 'lonely', 300);
    expect(after.status).toBe(503); // fails fast instead of holding a slot for the whole deadline
    expect(after.text).toContain('SY_ERR_CIRCUIT_OPEN');
    expect(attemptsOn('lonely')).toBe(5);
  });

  it('gives the primary only its first_byte_share of the deadline when a fallback follows', async () => {
    const deadline = 3_000;
    const brief = await chat(gw, 'brief', deadline);
    const patient = await chat(gw, 'patient', deadline);
    for (const a of [brief, patient]) {
      expect(a.status).toBe(200);
      expect(a.text).toContain('from-backup');
    }
    // Cut at 10% (300 ms) and at 90% (2,700 ms) of the deadline: timers never fire early.
    expect(brief.ms).toBeLessThan(1_500);
    expect(patient.ms).toBeGreaterThanOrEqual(2_000);
  });
});
