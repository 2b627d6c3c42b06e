import { seededRandom } from '../../src/core/random.js';
import { startProcessGateway } from '../../test/support/gateway-process.js';
import { json, startUpstream } from '../../test/support/upstream.js';
import { runOpenLoop, type Sample } from '../lib/open-loop.js';
import type { FaultScenario, FaultTargetResult } from './scenario.js';

/**
 * Issue #13, finding 10: an upstream answering 503 to everything, with the breaker off, took
 * 2.12 attempts per request at 5 requests/s and 1.37 at 20/s: the retry budget kept a floor of
 * retries per second whatever the traffic. Target: attempts per request <= 1.10 at 5, 20 and
 * 200 requests/s, breaker on and off. Each measurement starts a fresh gateway (its budget full,
 * its breaker closed: the worst start), sends an open-loop Poisson load and counts the attempts
 * the upstream saw. Default retry settings; "breaker off" sets its thresholds out of reach.
 */
const RATES = [5, 20, 200] as const;
const TARGET = 1.1;
const BODY = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
const BREAKER_OFF = { consecutive_failures: 1_000_000_000, min_calls: 1_000_000_000 };

/** Requests admission shed before any model call (they reach no upstream: not in the ratio). */
async function shedCount(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('switchyard_admission_shed_total{')) n += Number(line.split(' ').at(-1));
  return n;
}

function statuses(samples: readonly Sample[]): string {
  const counts = new Map<number, number>();
  for (const s of samples) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
  return [...counts].map(([status, n]) => `${status}:${n}`).join(' ');
}

export const scenario: FaultScenario = {
  id: 'retry-budget',
  title: 'Retry budget: attempts per request against an upstream answering 503 to everything',
  async run(ctx) {
    // Long enough at each rate for "for long": at least 20 s (5 s quick) and 150 requests (50).
    const durationFor = (rate: number): number =>
      ctx.quick ? Math.max(5_000, (50 / rate) * 1000) : Math.max(20_000, (150 / rate) * 1000);
    const up = await startUpstream(json(503, { error: { message: 'down' } }));
    const results: FaultTargetResult[] = [];
    try {
      for (const breaker of ['on', 'off'] as const) {
        for (const rate of RATES) {
          const gw = await startProcessGateway({
            config: {
              models: {
                chat: {
                  backend: 'openai',
                  url: `${up.url}/v1`,
                  ...(breaker === 'off' ? { breaker: BREAKER_OFF } : {}),
                },
              },
            },
          });
          try {
            const before = up.calls.length;
            const samples = await runOpenLoop({
              origin: gw.url,
              path: '/v1/chat/completions',
              durationMs: durationFor(rate),
              classes: [
                {
                  name: 'chat',
                  ratePerS: rate,
                  headers: { authorization: `Bearer ${gw.key}` },
                  body: BODY,
                },
              ],
              connections: 64,
              timeoutMs: 10_000,
              random: seededRandom(rate),
            });
            const attempts = up.calls.length - before;
            // The ratio is over the requests that reached the model: those admission shed, and
            // those the client gave up on (status 0), are left out, which can only raise it.
            const shed = await shedCount(gw.url);
            const lost = samples.filter((x) => x.status === 0).length;
            const requests = samples.length - shed - lost;
            const perRequest = attempts / requests;
            ctx.log(
              `breaker ${breaker}, ${rate} rps: ${samples.length} sent, ${shed} shed, ${lost} lost, ` +
                `${attempts} attempts, statuses ${statuses(samples)}`,
            );
            results.push({
              name: `attempts per request at ${rate} rps, breaker ${breaker}`,
              target: `<= ${TARGET.toFixed(2)}`,
              value: perRequest.toFixed(3),
              pass: requests > 0 && perRequest <= TARGET,
              detail: {
                sent: samples.length,
                shed,
                lost,
                requests,
                attempts,
                statuses: statuses(samples),
              },
            });
          } finally {
            await gw.close();
          }
        }
      }
    } finally {
      await up.close();
    }
    return results;
  },
};
