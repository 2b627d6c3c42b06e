import { performance } from 'node:perf_hooks';
import { extend } from '../src/core/objects.js';
import { writeLatest } from './lib/results.js';

/**
 * `npm run bench:object-spread`: why the request path copies objects with `extend`
 * (src/core/objects.ts) and not with an object literal that spreads first and then adds keys.
 *
 * On Node 20 (V8 11.3) a literal that spreads an object and then defines a key the object lacks
 * takes a slow path for that key, every time (the inline caches stay monomorphic, yet each copy
 * costs about a microsecond). Overriding keys the object has, or writing the literal's own keys
 * first, stays fast. Each form copies a 9-key scope-like object (the shape of the model-call
 * pipeline's `ScopeRequest`) and adds two keys; ns per copy, after warm-up, one process. Rerun it
 * on a new Node: when the literal form is as fast as `extend`, the rule can go.
 *
 * `-- --quick`: fewer iterations, nothing written.
 */
const quick = process.argv.includes('--quick');
const N = quick ? 200_000 : 2_000_000;

const make = (i: number) => ({
  requestId: `r${i}`,
  tenant: 'acme',
  keyId: 'k1',
  trafficClass: 'interactive',
  signal: null,
  deadlineAt: i + 10_000.5,
  origin: 'journey',
  attempts: [] as string[],
  estimate: { tokens: 10, spend: 0 },
});
type Req = ReturnType<typeof make>;
const TICKET = { settle: () => undefined };
const USED = { calls: 0 };

const FORMS: Record<string, (r: Req) => object> = {
  // The slow form: spread first, then two keys the source lacks.
  'literal: { ...req, ticket, used }': (r) => ({ ...r, ticket: TICKET, used: USED }),
  'extend(req, { ticket, used })': (r) => extend(r, { ticket: TICKET, used: USED }),
  // Fast literal forms, for scale.
  'literal overriding keys it has: { ...req, tenant, origin }': (r) => ({
    ...r,
    tenant: 'other',
    origin: 'direct',
  }),
  'literal, own keys first: { ticket, used, ...req }': (r) => ({
    ticket: TICKET,
    used: USED,
    ...r,
  }),
};

function nsPerCopy(f: (r: Req) => object): number {
  const reqs = Array.from({ length: 1000 }, (_, i) => make(i));
  let sink: object | undefined;
  for (let i = 0; i < N / 10; i++) sink = f(reqs[i % 1000]!);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) sink = f(reqs[i % 1000]!);
  const ns = ((performance.now() - t0) * 1e6) / N;
  if (sink === undefined) throw new Error('nothing made');
  return Math.round(ns * 10) / 10;
}

const forms: Record<string, number> = {};
for (const [name, f] of Object.entries(FORMS)) {
  forms[name] = nsPerCopy(f);
  process.stdout.write(`${name.padEnd(60)} ${forms[name].toFixed(1).padStart(8)} ns\n`);
}
const slow = forms['literal: { ...req, ticket, used }']!;
const fast = forms['extend(req, { ticket, used })']!;
const result = {
  at: new Date().toISOString(),
  node: process.version,
  iterations: N,
  ns_per_copy: forms,
  literal_over_extend: Math.round((slow / fast) * 10) / 10,
};
process.stdout.write(`literal spread-then-add / extend: ${result.literal_over_extend}×\n`);
writeLatest('object-spread', result, quick);
