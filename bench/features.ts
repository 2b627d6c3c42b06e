/**
 * bench:features — online feature reads, embedded (issue #7 target: `features` read p99 ≤ 1 ms).
 *
 * 1. Store API, in this process: `MemoryFeatureStore.read` of 8 features of a random user (with the
 *    SQLite write-behind journal on and a writer pushing values meanwhile), and the same read
 *    followed by the policy module's retrieval filter and model-input strip (what the `features`
 *    stage does per request).
 * 2. HTTP read route: `GET /v1/features/{user}?names=...` on a gateway process pinned to core 0,
 *    one request at a time from this process pinned to core 1 (latency, not throughput).
 *
 * Usage: npm run bench:features [-- --quick]
 */
import { writeLatest } from './lib/results.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import type {
  FeatureDefinition,
  FeatureKey,
  FeatureWrite,
} from '../src/contracts/feature-source.js';
import { featureTag } from '../src/contracts/feature-source.js';
import { generateKey, hashKey } from '../src/core/api-key.js';
import { systemClock } from '../src/core/clock.js';
import { seededRandom } from '../src/core/random.js';
import { MemoryFeatureStore } from '../src/features/memory-feature-store.js';
import { SqliteFeatureJournal } from '../src/features/sqlite-feature-journal.js';
import { MemoryAuditSink } from '../src/observability/audit-memory.js';
import { ConsentBook } from '../src/privacy/consent-book.js';
import { PolicyEngine, type LabelRule } from '../src/privacy/policy-engine.js';
import { installCleanup, spawnPinned } from './lib/processes.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const USERS = quick ? 20_000 : 100_000;
const READS = quick ? 50_000 : 300_000;
const HTTP_READS = quick ? 5_000 : 30_000;
const HTTP_USERS = quick ? 2_000 : 10_000;
const WARMUP = 5_000;

const lineage = { source: 'bench', transformation: 'synthetic' };
const FEATURES: {
  name: string;
  label: FeatureDefinition['label'];
  purpose?: 'behavioral_inference' | 'location';
}[] = [
  { name: 'user.f0', label: 'public' },
  { name: 'user.f1', label: 'public' },
  { name: 'user.f2', label: 'consented', purpose: 'behavioral_inference' },
  { name: 'user.f3', label: 'consented', purpose: 'behavioral_inference' },
  { name: 'user.f4', label: 'consented', purpose: 'behavioral_inference' },
  { name: 'user.f5', label: 'sensitive', purpose: 'location' },
  { name: 'user.f6', label: 'restricted', purpose: 'behavioral_inference' },
  { name: 'user.f7', label: 'public' },
];
const DEFS: FeatureDefinition[] = FEATURES.map((f) => ({
  name: f.name,
  entity: 'user',
  type: 'float',
  min: 0,
  max: 1,
  label: f.label,
  ...(f.purpose === undefined ? {} : { purpose: f.purpose }),
  version: 1,
  lineage,
  ttlMs: 86_400_000,
}));

interface Summary {
  readonly n: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
}

function summarize(samplesNs: Float64Array): Summary {
  const s = Float64Array.from(samplesNs).sort();
  const q = (p: number): number =>
    Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! / 10) / 100;
  return {
    n: s.length,
    p50Us: q(0.5),
    p90Us: q(0.9),
    p99Us: q(0.99),
    p999Us: q(0.999),
    maxUs: q(1),
  };
}

const rule = (
  r: LabelRule['ingestion'],
  logging: LabelRule['logging'],
  model: LabelRule['model_input'],
): LabelRule => ({
  ingestion: r,
  retrieval: r,
  model_input: model,
  logging,
});

async function storeApi(): Promise<{ read: Summary; stage: Summary; writes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-bench-features-'));
  const store = new MemoryFeatureStore({
    definitions: DEFS,
    clock: systemClock,
    journal: new SqliteFeatureJournal(join(dir, 'features.db')),
    flushMs: 50,
  });
  const consent = new ConsentBook({
    clock: systemClock,
    audit: new MemoryAuditSink(16),
    defaults: {
      behavioral_inference: false,
      cross_service_personalization: false,
      location: false,
    },
  });
  const policy = new PolicyEngine(
    {
      node: { id: 'bench' },
      jurisdictions: {},
      labels: {
        public: rule('allow', 'allow', 'allow'),
        consented: rule('consent', 'consent', 'consent'),
        sensitive: rule('consent', 'deny', 'consent'),
        restricted: rule('consent', 'deny', 'deny'),
      },
      purposes: {
        behavioral_inference: { default: false, labels: {} },
        cross_service_personalization: { default: false, labels: {} },
        location: { default: false, labels: {} },
      },
    },
    consent,
  );
  const rnd = seededRandom(42);
  for (let u = 0; u < USERS; u += 1_000) {
    const writes: FeatureWrite[] = [];
    for (let i = u; i < Math.min(USERS, u + 1_000); i++)
      for (const f of FEATURES) writes.push({ entityId: `u${i}`, feature: f.name, value: rnd() });
    await store.write('acme', writes);
  }
  for (let u = 0; u < USERS; u += 2)
    await consent.set(
      'acme',
      `u${u}`,
      { behavioral_inference: true, location: u % 4 === 0 },
      'bench',
    );
  await store.flush();

  // A writer keeps the write-behind busy while reads are measured.
  let writes = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      const i = Math.floor(rnd() * USERS);
      await store.write('acme', [{ entityId: `u${i}`, feature: 'user.f0', value: rnd() }]);
      writes++;
      if (writes % 50 === 0) await new Promise((r) => setImmediate(r));
    }
  })();

  const keysOf = (i: number): FeatureKey[] =>
    FEATURES.map((f) => ({ entityId: `u${i}`, feature: f.name }));
  const read = new Float64Array(READS);
  const stage = new Float64Array(READS);
  for (let i = 0; i < WARMUP; i++) await store.read('acme', keysOf(i % USERS));
  for (let i = 0; i < READS; i++) {
    const keys = keysOf(Math.floor(rnd() * USERS));
    const t0 = process.hrtime.bigint();
    await store.read('acme', keys);
    read[i] = Number(process.hrtime.bigint() - t0);
    if (i % 200 === 0) await new Promise((r) => setImmediate(r)); // let the writer and the flush run
  }
  for (let i = 0; i < READS; i++) {
    const keys = keysOf(Math.floor(rnd() * USERS));
    const t0 = process.hrtime.bigint();
    const entries = (await store.read('acme', keys)).filter((e) => e !== undefined);
    const visible = policy.filterRetrieved(entries, (e) => featureTag('acme', e));
    policy.stripModelInput(visible, (e) => featureTag('acme', e), { tier: 'central' });
    stage[i] = Number(process.hrtime.bigint() - t0);
    if (i % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  writing = false;
  await writer;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return { read: summarize(read), stage: summarize(stage), writes };
}

async function httpRoute(): Promise<Summary> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-bench-features-http-'));
  const secret = randomBytes(32).toString('hex');
  writeFileSync(join(dir, 'secret.txt'), `${secret}\n`, { mode: 0o600 });
  const key = generateKey('sk');
  const defs = FEATURES.map(
    (f) =>
      `    ${f.name}: { entity: user, type: float, min: 0, max: 1, label: ${f.label}${f.purpose === undefined ? '' : `, purpose: ${f.purpose}`}, lineage: { source: bench, transformation: synthetic } }`,
  );
  const config = [
    'server: { host: 127.0.0.1, port: 0 }',
    'log: { level: warn }',
    'auth: { secret: { file: secret.txt } }',
    `tenants: { bench: { keys: [ { id: k, hash: "${hashKey(key, secret)}" } ] } }`,
    'features:',
    '  store: { kind: embedded, sqlite: features.db }',
    '  definitions:',
    ...defs,
    // Public and consented data only need the user's consent: grant it through the API below.
    '',
  ].join('\n');
  writeFileSync(join(dir, 'switchyard.yaml'), config);
  const gw = await spawnPinned({
    name: 'gateway',
    core: 0,
    // tsx loads the sources (no build step); the code measured is the same JavaScript.
    nodeArgs: [
      '--import',
      'tsx',
      join(ROOT, 'src/cli/index.ts'),
      'serve',
      '--config',
      join(dir, 'switchyard.yaml'),
    ],
    cwd: ROOT,
    ready: /listening on (http:\/\/\S+)/,
    stdout: 'ignore',
  });
  const pool = new Pool(gw.url, { connections: 1, pipelining: 1 });
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  try {
    const rnd = seededRandom(7);
    for (let u = 0; u < HTTP_USERS; u++) {
      await (
        await pool.request({
          method: 'PUT',
          path: `/v1/consent/u${u}`,
          headers,
          body: JSON.stringify({ purposes: { behavioral_inference: true, location: true } }),
        })
      ).body.dump();
    }
    for (let u = 0; u < HTTP_USERS; u += 100) {
      const writes = [];
      for (let i = u; i < Math.min(HTTP_USERS, u + 100); i++)
        for (const f of FEATURES)
          writes.push({ entity_id: `u${i}`, feature: f.name, value: rnd() });
      const res = await pool.request({
        method: 'POST',
        path: '/v1/features',
        headers,
        body: JSON.stringify({ writes }),
      });
      if (res.statusCode !== 200)
        throw new Error(`push failed: ${res.statusCode} ${await res.body.text()}`);
      await res.body.dump();
    }
    const names = FEATURES.map((f) => f.name).join(',');
    const samples = new Float64Array(HTTP_READS);
    const get = async (u: number): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const res = await pool.request({
        method: 'GET',
        path: `/v1/features/u${u}?names=${names}`,
        headers,
      });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`read failed: ${res.statusCode}`);
      return Number(process.hrtime.bigint() - t0);
    };
    for (let i = 0; i < 2_000; i++) await get(i % HTTP_USERS);
    for (let i = 0; i < HTTP_READS; i++) samples[i] = await get(Math.floor(rnd() * HTTP_USERS));
    return summarize(samples);
  } finally {
    await pool.close();
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

installCleanup(() => undefined);
const { spawnSync } = await import('node:child_process');
// This process (the store API measurement and the HTTP client) runs on core 1.
spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
console.log(
  `bench:features${quick ? ' (quick)' : ''}: ${USERS} users x ${FEATURES.length} features in process; ${HTTP_USERS} users over HTTP`,
);
const api = await storeApi();
const http = await httpRoute();
const rows = [
  ['store API read (8 features)', api.read],
  ['features stage (read + retrieval filter + model-input strip)', api.stage],
  ['HTTP GET /v1/features/{user}?names=... (8 features)', http],
] as const;
console.log('\n| path | n | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p99 ≤ 1 ms |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const [name, s] of rows)
  console.log(
    `| ${name} | ${s.n} | ${s.p50Us} | ${s.p90Us} | ${s.p99Us} | ${s.p999Us} | ${s.maxUs} | ${s.p99Us <= 1_000 ? 'yes' : 'NO'} |`,
  );
console.log(`\nbackground writes during the store API measurement: ${api.writes}`);
const load = loadavg().map((l) => Math.round(l * 100) / 100);
console.log(
  `load average at the end (2 cores; other work on the machine inflates the HTTP tail): ${load.join(' ')}`,
);
const result = {
  at: new Date().toISOString(),
  quick,
  users: USERS,
  featuresPerRead: FEATURES.length,
  httpUsers: HTTP_USERS,
  storeRead: api.read,
  featuresStage: api.stage,
  httpRead: http,
  backgroundWrites: api.writes,
  loadAverage: load,
  targetP99Us: 1_000,
};
writeLatest('features', result, quick);
