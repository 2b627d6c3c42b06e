import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOpenLoop, type Sample } from '../../bench/lib/open-loop.js';
import { seededRandom } from '../../src/core/random.js';
import { startCapacityUpstream, type CapacityUpstream } from '../support/capacity-upstream.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { call } from '../support/http-call.js';

/**
 * Issue 14: overload controls act on all traffic. Journey traffic (an in-process classifier,
 * then a central model of known capacity C) and in-process model traffic are driven, open loop,
 * to 3 × C against the real gateway process. The mode must move, interactive traffic must keep
 * ≥ 99.9% success, and the mode's switch (shed background) must act on journeys and on direct
 * in-process model calls alike.
 */
const STORE = join(import.meta.dirname, '../../examples/superapp/models/intent');
const built = existsSync(join(STORE, '1', 'model.onnx'));
if (!built) console.warn('overload-journeys: demo models not built (npm run build); skipping');

const SLOTS = 2;
const SERVICE_MS = 50;
const CAPACITY = (SLOTS * 1000) / SERVICE_MS; // 40 requests/s
const DURATION_MS = 12_000;

describe.skipIf(!built)('journeys and in-process models at 3× capacity', () => {
  let large: CapacityUpstream;
  let gw: ProcessGateway;
  let samples: Sample[] = [];
  const modesSeen = new Set<string>();

  beforeAll(async () => {
    large = await startCapacityUpstream(SLOTS, SERVICE_MS);
    gw = await startProcessGateway({
      config: {
        log: { level: 'error' },
        models: {
          large: {
            backend: 'openai',
            url: `${large.url}/v1`,
            tier: 'central',
            timeout_ms: 30_000,
            pool: { connections: 256 },
            retry: { max_attempts: 1 },
            breaker: { consecutive_failures: 1_000_000, min_calls: 1_000_000 },
          },
          intent: {
            backend: 'onnx',
            store: STORE,
            tier: 'edge',
            batch: { max: 32, delay_us: 1_000 },
          },
        },
        journeys: {
          triage: {
            class: 'interactive',
            stages: [
              { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
              { id: 'answer', infer: { model: 'large', prompt: 'input.text', max_tokens: 16 } },
              { respond: { body: { intent: 'intent.label', answer: 'answer.text' } } },
            ],
          },
          bulk: {
            class: 'background',
            stages: [
              { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
              { id: 'answer', infer: { model: 'large', prompt: 'input.text', max_tokens: 16 } },
              { respond: { body: { intent: 'intent.label', answer: 'answer.text' } } },
            ],
          },
        },
        modes: {
          sample_ms: 250,
          enter_samples: 2,
          exit_samples: 8,
          min_hold_ms: 4_000,
          surge: {
            // Gates that shed early keep queues short: the shed rate is the overload signal.
            enter: { queue_delay_ms: 40, shed_rate: 0.3 },
            exit: { queue_delay_ms: 5, shed_rate: 0.05 },
            switches: { shed_classes: ['background', 'batch'] },
          },
          emergency: { enter: { queue_delay_ms: 5_000 }, exit: { queue_delay_ms: 1_000 } },
        },
      },
      admin: true,
    });
  }, 30_000);

  afterAll(async () => {
    await gw?.close();
    await large?.close();
  });

  it('moves the mode, keeps interactive traffic whole, and sheds background journeys and model calls', async () => {
    const auth = { authorization: `Bearer ${gw.key}` };
    const infer = JSON.stringify({
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [1, 512], data: new Array(512).fill(0.01) },
      ],
    });
    const journeyBody = JSON.stringify({ input: 'where is my parcel, it is late' });
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const m = await call(gw.url, 'GET', '/admin/mode', gw.key).catch(() => undefined);
        if (m?.status === 200) modesSeen.add(String(m.body['mode']));
        if (process.env.DEBUG_OVERLOAD === '1' && m !== undefined)
          console.log(
            m.body['mode'],
            JSON.stringify((m.body['gates'] as Record<string, unknown>)['large']),
            large.served(),
          );
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      samples = await runOpenLoop({
        origin: gw.url,
        path: '/v1/journeys/triage',
        durationMs: DURATION_MS,
        connections: 512,
        timeoutMs: 20_000,
        random: seededRandom(14),
        classes: [
          // Interactive: 0.4 C of journeys that need the central model.
          {
            name: 'interactive-journey',
            ratePerS: 0.4 * CAPACITY,
            headers: auth,
            body: journeyBody,
          },
          // Background: 2.6 C more of the same journeys, and in-process model calls.
          {
            name: 'background-journey',
            ratePerS: 2.6 * CAPACITY,
            headers: auth,
            body: journeyBody,
            path: '/v1/journeys/bulk',
          },
          {
            name: 'background-onnx',
            ratePerS: 0.5 * CAPACITY,
            headers: { ...auth, 'x-switchyard-class': 'background' },
            body: infer,
            path: '/v2/models/intent/infer',
          },
        ],
      });
    } finally {
      polling = false;
      await poller;
    }
    const of = (cls: string) => samples.filter((s) => s.cls === cls);
    const interactive = of('interactive-journey');
    const ok = interactive.filter((s) => s.status === 200).length;
    const failures = interactive
      .filter((s) => s.status !== 200)
      .map((s) => `${s.status} ${s.error}`);
    console.log(
      `interactive ${ok}/${interactive.length} ok; modes seen: ${[...modesSeen].join(', ')}; ` +
        `upstream served ${large.served()}`,
    );
    expect(interactive.length).toBeGreaterThan(0.3 * CAPACITY * (DURATION_MS / 1000));
    expect(ok / interactive.length, failures.slice(0, 40).join('\n')).toBeGreaterThanOrEqual(0.999);
    // The mode moved on the signals of the gates that journey traffic passes.
    expect(modesSeen.has('surge')).toBe(true);
    // The mode's switch acted on journey traffic and on direct in-process model calls alike.
    const shedByMode = (cls: string) =>
      of(cls).filter((s) => s.status === 503 && (s.error ?? '').includes('shed in surge mode'))
        .length;
    expect(shedByMode('background-journey')).toBeGreaterThan(0);
    expect(shedByMode('background-onnx')).toBeGreaterThan(0);
    // Nothing failed for any other reason than being shed.
    const other = samples.filter((s) => s.status !== 200 && s.status !== 503);
    expect(other.map((s) => `${s.cls} ${s.status} ${s.error}`).slice(0, 5)).toEqual([]);
  }, 60_000);
});
