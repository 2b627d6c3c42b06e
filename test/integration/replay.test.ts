import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { featurize } from '../../src/backends/onnx/text-features.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { runCli } from '../../src/cli/program.js';
import { intentData } from '../../src/modelkit/demo-data.js';
import { captureIo } from '../support/cli-io.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';
import { call, errorCode } from '../support/http-call.js';

/**
 * Replay (#15 item 3): real traffic against the demo `intent` classifier (fp32, version 1) is
 * logged with its payloads by one gateway; a second gateway on the same inference log replays
 * it against the int8 variant (version 2). The test runs both ONNX models itself with
 * onnxruntime-node and checks the report's agreement, latency deltas and cost against what it
 * computes; and that a replay leaves no trace: quota, ledger, cache and log unchanged.
 */

const EXAMPLE = join(import.meta.dirname, '../../examples/superapp/models/intent');
let store = EXAMPLE;
let built: string | undefined;

const admin = generateKey('sk');
const other = generateKey('sk');
const N_DIRECT = 24;
const N_JOURNEY = 8;
const N_BARE = 3;
const PER_CALL = 0.001;

interface Card {
  readonly text: { readonly dims: number; readonly input: string };
  readonly output: string;
  readonly labels: readonly string[];
}
let card: Card;
const texts = intentData(7, { total: 400 })
  .heldout.slice(0, N_DIRECT)
  .map((e) => e.text);
const journeyTexts = texts.slice(0, N_JOURNEY).map((t) => `${t} please`);

/**
 * Class probabilities of one ONNX model on texts, run here with onnxruntime-node one row at a time
 * as the gateway ran them (the int8 model quantizes its activations per batch).
 */
async function probsOf(version: string, xs: readonly string[]): Promise<number[][]> {
  const session = await ort.InferenceSession.create(join(store, version, 'model.onnx'));
  const rows: number[][] = [];
  for (const x of xs) {
    const features = featurize([x], { ...card.text, featurizer: 'hashing-v1' } as never);
    const out = await session.run({
      [card.text.input]: new ort.Tensor('float32', features, [1, card.text.dims]),
    });
    rows.push(Array.from(out[card.output]!.data as Float32Array));
  }
  await session.release();
  return rows;
}

/** Arg-max labels of one ONNX model on texts. */
async function labelsOf(version: string, xs: readonly string[]): Promise<number[]> {
  return (await probsOf(version, xs)).map((row) => row.indexOf(Math.max(...row)));
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! ** 2;
    nb += b[i]! ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

function config(logPath: string): Record<string, unknown> {
  return {
    tenants: {
      acme: {
        keys: [{ id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true }],
        models: ['*'],
        quotas: { window_s: 60, requests: 100_000, spend_per_day: 100 },
      },
      beta: { keys: [{ id: 'b', hash: hashKey(other, TEST_SECRET) }], models: ['*'] },
    },
    models: {
      intent: {
        backend: 'onnx',
        store,
        version_policy: 'all',
        default_version: '1',
        tier: 'edge',
        cost: { per_call: PER_CALL },
      },
    },
    journeys: {
      triage: {
        class: 'interactive',
        stages: [
          { id: 'cache', cache: { key: 'input.text' } },
          { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
          { id: 'reply', respond: { body: { intent: 'intent.label' } } },
        ],
      },
    },
    inference_log: {
      enabled: true,
      path: logPath,
      flush_ms: 50,
      payloads: { acme: { direct: true, journeys: ['triage'] } },
    },
    costs: { flush_ms: 50 },
  };
}

let dir: string;
let live: TestGateway;
let gw: TestGateway;
const ids = { direct: [] as string[], journey: [] as string[], bare: [] as string[] };

function inferBody(text: string) {
  return {
    inputs: [
      {
        name: card.text.input,
        datatype: 'FP32',
        shape: [1, card.text.dims],
        data: Array.from(featurize([text], { ...card.text, featurizer: 'hashing-v1' } as never)),
      },
    ],
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-replay-'));
  if (!existsSync(join(store, '2', 'model.onnx'))) {
    // Not built in this checkout: build the demo models here, as `npm install` does.
    built = join(dir, 'models');
    const io = captureIo();
    expect(await runCli(['models', 'build-demo', '--out', built], io), io.stderr()).toBe(0);
    store = join(built, 'intent');
  }
  card = JSON.parse(readFileSync(join(store, '1', 'model.json'), 'utf8')) as Card;
  const logPath = join(dir, 'inference.db');
  // The live gateway: real traffic, logged with payloads (acme) and without (beta).
  live = await startTestGateway({ config: config(logPath) });
  for (const [i, text] of texts.entries()) {
    const id = `direct-${i}`;
    const r = await call(live.url, 'POST', '/v2/models/intent/infer', admin, inferBody(text), {
      'x-request-id': id,
    });
    expect(r.status, r.text).toBe(200);
    ids.direct.push(id);
  }
  for (const [i, text] of journeyTexts.entries()) {
    const id = `journey-${i}`;
    const r = await call(
      live.url,
      'POST',
      '/v1/journeys/triage',
      admin,
      { input: { text } },
      {
        'x-request-id': id,
      },
    );
    expect(r.status, r.text).toBe(200);
    ids.journey.push(id);
  }
  for (let i = 0; i < N_BARE; i++) {
    const id = `bare-${i}`;
    const r = await call(live.url, 'POST', '/v2/models/intent/infer', other, inferBody(texts[i]!), {
      'x-request-id': id,
    });
    expect(r.status, r.text).toBe(200);
    ids.bare.push(id);
  }
  await live.close();
  // The gateway that replays: a fresh process state (quota, cache, ledger) on the same log.
  gw = await startTestGateway({ config: config(logPath) });
}, 180_000);

afterAll(async () => {
  await gw?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Side {
  versions: string[];
  route: string;
  ms: number;
  cost: number;
  outcome: string;
}
interface Row {
  id: string;
  skipped?: string;
  kind: string;
  target: string;
  baseline: Side;
  candidate: Side;
  exact: boolean | null;
  same_label: boolean | null;
  cosine: number | null;
  agree: boolean | null;
  latency_delta_ms: number;
  cost_delta: number;
  route_changed: boolean;
}
interface Report {
  candidate: Record<string, unknown>;
  summary: {
    replayed: number;
    skipped: Record<string, number>;
    compared: number;
    agreed: number;
    agreement_rate: number;
    exact_rate: number;
    candidate_errors: number;
    route_changes: number;
    latency_delta_ms: { p50: number; p95: number; mean: number };
    cost: { baseline: number; candidate: number; delta: number };
  };
  requests: Row[];
}

const replay = async (body: Record<string, unknown>) => {
  const a = await call(gw.url, 'POST', '/admin/replay', admin, body);
  expect(a.status, a.text).toBe(200);
  return a.body as unknown as Report;
};

const nearestRank = (sorted: number[], q: number) =>
  sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;

/** What the log and the gateway's counters hold: a replay must leave all of it as it was. */
async function traces() {
  const list = await call(gw.url, 'GET', '/admin/requests?limit=1000', admin);
  const records = list.body['requests'] as { id: string }[];
  let calls = 0;
  for (const r of records) {
    const d = await call(gw.url, 'GET', `/admin/requests/${r.id}`, admin);
    calls += (d.body['calls'] as unknown[]).length;
  }
  const costs = await call(gw.url, 'GET', '/admin/costs?group_by=tenant', admin);
  const ac = gw.gateway.admission;
  return {
    records: records.length,
    calls,
    costs: costs.body['groups'],
    spend: await ac.quotaUsage('t:acme:spend', 'day'),
    requests: await ac.quotaUsage('t:acme:req', { ms: 60_000 }),
  };
}

describe('switchyard replay against the int8 candidate', () => {
  it('reports agreement, latency and cost deltas that match what the test computes itself', async () => {
    const fp32 = await labelsOf('1', texts);
    const int8 = await labelsOf('2', texts);
    const p32 = await probsOf('1', texts);
    const p8 = await probsOf('2', texts);
    const report = await replay({ candidate: { model: 'intent', version: '2' }, limit: 1000 });
    expect(report.candidate).toEqual({ model: 'intent', version: '2', replaces: 'intent' });
    const rows = new Map(report.requests.map((r) => [r.id, r]));
    // Every direct call: the same label exactly when the two models' arg-max agree.
    for (const [i, id] of ids.direct.entries()) {
      const r = rows.get(id)!;
      expect(r.kind).toBe('model');
      expect(r.baseline.versions).toEqual(['intent@1']);
      expect(r.candidate.versions).toEqual(['intent@2']);
      expect(r.candidate.outcome).toBe('ok');
      expect(r.same_label, id).toBe(fp32[i] === int8[i]);
      expect(r.agree).toBe(fp32[i] === int8[i]);
      expect(r.cosine!).toBeCloseTo(cosine(p32[i]!, p8[i]!), 5);
      // The baseline is the logged call, read back here from the log.
      const d = await call(gw.url, 'GET', `/admin/requests/${id}`, admin);
      const loggedMs = (d.body['calls'] as { ms: number; origin: string }[]).find(
        (c) => c.origin === 'direct',
      )!.ms;
      expect(r.baseline.ms).toBeCloseTo(loggedMs, 9);
      expect(r.candidate.ms).toBeGreaterThan(0);
      expect(r.latency_delta_ms).toBeCloseTo(r.candidate.ms - loggedMs, 9);
      expect(r.baseline.cost).toBeCloseTo(PER_CALL, 12);
      expect(r.candidate.cost).toBeCloseTo(PER_CALL, 12);
    }
    // Journeys: the same answer when the two models give the same label.
    const jf = await labelsOf('1', journeyTexts);
    const ji = await labelsOf('2', journeyTexts);
    for (const [i, id] of ids.journey.entries()) {
      const r = rows.get(id)!;
      expect(r.kind).toBe('journey');
      expect(r.target).toBe('triage');
      expect(r.exact).toBe(jf[i] === ji[i]);
      expect(r.agree).toBe(jf[i] === ji[i]);
      // The cache stage missed (a replay reads no cache) and the classifier ran on version 2.
      expect(r.candidate.route).toMatch(/^cache=miss>intent=\S*@edge\.intent>reply=/);
      expect(r.candidate.versions).toEqual(['intent@2']);
    }
    // Records without a payload are skipped and counted, not replayed.
    for (const id of ids.bare) expect(rows.get(id)).toEqual({ id, skipped: 'no_payload' });
    const s = report.summary;
    expect(s.skipped).toEqual({
      no_payload: N_BARE,
      unsupported_route: 0,
      not_found: 0,
      no_model: 0,
    });
    expect(s.replayed).toBe(N_DIRECT + N_JOURNEY);
    const agreeing =
      fp32.filter((l, i) => l === int8[i]).length + jf.filter((l, i) => l === ji[i]).length;
    expect(s.compared).toBe(N_DIRECT + N_JOURNEY);
    expect(s.agreed).toBe(agreeing);
    expect(s.agreement_rate).toBeCloseTo(agreeing / (N_DIRECT + N_JOURNEY), 12);
    const deltas = report.requests
      .filter((r) => r.skipped === undefined)
      .map((r) => r.latency_delta_ms)
      .sort((a, b) => a - b);
    expect(s.latency_delta_ms.p50).toBe(nearestRank(deltas, 0.5));
    expect(s.latency_delta_ms.p95).toBe(nearestRank(deltas, 0.95));
    // Each request cost one call at the logged time and one in the replay: no cost delta.
    expect(s.cost.baseline).toBeCloseTo((N_DIRECT + N_JOURNEY) * PER_CALL, 9);
    expect(s.cost.delta).toBeCloseTo(0, 9);
    expect(s.candidate_errors).toBe(0);
  });

  it('leaves no trace: quota, ledger, cache and the inference log are as they were', async () => {
    const before = await traces();
    await replay({ candidate: { model: 'intent', version: '2' }, limit: 1000 });
    await new Promise((r) => setTimeout(r, 150)); // past a ledger and a log flush
    const after = await traces();
    expect(after.records).toBe(before.records);
    expect(after.calls).toBe(before.calls);
    expect(after.costs).toEqual(before.costs);
    expect(after.spend).toBe(before.spend);
    expect(after.requests).toBeLessThanOrEqual(before.requests);
    // The replay wrote no cache entry: the first live request for a replayed text misses, the
    // second hits; and the live request does count (the counters above are live).
    const first = await call(gw.url, 'POST', '/v1/journeys/triage', admin, {
      input: { text: journeyTexts[0] },
    });
    expect(first.headers['x-switchyard-route']).toMatch(/^cache=miss>/);
    const second = await call(gw.url, 'POST', '/v1/journeys/triage', admin, {
      input: { text: journeyTexts[0] },
    });
    expect(second.headers['x-switchyard-route']).toMatch(/^cache=hit/);
    expect(await gw.gateway.admission.quotaUsage('t:acme:spend', 'day')).toBeGreaterThan(
      after.spend,
    );
  });

  it('keeps its model calls in the log, under the replayed request, only when asked', async () => {
    const id = ids.direct[0]!;
    const report = await replay({
      ids: [id],
      candidate: { model: 'intent', version: '2' },
      log: true,
    });
    expect(report.summary.replayed).toBe(1);
    let calls: { origin: string; version: string }[] = [];
    for (let i = 0; i < 50; i++) {
      const d = await call(gw.url, 'GET', `/admin/requests/${id}`, admin);
      calls = d.body['calls'] as typeof calls;
      if (calls.some((c) => c.origin === 'replay')) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(calls.filter((c) => c.origin === 'replay')).toEqual([
      expect.objectContaining({ origin: 'replay', version: '2' }),
    ]);
  });

  it('replays a request that pinned a version on that version, unless the candidate replaces it', async () => {
    const sent = await call(
      gw.url,
      'POST',
      '/v2/models/intent/versions/2/infer',
      admin,
      inferBody(texts[3]!),
      {
        'x-request-id': 'pinned-0',
      },
    );
    expect(sent.status).toBe(200);
    for (let i = 0; i < 100; i++) {
      if ((await call(gw.url, 'GET', '/admin/requests/pinned-0', admin)).status === 200) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const same = await replay({ ids: ['pinned-0'] });
    expect(same.requests[0]!.baseline.versions).toEqual(['intent@2']);
    expect(same.requests[0]!.candidate.versions).toEqual(['intent@2']);
    expect(same.requests[0]!.exact).toBe(true);
    const other = await replay({ ids: ['pinned-0'], candidate: { model: 'intent', version: '1' } });
    expect(other.requests[0]!.candidate.versions).toEqual(['intent@1']);
  });

  it('answers a bad replay request with a clear error naming the field', async () => {
    const bad = async (body: unknown, status: number, code: string, param?: string) => {
      const a = await call(gw.url, 'POST', '/admin/replay', admin, body);
      expect(a.status, a.text).toBe(status);
      expect(errorCode(a)).toBe(code);
      if (param !== undefined) expect((a.body['error'] as { param?: string }).param).toBe(param);
    };
    await bad({ candidate: { model: 'nope' } }, 404, 'SY_ERR_MODEL_NOT_FOUND', 'candidate.model');
    await bad(
      { candidate: { model: 'intent', version: '9' } },
      404,
      'SY_ERR_MODEL_NOT_FOUND',
      'candidate.version',
    );
    await bad({ candidate: 'intent' }, 400, 'SY_ERR_INVALID_REQUEST', 'candidate');
    await bad({ limit: 0 }, 400, 'SY_ERR_INVALID_REQUEST', 'limit');
    await bad({ since: 'yesterday' }, 400, 'SY_ERR_INVALID_REQUEST', 'since');
    await bad({ ids: ['a'], tenant: 'acme' }, 400, 'SY_ERR_INVALID_REQUEST', 'ids');
    await bad({ frobnicate: 1 }, 400, 'SY_ERR_INVALID_REQUEST', 'frobnicate');
    const plain = await call(gw.url, 'POST', '/admin/replay', other, {});
    expect(plain.status).toBe(403);
    expect(errorCode(plain)).toBe('SY_ERR_ADMIN_REQUIRED');
  });
});

describe('the switchyard replay command', () => {
  it('replays through a running gateway with a progress bar, prints a table, and writes --out JSON', async () => {
    const io = captureIo();
    const out = join(dir, 'report.json');
    const code = await runCli(
      [
        'replay',
        '--url',
        gw.url,
        '--key',
        admin,
        '--candidate',
        'intent@2',
        '--journey',
        'triage',
        '--limit',
        '5',
        '--out',
        out,
      ],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    expect(io.stderr()).toMatch(/replay \[#+\] 100% 5\/5/);
    expect(io.stdout()).toMatch(/^id\s+target\s+agree/);
    expect(io.stdout()).toMatch(/agreement\s+\d+\.\d% \(\d\/5\)/);
    expect(io.stdout()).toMatch(/latency Δ ms\s+p50 [+-]/);
    const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
    expect(report.summary.replayed).toBe(5);
    expect(report.requests.every((r) => r.kind === 'journey')).toBe(true);
  });

  it('prints the report as JSON with --json', async () => {
    const io = captureIo();
    const code = await runCli(
      [
        'replay',
        '--url',
        gw.url,
        '--key',
        admin,
        '--candidate',
        'intent@2',
        '--ids',
        ids.direct[1]!,
        '--json',
      ],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    const report = JSON.parse(io.stdout()) as Report;
    expect(report.requests.map((r) => r.id)).toEqual([ids.direct[1]]);
  });

  it('opens the config’s gateway in this process with --config, and replays the same way', async () => {
    const io = captureIo();
    const id = ids.direct[2]!;
    const code = await runCli(
      ['replay', '--config', gw.configPath, '--candidate', 'intent@2', '--ids', id, '--json'],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    const report = JSON.parse(io.stdout()) as Report;
    expect(report.requests.map((r) => [r.id, r.kind, r.candidate.versions])).toEqual([
      [id, 'model', ['intent@2']],
    ]);
    expect(report.summary.replayed).toBe(1);
  }, 60_000);

  it('gives usage errors (exit 2) and gateway errors (exit 1) in one line', async () => {
    const run = async (...args: string[]) => {
      const io = captureIo();
      return { code: await runCli(['replay', ...args], io), err: io.stderr() };
    };
    const none = await run('--candidate', 'intent@2');
    expect(none.code).toBe(2);
    expect(none.err).toMatch(
      /^switchyard: replay needs --url URL --key KEY .*\(see 'switchyard replay --help'\)\n$/,
    );
    const spec = await run('--url', gw.url, '--key', admin, '--candidate', 'a@b@c');
    expect(spec.code).toBe(2);
    expect(spec.err).toMatch(/--candidate "a@b@c": use <model>\[@<version>\]/);
    const nokey = await run('--url', gw.url);
    expect(nokey.code).toBe(2);
    const limit = await run('--url', gw.url, '--key', admin, '--limit', '0');
    expect(limit.code).toBe(2);
    const unknown = await run('--url', gw.url, '--key', admin, '--candidate', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/^switchyard: 404 SY_ERR_MODEL_NOT_FOUND: [^\n]*nope[^\n]*\n$/);
  });
});

describe('replay and release management', () => {
  let rel: TestGateway;
  beforeAll(async () => {
    const base = config(join(dir, 'inference.db'));
    rel = await startTestGateway({
      config: {
        ...base,
        state: { sqlite: 'state/release.db' },
        release: { flush_ms: 50 },
        experiments: [
          {
            id: 'intent-ab',
            slot: 'intent',
            kind: 'ab',
            variants: [
              { name: 'control', model: 'intent', version: '1' },
              { name: 'treatment', model: 'intent', version: '2' },
            ],
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await rel?.close();
  });

  it('resolves release slots as configured without a candidate, and counts no exposure', async () => {
    const exposures = async () => {
      const a = await call(rel.url, 'GET', '/admin/exposures?experiment=intent-ab', admin);
      expect(a.status, a.text).toBe(200);
      return a.body['exposures'] as { inferenceId: string }[];
    };
    const a = await call(rel.url, 'POST', '/admin/replay', admin, { ids: ids.direct.slice(0, 6) });
    expect(a.status, a.text).toBe(200);
    const report = a.body as unknown as Report;
    expect(report.candidate).toEqual({ model: null });
    expect(report.summary.replayed).toBe(6);
    // Each replayed call went where the experiment sends it...
    for (const r of report.requests) expect(r.candidate.versions[0]).toMatch(/^intent@[12]$/);
    // ...and no exposure was recorded for it; a live request is.
    expect(await exposures()).toEqual([]);
    const live = await call(
      rel.url,
      'POST',
      '/v2/models/intent/infer',
      admin,
      inferBody(texts[0]!),
      {
        'x-request-id': 'live-after-replay',
      },
    );
    expect(live.status).toBe(200);
    expect((await exposures()).map((e) => e.inferenceId)).toEqual(['live-after-replay']);
  });
});

describe('replay against a new journey config', () => {
  it('runs the logged journey requests through the config given with --config and shows the route changes', async () => {
    // The same gateway config with the journey's classify stage renamed and an extra step.
    const cfg = parse(readFileSync(gw.configPath, 'utf8')) as Record<string, unknown>;
    cfg['journeys'] = {
      triage: {
        class: 'interactive',
        stages: [
          { id: 'cache', cache: { key: 'input.text' } },
          { id: 'label', classify: { model: 'intent', text: 'input.text' } },
          { id: 'reply', respond: { body: { intent: 'label.label' } } },
        ],
      },
    };
    const next = join(gw.dir, 'new.yaml');
    writeFileSync(next, stringify(cfg));
    const io = captureIo();
    const code = await runCli(
      ['replay', '--config', next, '--ids', ids.journey.slice(0, 3).join(','), '--json'],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    const report = JSON.parse(io.stdout()) as Report;
    expect(report.summary.replayed).toBe(3);
    expect(report.summary.route_changes).toBe(3);
    for (const r of report.requests) {
      expect(r.baseline.route).toMatch(/>intent=ok@edge\.intent>/);
      expect(r.candidate.route).toMatch(/>label=ok@edge\.intent>/);
      expect(r.route_changed).toBe(true);
      // Same model, same answer.
      expect(r.exact).toBe(true);
    }
  }, 60_000);
});
