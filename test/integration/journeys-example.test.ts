import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';

const EXAMPLE = join(import.meta.dirname, '../../examples/superapp');
// The demo models are built by `npm install` / `npm start` (switchyard models build-demo).
const built = ['intent', 'embed', 'rank'].every((m) =>
  existsSync(join(EXAMPLE, 'models', m, '1', 'model.onnx')),
);
if (!built)
  console.warn(
    'journeys-example: demo models not built (run `npm run build && node dist/cli/index.js models build-demo`); skipping',
  );
const DEMO_KEY = 'sy_sk_lTGph5zWBOhYCBkYY8LuhOhQEVDTPwI82c6WHB';

describe.skipIf(!built)('the example super app journeys', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({
      configPath: join(EXAMPLE, 'switchyard.yaml'),
      port: 0,
      watch: false,
      logger: createLogger('silent'),
    });
  });
  afterAll(() => gw.close());

  const post = async (name: string, body: unknown) => {
    const res = await request(`${gw.url}/v1/journeys/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEMO_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: (await res.body.json()) as Record<string, unknown>,
    };
  };

  it('compile: all five journeys load with the demo models', () => {
    expect([...gw.runtime().journeys!.compiled.keys()].sort()).toEqual([
      'fraud-check',
      'offer-ranking',
      'personalized-search',
      'shopping-assistant',
      'support-triage',
    ]);
  });

  it('scores an offer with the in-process ranker and decides at the edge', async () => {
    const a = await post('offer-ranking', {
      input: { user: Array(16).fill(0.5), item: Array(16).fill(0.5) },
    });
    expect(a.status).toBe(200);
    expect(a.headers['x-switchyard-route']).toMatch(
      /^score=ok@edge\.rank>decide=to:(show|hide)>(show|hide)=respond$/,
    );
    const out = a.body['output'] as { show: boolean; score: number };
    expect(out.show).toBe(out.score >= 0.5);
  });
});
