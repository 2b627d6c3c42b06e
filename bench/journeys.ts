/**
 * bench:journeys (#4). Two measurements, in one process:
 *
 * 1. Orchestration overhead: a 5-stage journey (exact cache → classify → branch → transform →
 *    respond) run back to back with scripted models that answer at once, so model time is
 *    excluded; the cost of calling the scripted model stub directly is measured too and
 *    subtracted. Target: ≤ 50 µs per request.
 * 1b. The same journey as the gateway runs it: an admission scope per request and the model
 *    call through the real model-call pipeline, with an in-process backend that answers at once
 *    (its own cost subtracted). Target (#14): ≤ 30 µs per journey.
 * 2. The example traffic mix: the journeys of examples/superapp/switchyard.yaml, compiled as
 *    the gateway compiles them, run against simulated models with the example's tiers and costs
 *    (virtual model time on an injected clock). Reports the share of requests answered per tier
 *    and per cache outcome, and the cost per 1k requests against always asking the central model.
 *
 *   npm run bench:journeys [-- --quick]
 *
 * It runs the tsc output (.bench-build/), the JavaScript the gateway ships: tsx's transform wraps
 * every function in a `__name` helper, which cost ~5% of this benchmark's CPU and is not in dist/.
 */
import { writeLatest } from './lib/results.js';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../src/config/load.js';
import type { JsonObject } from '../src/contracts/json.js';
import { syError } from '../src/core/errors.js';
import { seededRandom } from '../src/core/random.js';
import { compileJourneys, type CompiledJourney } from '../src/orchestrator/compile.js';
import { Router } from '../src/orchestrator/router.js';
import { JourneyRunner, type JourneyOutcome } from '../src/orchestrator/runner.js';
import { ScriptedInvoker, type ScriptedModel } from '../test/support/scripted-invoker.js';
import { MemoryCache } from '../src/state/cache-memory.js';
import { AdmissionController } from '../src/admission/admission-controller.js';
import { MemoryLimiter } from '../src/admission/memory-limiter.js';
import type { Backend, BackendResponse } from '../src/contracts/backend.js';
import { compose } from '../src/backends/interceptors/compose.js';
import { deadlineGuard } from '../src/backends/interceptors/deadline.js';
import { recordAttempts } from '../src/backends/interceptors/record.js';
import { MemoryAuditSink } from '../src/observability/audit-memory.js';
import { ModelCatalog } from '../src/pipeline/journey-invoker.js';
import { ModelPipeline } from '../src/pipeline/model-pipeline.js';
import { silentLogger, testSettings } from '../test/support/admission-settings.js';

const quick = process.argv.includes('--quick');
const OVERHEAD_N = quick ? 20_000 : 200_000;
const MIX_N = quick ? 5_000 : 50_000;
const SEED = 7;

function manualClock() {
  let t = 0;
  return {
    now: () => t,
    wall: () => 1_700_000_000_000 + t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

// ---------------------------------------------------------------- 1. overhead
async function overhead(): Promise<Record<string, number>> {
  const clock = { now: () => performance.now(), wall: () => Date.now() };
  const models: Record<string, ScriptedModel> = {
    intent: {
      tier: 'edge',
      ops: ['classify'],
      answer: () => ({ label: 'order_status', confidence: 0.9 }),
    },
  };
  const invoker = new ScriptedInvoker(models, undefined, false);
  const router = new Router(clock);
  const { journeys, problems } = compileJourneys(
    {
      five: {
        class: 'interactive',
        stages: [
          { id: 'cache', cache: { ttl_ms: 60_000 } },
          { id: 'intent', classify: { model: 'intent' } },
          {
            id: 'route',
            branch: { cases: [{ when: 'confidence >= 0.8', to: 'shape' }], else: 'shape' },
          },
          { id: 'shape', transform: { set: { intent: 'intent.label', q: 'input.text' } } },
          { id: 'reply', respond: { body: { answer: 'shape' } } },
        ],
      },
    },
    {
      models: (n) => invoker.info(n),
      services: { features: false, retriever: false, policy: false },
      router,
    },
  );
  if (problems.length > 0) throw new Error(problems.join('\n'));
  const journey = journeys.get('five')!;
  const runner = new JourneyRunner({ models: invoker, cache: new MemoryCache({ clock }) }, clock);
  const signal = new AbortController().signal;
  const run = (i: number) =>
    runner.run(journey, {
      requestId: `r${i}`,
      tenant: 'acme',
      trafficClass: 'interactive',
      input: { text: `where is my order ${i}` },
      attributes: {},
      signal,
      deadlineAt: performance.now() + 10_000,
    });
  // Model stub time alone: the same scripted call, awaited, without the orchestrator.
  const call = {
    requestId: 'r',
    tenant: 'acme',
    trafficClass: 'interactive',
    signal,
    deadlineAt: Infinity,
    attempts: [],
  };
  /** CPU µs per call of the scripted model stub alone (what is subtracted as "model time"). */
  const stub = async (n: number): Promise<number> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await invoker.classify('intent', `q${i}`, call);
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / n;
  };
  for (let i = 0; i < 20_000; i++) await run(i); // warm-up (JIT)
  await stub(20_000);
  const samples = new Float64Array(OVERHEAD_N);
  const t0 = performance.now();
  // CPU time, not wall time: on a shared machine the process is descheduled now and then, and
  // that is not orchestration overhead. Wall-clock percentiles are reported beside it.
  const c0 = process.cpuUsage();
  for (let i = 0; i < OVERHEAD_N; i++) {
    const s = performance.now();
    const out = await run(100_000 + i);
    samples[i] = (performance.now() - s) * 1000;
    if (!out.ok) throw new Error('journey failed');
  }
  const wallUs = ((performance.now() - t0) * 1000) / OVERHEAD_N;
  const cpu = process.cpuUsage(c0);
  const cpuUs = (cpu.user + cpu.system) / OVERHEAD_N;
  const stubUs = await stub(OVERHEAD_N);
  samples.sort();
  const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
  return {
    requests: OVERHEAD_N,
    stages: 5,
    cpu_us: round(cpuUs),
    wall_mean_us: round(wallUs),
    wall_p50_us: round(q(0.5)),
    wall_p99_us: round(q(0.99)),
    model_stub_cpu_us: round(stubUs),
    overhead_us: round(cpuUs - stubUs),
  };
}

// ------------------------------------------- 1b. overhead through the model-call pipeline
/**
 * The same 5-stage journey as the gateway runs it (#14): one admission scope per request
 * (class, mode, quotas), and the classify call through the real model-call pipeline (resolve,
 * policy, the model's concurrency gate, the attempt record and deadline interceptors, settle,
 * record). The backend is an in-process one that answers at once, so model time is excluded; its
 * own cost, called directly, is measured and subtracted. Target: ≤ 30 µs per journey.
 */
async function pipelineOverhead(): Promise<Record<string, number>> {
  const clock = { now: () => performance.now(), wall: () => Date.now() };
  const answer: BackendResponse = {
    json: {
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: '{"label":"order_status","confidence":0.9}' },
          finish_reason: 'stop',
        },
      ],
    },
    usage: { inputTokens: 12, outputTokens: 9 },
  };
  const instant: Backend = {
    name: 'intent',
    describe: () => ({
      name: 'intent',
      kind: 'instant',
      tier: 'edge',
      upstream: 'in-process',
      operations: ['chat'],
    }),
    health: () => ({ state: 'healthy' }),
    call: () => Promise.resolve(answer),
    stream: () => Promise.reject(new Error('no streams')),
    metadata: () => Promise.resolve({}),
    ready: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
  const settings = testSettings();
  const admission = new AdmissionController(settings, {
    clock,
    random: seededRandom(SEED),
    limiter: new MemoryLimiter(clock),
    audit: new MemoryAuditSink(),
    logger: silentLogger,
  });
  const call = compose(
    instant,
    recordAttempts('intent', clock),
    admission.gateInterceptor('intent'),
    deadlineGuard(clock),
  );
  const handle = { name: 'intent', backend: instant, call, operations: new Set(['chat'] as const) };
  const pipeline = new ModelPipeline({
    models: new Map([['intent', handle]]),
    facts: () => ({
      tier: 'edge',
      price: { inPer1k: 0.1, outPer1k: 0.2, perCall: 0, perSecond: 0 },
    }),
    mayUse: () => true,
    clock,
    defaultOutputTokens: 256,
    admission,
  });
  const catalog = new ModelCatalog(
    pipeline,
    () => undefined,
    () => true,
  );
  const router = new Router(clock);
  const { journeys, problems } = compileJourneys(
    {
      five: {
        class: 'interactive',
        stages: [
          { id: 'cache', cache: { ttl_ms: 60_000 } },
          { id: 'intent', classify: { model: 'intent' } },
          {
            id: 'route',
            branch: { cases: [{ when: 'confidence >= 0.8', to: 'shape' }], else: 'shape' },
          },
          { id: 'shape', transform: { set: { intent: 'intent.label', q: 'input.text' } } },
          { id: 'reply', respond: { body: { answer: 'shape' } } },
        ],
      },
    },
    {
      models: (n) => catalog.info(n),
      services: { features: false, retriever: false, policy: false },
      router,
    },
  );
  if (problems.length > 0) throw new Error(problems.join('\n'));
  const journey = journeys.get('five')!;
  const runner = new JourneyRunner(
    {
      // Every run passes its scope's invoker (`models` in the request), as the gateway does.
      models: {
        info: (m) => catalog.info(m),
        chat: () => Promise.reject(new Error('unscoped')),
        embed: () => Promise.reject(new Error('unscoped')),
        classify: () => Promise.reject(new Error('unscoped')),
        infer: () => Promise.reject(new Error('unscoped')),
      },
      cache: new MemoryCache({ clock }),
    },
    clock,
  );
  const signal = new AbortController().signal;
  const run = async (i: number): Promise<JourneyOutcome> => {
    const scope = await pipeline.open({
      requestId: `r${i}`,
      tenant: 'acme',
      keyId: 'k1',
      trafficClass: 'interactive',
      signal,
      deadlineAt: performance.now() + 10_000,
      origin: 'journey',
      attempts: [],
      estimate: { tokens: 10, spend: 0 },
    });
    try {
      return await runner.run(journey, {
        requestId: `r${i}`,
        tenant: 'acme',
        trafficClass: 'interactive',
        input: { text: `where is my order ${i}` },
        attributes: {},
        signal,
        deadlineAt: scope.deadlineAt,
        models: catalog.invoker(scope),
      });
    } finally {
      pipeline.close(scope);
    }
  };
  const direct = {
    requestId: 'r',
    tenant: 'acme',
    trafficClass: 'interactive',
    signal,
    deadlineAt: Infinity,
    attempts: [],
  };
  /** CPU µs per call of the instant backend alone (what is subtracted as "model time"). */
  const backendAlone = async (n: number): Promise<number> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await instant.call({ op: 'chat', body: {} }, direct);
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / n;
  };
  for (let i = 0; i < 20_000; i++) await run(i); // warm-up (JIT)
  await backendAlone(20_000);
  const c0 = process.cpuUsage();
  for (let i = 0; i < OVERHEAD_N; i++) {
    const out = await run(100_000 + i);
    if (!out.ok) throw new Error(`journey failed: ${out.error.message}`);
  }
  const cpu = process.cpuUsage(c0);
  const cpuUs = (cpu.user + cpu.system) / OVERHEAD_N;
  const backendUs = await backendAlone(OVERHEAD_N);
  admission.close();
  return {
    requests: OVERHEAD_N,
    stages: 5,
    cpu_us: round(cpuUs),
    backend_cpu_us: round(backendUs),
    overhead_us: round(cpuUs - backendUs),
  };
}

// ---------------------------------------------------------------- 2. traffic mix
interface MixResult {
  readonly requests: number;
  readonly byJourney: Record<string, number>;
  readonly answeredBy: Record<string, number>;
  readonly cache: Record<string, number>;
  readonly decisions: Record<string, number>;
  readonly failed: number;
  readonly costPer1k: number;
  readonly centralBaselinePer1k: number;
  readonly savedPercent: number;
}

const TOPICS = [
  'order_status',
  'refund_request',
  'payment_problem',
  'delivery_delay',
  'account_access',
  'product_question',
  'fraud_report',
  'chitchat',
];

async function trafficMix(): Promise<MixResult> {
  const file = resolve('examples/superapp/switchyard.yaml');
  const snap = await loadConfigFile(file);
  const clock = manualClock();
  const rnd = seededRandom(SEED);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  // 300 popular questions (Zipf), each with a topic, a clarity and a 64-d direction.
  const questions = Array.from({ length: 300 }, (_, i) => ({
    topic: TOPICS[Math.floor(rnd() * TOPICS.length)]!,
    clear: rnd() < 0.7,
    dir: unit(Array.from({ length: 64 }, gauss)),
    text: `question ${i}`,
  }));
  const zipf = cumulative(questions.map((_, i) => 1 / (i + 1)));
  const current = { q: questions[0]!, paraphrase: 0 };

  const ops = (name: string): ScriptedModel['ops'] => {
    const mc = snap.config.models[name]!;
    if (mc.backend === 'openai')
      return [
        ...mc.operations.filter((op) => op === 'chat' || op === 'embeddings'),
        ...(mc.operations.includes('chat') ? (['classify'] as const) : []),
      ];
    if (mc.backend === 'kserve') return ['infer'];
    if (mc.backend === 'anthropic') return ['chat', 'classify'];
    if (mc.backend === 'switchyard') return [...mc.operations];
    const version =
      mc.version_policy === 'all' || !('specific' in mc.version_policy)
        ? '1'
        : mc.version_policy.specific[0]!;
    const card = JSON.parse(
      readFileSync(join(snap.dir, mc.store, version, 'model.json'), 'utf8'),
    ) as { task: string };
    return card.task === 'classifier'
      ? ['infer', 'classify']
      : card.task === 'embedding'
        ? ['infer', 'embeddings']
        : ['infer'];
  };
  const tierMs = { edge: 2, regional: 40, central: 350 } as const;
  const models: Record<string, ScriptedModel> = {};
  for (const [name, mc] of Object.entries(snap.config.models)) {
    const o = ops(name);
    models[name] = {
      tier: mc.tier,
      ops: o,
      cost: {
        inPer1k: mc.cost?.in_per_1k ?? 0,
        outPer1k: mc.cost?.out_per_1k ?? 0,
        perCall: mc.cost?.per_call ?? 0,
        perSecond: mc.cost?.per_second ?? 0,
      },
      latencyMs: tierMs[mc.tier],
      answer: ({ op, body }) => {
        clock.advance(tierMs[mc.tier] * (0.5 + rnd()));
        const q = current.q;
        if (op === 'classify') {
          const confident = q.clear || rnd() < 0.2;
          return {
            label: confident || rnd() < 0.5 ? q.topic : TOPICS[Math.floor(rnd() * 8)]!,
            confidence: confident ? 0.82 + rnd() * 0.17 : 0.3 + rnd() * 0.4,
          };
        }
        if (op === 'embeddings') {
          // Paraphrases of one question land close (cos ≈ 0.97), other questions far.
          const v = q.dir.map((x) => x + (current.paraphrase === 0 ? 0 : gauss() * 0.03));
          return { vector: v };
        }
        if (op === 'chat') {
          if (rnd() < 0.02) throw syError('SY_ERR_UPSTREAM_ERROR', 'simulated 503');
          const max = typeof body['max_tokens'] === 'number' ? body['max_tokens'] : 300;
          return {
            text: `answer to ${q.text}`,
            inputTokens: 120,
            outputTokens: Math.min(max, 150),
          };
        }
        return {
          json: {
            model_name: name,
            outputs: [{ name: 'score', datatype: 'FP32', shape: [1, 1], data: [rnd()] }],
          },
        };
      },
    };
  }
  const invoker = new ScriptedInvoker(models, undefined, false);
  const router = new Router(clock);
  // The journeys the mix runs; the example's others need data services this bench has not.
  const mixed = ['support-triage', 'personalized-search', 'offer-ranking', 'fraud-check'];
  const { journeys, problems } = compileJourneys(
    Object.fromEntries(Object.entries(snap.config.journeys).filter(([n]) => mixed.includes(n))),
    {
      models: (n) => invoker.info(n),
      services: { features: false, retriever: false, policy: false },
      router,
    },
  );
  if (problems.length > 0)
    throw new Error(`the example journeys do not compile:\n${problems.join('\n')}`);
  const runner = new JourneyRunner({ models: invoker, cache: new MemoryCache({ clock }) }, clock);
  const mix: [string, number][] = [
    ['support-triage', 0.45],
    ['personalized-search', 0.25],
    ['offer-ranking', 0.2],
    ['fraud-check', 0.1],
  ];
  const mixCum = cumulative(mix.map(([, w]) => w));
  const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  const res = { byJourney: {}, answeredBy: {}, cache: {}, decisions: {} } as Record<
    'byJourney' | 'answeredBy' | 'cache' | 'decisions',
    Record<string, number>
  >;
  let cost = 0;
  let failed = 0;
  const segments = ['student', 'family', 'pro'];
  for (let i = 0; i < MIX_N; i++) {
    const name = mix[pick(mixCum, rnd())]![0];
    const journey: CompiledJourney = journeys.get(name)!;
    current.q = questions[pick(zipf, rnd())]!;
    current.paraphrase = rnd() < 0.5 ? 0 : 1 + Math.floor(rnd() * 3);
    const text =
      current.paraphrase === 0
        ? current.q.text
        : `${current.q.text} (variant ${current.paraphrase})`;
    const input: JsonObject =
      name === 'offer-ranking'
        ? {
            user: Array.from({ length: 16 }, () => rnd()),
            item: Array.from({ length: 16 }, () => rnd()),
          }
        : { text };
    clock.advance(5);
    const out: JourneyOutcome = await runner.run(journey, {
      requestId: `r${i}`,
      tenant: 'superapp',
      trafficClass: journey.trafficClass,
      input,
      attributes: {
        segment: segments[Math.floor(rnd() * 3)]!,
        user: `u${Math.floor(rnd() * 1000)}`,
      },
      signal: new AbortController().signal,
      deadlineAt: clock.now() + 30_000,
    });
    count(res.byJourney, name);
    count(res.answeredBy, out.route.answeredBy);
    count(res.cache, out.route.cache);
    for (const d of out.route.decisions) count(res.decisions, d);
    if (!out.ok) failed++;
    cost += out.route.cost;
  }
  const central = snap.config.models['chat-large']!.cost!;
  // Always central: every request answered by chat-large with the simulated answer's tokens.
  const baseline =
    (central.in_per_1k * 120) / 1000 + (central.out_per_1k * 150) / 1000 + central.per_call;
  const costPer1k = (cost / MIX_N) * 1000;
  return {
    requests: MIX_N,
    ...res,
    failed,
    costPer1k: round(costPer1k),
    centralBaselinePer1k: round(baseline * 1000),
    savedPercent: round(100 * (1 - costPer1k / (baseline * 1000))),
  };
}

function unit(v: number[]): number[] {
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return v.map((x) => x / n);
}
function cumulative(w: number[]): number[] {
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  return w.map((x) => (acc += x / total));
}
function pick(cum: number[], r: number): number {
  const i = cum.findIndex((c) => r < c);
  return i < 0 ? cum.length - 1 : i;
}
function round(n: number): number {
  return Math.round(n * 100) / 100;
}
function share(m: Record<string, number>, n: number): string {
  return Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${((100 * v) / n).toFixed(1)}%`)
    .join(', ');
}

const pipelineOnly = process.argv.includes('--pipeline-only');
const o = pipelineOnly ? {} : await overhead();
const p = await pipelineOverhead();
if (process.argv.includes('--overhead-only') || pipelineOnly) {
  console.log(o, p);
  process.exit(0);
}
const mix = await trafficMix();
console.log(`\nbench:journeys${quick ? ' (quick)' : ''}\n`);
console.log('orchestration overhead, 5-stage journey, model time excluded');
console.table([{ ...o, target_us: 50, pass: o['overhead_us']! <= 50 }]);
console.log('the same journey through the model-call pipeline (admission scope, gate, record)');
console.table([{ ...p, target_us: 30, pass: p['overhead_us']! <= 30 }]);
console.log(`example traffic mix (${mix.requests} requests, seed ${SEED})`);
console.table([
  { metric: 'journeys', value: share(mix.byJourney, mix.requests) },
  { metric: 'answered by', value: share(mix.answeredBy, mix.requests) },
  { metric: 'cache', value: share(mix.cache, mix.requests) },
  { metric: 'decisions (per request)', value: share(mix.decisions, mix.requests) },
  { metric: 'failed', value: mix.failed },
  { metric: 'cost / 1k requests', value: mix.costPer1k },
  { metric: 'always-central cost / 1k', value: mix.centralBaselinePer1k },
  { metric: 'saved', value: `${mix.savedPercent}%` },
]);
writeLatest(
  'journeys',
  { at: new Date().toISOString(), quick, node: process.version, overhead: o, pipeline: p, mix },
  quick,
);
