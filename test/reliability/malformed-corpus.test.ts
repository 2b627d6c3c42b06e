import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKeys, gatesIdle, type AdminKeys } from '../support/gate-state.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { chatAndEmbeddings, startUpstream, type TestUpstream } from '../support/upstream.js';
import {
  corpusGatewayConfig,
  corpusKinds,
  malformedCorpus,
  runCase,
  type CaseResult,
} from './corpus/malformed.js';

/**
 * Issue #13: a corpus of malformed requests of more than 70 kinds (bad request lines, headers,
 * lengths, chunked bodies, smuggling attempts, broken and hostile JSON, wrong field types, bad
 * paths and methods, slow and partial senders, pipelining with garbage), sent over raw sockets to
 * the gateway running as a child process. It must never crash, never answer 5xx, answer every
 * malformed request with a JSON 4xx whose code is in the registry, and serve a normal request
 * afterwards with nothing left in flight. Reproducible: a fixed seed.
 */
const SEED = 20_260_613;
const PER_KIND = 2;
const AT_ONCE = 48;

describe('a corpus of malformed requests against the gateway process (#13)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;
  let keys: AdminKeys;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream(chatAndEmbeddings);
    keys = adminKeys();
    gw = await startProcessGateway({ config: corpusGatewayConfig(up.url, keys.tenants) });
    port = Number(new URL(gw.url).port);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('has more than 70 kinds', () => {
    expect(corpusKinds(keys.user).length).toBeGreaterThan(70);
  });

  it('answers every malformed request with a JSON 4xx, never a 5xx, and never crashes', async () => {
    const cases = malformedCorpus(keys.user, SEED, PER_KIND);
    const results: CaseResult[] = [];
    for (let i = 0; i < cases.length; i += AT_ONCE) {
      const batch = cases.slice(i, i + AT_ONCE);
      results.push(...(await Promise.all(batch.map((c) => runCase(port, c)))));
      // Alive after every batch: a crash is caught where it happened.
      expect(gw.child.exitCode, gw.output().slice(-2_000)).toBeNull();
    }
    // One line per failing case: its kind, what came back, and the start of what it sent.
    const failed = results
      .map((r, i) =>
        r.problems.length === 0
          ? ''
          : `${r.kind} [${r.statuses.join(',')}] ${r.problems.join('; ')} <- ${JSON.stringify(cases[i]!.bytes.toString('latin1').slice(0, 100))}`,
      )
      .filter((line) => line !== '');
    expect(failed).toEqual([]);
    // Most kinds are answered; what is left are the clients that hang up before an answer.
    const answered = new Set(results.filter((r) => r.statuses.length > 0).map((r) => r.kind));
    expect(answered.size).toBeGreaterThan(65);
    expect(gw.output()).not.toMatch(/SY_ERR_INTERNAL|uncaught|unhandled/i);
  }, 60_000);

  it('still serves a normal request afterwards, with nothing left in flight', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.user}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { object: string }).object).toBe('chat.completion');
    const after = await gatesIdle(gw.url, keys.admin);
    for (const [name, g] of Object.entries(after))
      expect(g.in_flight + g.queued, `${name}: ${JSON.stringify(g)}`).toBe(0);
    expect(gw.child.exitCode).toBeNull();
  });
});
