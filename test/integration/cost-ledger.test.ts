import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteCostLedger } from '../../src/state/sqlite-cost-ledger.js';
import { dayOf } from '../../src/observability/cost-recorder.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { call, errorCode } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/** The cost ledger (#15 item 4) in one embedded gateway: totals, flushes, daily budgets. */

const chat = (gw: TestGateway) =>
  call(gw.url, 'POST', '/v1/chat/completions', gw.key, {
    model: 'chat',
    messages: [{ role: 'user', content: 'hi' }],
  });

describe('cost ledger', () => {
  let up: TestUpstream | undefined;
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    await up?.close();
    gw = up = undefined;
  });

  async function start(extra: Record<string, unknown>, tenants?: Record<string, unknown>) {
    up = await startUpstream(
      json(200, chatCompletion('ok', { prompt_tokens: 100, completion_tokens: 50 })),
    );
    const base = {
      models: {
        chat: openaiModel(up.url, { cost: { in_per_1k: 2, out_per_1k: 4, per_call: 0.5 } }),
      },
    };
    gw = await startTestGateway({ config: { ...base, ...extra } });
    if (tenants !== undefined) {
      // The tenant's budget, merged into the base tenant (its key stays valid).
      const cfg = gw.gateway.runtime().snapshot.config;
      gw.writeConfig({
        ...base,
        ...extra,
        tenants: { acme: { keys: cfg.tenants['acme']!.keys, models: ['*'], ...tenants } },
      });
      expect((await gw.gateway.reload()).result).toBe('applied');
    }
    return gw;
  }

  it('writes totals to the file `costs.sqlite` names, every flush_ms, off the request path', async () => {
    const g = await start({ costs: { sqlite: 'ledger/my-costs.db', flush_ms: 50 } });
    expect((await chat(g)).status).toBe(200);
    expect((await chat(g)).status).toBe(200);
    const file = join(g.dir, 'ledger/my-costs.db');
    expect(existsSync(file)).toBe(true);
    const reader = SqliteCostLedger.open(file);
    try {
      // Written by the timer, while the gateway still runs.
      let rows = await reader.totals({ groupBy: 'model' });
      for (let i = 0; i < 50 && rows[0]?.calls !== 2; i++) {
        await new Promise((r) => setTimeout(r, 20));
        rows = await reader.totals({ groupBy: 'model' });
      }
      // Each call: 0.5 + 100 * 2 / 1000 + 50 * 4 / 1000 = 0.9
      expect(rows).toEqual([
        expect.objectContaining({
          key: 'chat',
          calls: 2,
          inputTokens: 200,
          outputTokens: 100,
          costNanos: 1_800_000_000,
        }),
      ]);
      const requests = await reader.totals({ groupBy: 'journey' });
      expect(requests[0]).toMatchObject({ key: '', requests: 2, calls: 2 });
    } finally {
      await reader.close();
    }
  });

  it('holds totals until flush_ms passes (and writes them at close)', async () => {
    const g = await start({ costs: { flush_ms: 60_000 } });
    expect((await chat(g)).status).toBe(200);
    const file = join(g.dir, 'var/costs.db');
    const reader = SqliteCostLedger.open(file);
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(await reader.totals({ groupBy: 'tenant' })).toEqual([]);
      await g.close();
      gw = undefined;
      expect(await reader.spentNanos('acme', dayOf(Date.now()))).toBe(900_000_000);
    } finally {
      await reader.close();
    }
  });

  it('refuses with 429 SY_ERR_BUDGET_EXHAUSTED at the first request after the daily budget is spent', async () => {
    // 0.9 a call, 2.5 a day: calls 1-3 are admitted (spent 0, 0.9, 1.8 < 2.5), the 4th is not.
    const g = await start({}, { budget: { daily_spend: 2.5 } });
    for (let i = 1; i <= 3; i++) expect((await chat(g)).status, `request ${i}`).toBe(200);
    const refused = await chat(g);
    expect(refused.status).toBe(429);
    expect(errorCode(refused)).toBe('SY_ERR_BUDGET_EXHAUSTED');
    const retry = Number(refused.headers['retry-after']);
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(86_400);
    expect(up!.calls).toHaveLength(3);
  });

  it('lets the same calls through without a budget', async () => {
    const g = await start({});
    for (let i = 1; i <= 4; i++) expect((await chat(g)).status).toBe(200);
  });
});
