import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { events, publish, type ModelCallEvent } from '../../src/core/events.js';
import { SqliteInferenceLog } from '../../src/state/sqlite-inference-log.js';
import { InferenceRecorder, type DropReason } from '../../src/observability/inference-recorder.js';
import { requestDone } from '../support/events.js';

const done = requestDone;

const modelCall = (requestId: string, over: Partial<ModelCallEvent> = {}): ModelCallEvent => ({
  requestId,
  origin: 'direct',
  tenant: 'acme',
  trafficClass: 'interactive',
  op: 'chat',
  requested: 'chat',
  model: 'chat',
  servedBy: 'chat',
  version: 'v1',
  system: 'openai',
  tier: 'central',
  reason: 'default',
  stream: false,
  ms: 2,
  inputTokens: 3,
  outputTokens: 4,
  cost: 0.5,
  outcome: 'ok',
  attempts: 'chat#1:ok',
  withheld: 0,
  estimated: false,
  ...over,
});

const silent = {
  warn: () => undefined,
  info: () => undefined,
  error: () => undefined,
  debug: () => undefined,
};

describe('InferenceRecorder', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  function open(bufferSize = 100) {
    const dir = mkdtempSync(join(tmpdir(), 'sy-recorder-'));
    const store = SqliteInferenceLog.open(join(dir, 'log.db'));
    const dropped: [DropReason, number][] = [];
    const warnings: string[] = [];
    const recorder = new InferenceRecorder({
      store,
      clock: systemClock,
      logger: {
        ...silent,
        warn: (_o: unknown, msg?: string) => void warnings.push(msg ?? ''),
      } as never,
      bufferSize,
      flushMs: 60_000,
      onDropped: (reason, n) => dropped.push([reason, n]),
    }).start();
    cleanup.push(async () => {
      await recorder.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { recorder, store, dropped, warnings };
  }

  it('writes each 128 records as soon as they are held, without waiting for flush_ms, and loses none', async () => {
    const { recorder, store } = open(2_000); // flushMs 60 s: the timer never fires here
    const sizes: number[] = [];
    const append = store.append.bind(store);
    store.append = (r, c) => {
      sizes.push(r.length + c.length);
      return append(r, c);
    };
    for (let i = 0; i < 300; i++) {
      publish(events.modelCall, modelCall(`r${i}`));
      publish(events.requestDone, done(`r${i}`));
    }
    // 600 records: four full batches are on their way to the store; 88 wait for a flush.
    expect(recorder.buffered).toBe(600);
    await new Promise(setImmediate);
    expect(sizes).toEqual([128, 128, 128, 128]);
    expect(recorder.buffered).toBe(88);
    expect((await store.query({ limit: 1000 })).records).toHaveLength(256);
    await recorder.flush();
    expect(sizes).toEqual([128, 128, 128, 128, 88]);
    expect((await store.query({ limit: 1000 })).records).toHaveLength(300);
  });

  it('counts batches the store has not written yet against buffer_size', async () => {
    const { recorder, store, dropped } = open(300);
    let release!: () => void;
    const stalled = new Promise<void>((r) => (release = r));
    const append = store.append.bind(store);
    store.append = async (r, c) => {
      await stalled; // a store that does not answer (a database down)
      return append(r, c);
    };
    for (let i = 0; i < 200; i++) {
      publish(events.modelCall, modelCall(`r${i}`));
      publish(events.requestDone, done(`r${i}`));
    }
    // 300 held (two batches handed over and 44 in the buffer); the other 100 were dropped.
    expect(recorder.buffered).toBe(300);
    expect(dropped.reduce((n, [reason, k]) => n + (reason === 'overflow' ? k : 0), 0)).toBe(100);
    release();
    await recorder.flush();
    expect(recorder.buffered).toBe(0);
  });

  it('sums a request’s own calls into its record, and files a shadow copy under it apart', async () => {
    const { recorder } = open();
    publish(events.modelCall, modelCall('r1'));
    publish(
      events.modelCall,
      modelCall('r1', {
        model: 'b',
        servedBy: 'b',
        version: 'v2',
        experiment: 'x',
        variant: 'treatment',
      }),
    );
    publish(events.requestDone, done('r1'));
    publish(events.modelCall, modelCall('r1:shadow', { origin: 'shadow', cost: 9 }));
    const d = await recorder.get('r1');
    expect(d).toMatchObject({
      inputTokens: 6,
      outputTokens: 8,
      cost: 1,
      experiments: ['x/treatment'],
    });
    expect(d?.versions).toEqual(['chat@v1', 'b@v2']);
    expect(d?.calls.map((c) => [c.requestId, c.origin])).toEqual([
      ['r1', 'direct'],
      ['r1', 'direct'],
      ['r1', 'shadow'],
    ]);
  });

  it('records inference requests only', async () => {
    const { recorder } = open();
    publish(events.requestDone, done('get', { method: 'GET' }));
    publish(events.requestDone, done('data', { model: '' }));
    publish(events.requestDone, done('ok'));
    expect((await recorder.query()).records.map((r) => r.id)).toEqual(['ok']);
  });

  it('counts a batch the store refused as write_failed, and logs it', async () => {
    const { recorder, store, dropped, warnings } = open();
    publish(events.requestDone, done('r1'));
    publish(events.modelCall, modelCall('r2'));
    await store.close(); // the store goes away under the writer
    await recorder.flush();
    expect(dropped).toEqual([['write_failed', 2]]);
    expect(warnings).toEqual(['inference log: a batch could not be written and was dropped']);
  });

  it('drops a purged user’s buffered records before they are written', async () => {
    const { recorder } = open();
    publish(events.modelCall, modelCall('r1', { user: 'u1' }));
    publish(events.requestDone, done('r1', { user: 'u1' }));
    publish(events.requestDone, done('r2', { user: 'u2' }));
    expect(recorder.buffered).toBe(3);
    expect(await recorder.purgeUser('acme', 'u1')).toBe(2);
    expect((await recorder.query()).records.map((r) => r.id)).toEqual(['r2']);
  });

  it('stops recording once closed, after writing what it held', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-recorder-'));
    cleanup.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const file = join(dir, 'log.db');
    const recorder = new InferenceRecorder({
      store: SqliteInferenceLog.open(file),
      clock: systemClock,
      logger: silent as never,
      bufferSize: 10,
      flushMs: 60_000,
    }).start();
    publish(events.requestDone, done('held'));
    await recorder.close();
    publish(events.requestDone, done('late'));
    const again = SqliteInferenceLog.open(file);
    expect((await again.query()).records.map((r) => r.id)).toEqual(['held']);
    await again.close();
  });
});
