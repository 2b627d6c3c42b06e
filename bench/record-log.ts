import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { ModelCallEvent, RequestDoneEvent } from '../src/core/events.js';
import type * as EventsModule from '../src/core/events.js';
import type * as IdsModule from '../src/core/ids.js';
import type * as RecorderModule from '../src/observability/inference-recorder.js';
import type * as StoreModule from '../src/state/threaded-inference-log.js';

/**
 * The embedded inference log's write rate (#15), a child of bench/record.ts pinned to the
 * gateway's core: the gateway's own compiled recorder and SQLite store (from dist/, loaded by
 * path: a bench child imports no relative modules), fed through the real path. Events are
 * published on the diagnostics channels the gateway publishes on (`requestDone`, `modelCall`),
 * the recorder builds its records into its buffer, its timer hands each batch to the writer thread,
 * which commits it in one SQLite (WAL)
 * transaction. The producer offers `rate` records/s (half requests, half model calls) for
 * `durationS`, paced in 10 ms slices; then the recorder is closed (final flush) and the file is
 * read back with a separate connection to count what landed.
 *
 * argv: <dist dir> <db path> <records per second> <duration s> <flush ms> <buffer size>
 * Prints one JSON line (LogThroughputResult in bench/record.ts).
 */
const [dist, dbPath, rateArg, durationArg, flushArg, bufferArg] = process.argv.slice(2);
if (dist === undefined || dbPath === undefined) throw new Error('usage: record-log <dist> <db> …');
const rate = Number(rateArg);
const durationS = Number(durationArg);
const flushMs = Number(flushArg);
const bufferSize = Number(bufferArg);

const load = async <T>(rel: string): Promise<T> =>
  (await import(pathToFileURL(join(dist, rel)).href)) as T;
const { events, publish } = await load<typeof EventsModule>('core/events.js');
// The ids the gateway makes: the log indexes request and trace ids, and what an index costs
// depends on their order (random ids cost ~3× per insert on a file of 500,000 requests).
const { requestId, traceId } = await load<typeof IdsModule>('core/ids.js');
const { InferenceRecorder } = await load<typeof RecorderModule>(
  'observability/inference-recorder.js',
);
const { ThreadedSqliteInferenceLog } = await load<typeof StoreModule>(
  'state/threaded-inference-log.js',
);

// The store the gateway opens: its writes on a thread of their own.
const store = await ThreadedSqliteInferenceLog.open(dbPath);
// Per batch: the time append() holds the event loop (handing the batch to the writer thread),
// and the time until the writer committed it (the writer's own cost, off the loop).
const onLoop: number[] = [];
const writes: number[] = [];
const append = store.append.bind(store);
store.append = async (r, c) => {
  const t0 = performance.now();
  const committed = append(r, c);
  onLoop.push(performance.now() - t0);
  await committed;
  writes.push(performance.now() - t0);
};
let dropped = 0;
let written = 0;
const recorder = new InferenceRecorder({
  store,
  clock: { now: () => performance.now(), wall: () => Date.now() },
  logger: { warn: () => undefined, info: () => undefined, error: () => undefined } as never,
  bufferSize,
  flushMs,
  onDropped: (_reason, n) => (dropped += n),
  onWritten: (_kind, n) => (written += n),
}).start();

// A direct chat call's two records, as the gateway publishes them (payloads off).
const call = (id: string, trace: string): ModelCallEvent => ({
  requestId: id,
  origin: 'direct',
  tenant: 'bench',
  trafficClass: 'interactive',
  op: 'chat',
  requested: 'chat-bench',
  model: 'chat-bench',
  servedBy: 'chat-bench',
  version: 'v1',
  system: 'openai',
  tier: 'central',
  reason: 'default',
  stream: false,
  ms: 1.7,
  inputTokens: 12,
  outputTokens: 9,
  estimated: false,
  cost: 0.00021,
  outcome: 'ok',
  attempts: 'chat-bench#1:ok',
  withheld: 0,
  traceId: trace,
});
const done = (id: string, trace: string): RequestDoneEvent => ({
  requestId: id,
  method: 'POST',
  route: '/v1/chat/completions',
  model: 'chat-bench',
  tenant: 'bench',
  keyFingerprint: 'fp',
  trafficClass: 'interactive',
  status: 200,
  code: undefined,
  durationMs: 2.1,
  stream: false,
  path: 'chat-bench#1:ok',
  traceId: trace,
});

// Node's histogram records each whole interval between the timer's firings: the delay is what
// exceeds the resolution.
const LOOP_RESOLUTION_MS = 1;
const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loop.enable();
const pairsPerS = rate / 2;
const t0 = performance.now();
let pairs = 0;
let lastAt = t0;
while (performance.now() - t0 < durationS * 1000) {
  lastAt = performance.now();
  const due = Math.floor(((lastAt - t0) / 1000) * pairsPerS);
  for (; pairs < due; pairs++) {
    const id = requestId();
    const trace = traceId();
    publish(events.modelCall, call(id, trace));
    publish(events.requestDone, done(id, trace));
  }
  await new Promise((r) => setTimeout(r, 10));
}
// Offered over the time the producer ran (not counting the wait after its last slice).
const offeredS = (lastAt - t0) / 1000;
await recorder.close(); // writes what is held, closes the store
const elapsedS = (performance.now() - t0) / 1000;
loop.disable();

const Database = (await import('better-sqlite3')).default;
const db = new Database(dbPath, { readonly: true });
const count = (table: string): number =>
  (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
const stored = { requests: count('sy_inference_requests'), calls: count('sy_inference_calls') };
db.close();

const writeMs = writes.reduce((a, b) => a + b, 0);
const offered = pairs * 2;
process.stdout.write(
  `${JSON.stringify({
    offeredPerS: offered / offeredS,
    offered,
    written,
    dropped,
    stored,
    storedTotal: stored.requests + stored.calls,
    elapsedS,
    sustainedPerS: (stored.requests + stored.calls) / elapsedS,
    batches: writes.length,
    writeMsTotal: writeMs,
    // The longest a batch held the event loop (what the target bounds).
    writeMsMax: onLoop.reduce((a, b) => Math.max(a, b), 0),
    commitMsMax: writes.reduce((a, b) => Math.max(a, b), 0),
    capacityPerS: written / (writeMs / 1000),
    eventLoopDelayP99Ms: Math.max(0, loop.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
    eventLoopDelayMaxMs: Math.max(0, loop.max / 1e6 - LOOP_RESOLUTION_MS),
    flushMs,
    bufferSize,
  })}\n`,
);
