import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #13 finding 10: with the breaker off and an upstream answering 503 to everything, attempts
 * per request reached 2.12 at 5 requests/s, because the retry budget kept a floor of retries
 * per second (5/s over a 10 s window) whatever the traffic. The gateway runs as a child process
 * with the default retry settings; the failing upstream is a local server in this process that
 * counts every attempt.
 */
describe('the retry budget against an upstream that fails everything (#13 finding 10)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;
  beforeAll(async () => {
    up = await startUpstream(json(503, { error: { message: 'down' } }));
    gw = await startProcessGateway({
      config: {
        models: {
          // The breaker is off: the retry budget alone must keep the load from multiplying.
          primary: {
            backend: 'openai',
            url: `${up.url}/v1`,
            breaker: { consecutive_failures: 1_000_000, min_calls: 1_000_000 },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('keeps attempts per request at or under 1.10 with the breaker off', async () => {
    const requests = 60;
    for (let i = 0; i < requests; i++) {
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'primary', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.statusCode).toBe(502);
      await res.body.dump();
    }
    // The former floor alone allowed 50 retries in these few seconds (5/s over 10 s).
    expect(up.calls.length / requests).toBeLessThanOrEqual(1.1);
    expect(up.calls.length).toBeGreaterThan(requests); // the budget's reserve was used first
  });
});
