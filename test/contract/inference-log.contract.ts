import { afterEach, describe, expect, it } from 'vitest';
import type {
  InferenceLogStore,
  ModelCallRecord,
  RequestRecord,
} from '../../src/contracts/inference-log.js';

export interface InferenceLogUnderTest {
  readonly store: InferenceLogStore;
  /** Opens the same log again, as a restarted gateway would. */
  readonly reopen: () => Promise<InferenceLogStore>;
  close(): Promise<void>;
}

export type MakeInferenceLog = () => Promise<InferenceLogUnderTest>;

export const request = (
  id: string,
  at: number,
  over: Partial<RequestRecord> = {},
): RequestRecord => ({
  id,
  at,
  tenant: 'acme',
  trafficClass: 'interactive',
  method: 'POST',
  route: '/v1/chat/completions',
  model: 'chat-large',
  status: 200,
  outcome: 'ok',
  durationMs: 12.5,
  stream: false,
  path: 'chat-large#1:ok',
  versions: ['chat-large@gpt-x'],
  experiments: [],
  inputTokens: 10,
  outputTokens: 5,
  cost: 0.0125,
  ...over,
});

export const call = (
  requestId: string,
  at: number,
  over: Partial<ModelCallRecord> = {},
): ModelCallRecord => ({
  requestId,
  at,
  origin: 'direct',
  tenant: 'acme',
  trafficClass: 'interactive',
  op: 'chat',
  requested: 'chat-large',
  model: 'chat-large',
  servedBy: 'chat-large',
  version: 'gpt-x',
  tier: 'central',
  reason: 'default',
  stream: false,
  ms: 11,
  inputTokens: 10,
  outputTokens: 5,
  cost: 0.0125,
  outcome: 'ok',
  attempts: 'chat-large#1:ok',
  withheld: 0,
  ...over,
});

/**
 * The InferenceLogStore contract (#15): the SQLite and PostgreSQL stores each run it from a file
 * of a few lines.
 */
export function inferenceLogContract(
  name: string,
  make: MakeInferenceLog,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`InferenceLogStore contract: ${name}`, () => {
    const open: InferenceLogUnderTest[] = [];
    const fresh = async (): Promise<InferenceLogUnderTest> => {
      const l = await make();
      open.push(l);
      return l;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((l) => l.close()));
    });

    it('reads a batch back newest first, whole, and keeps it across a reopen', async () => {
      const { store, reopen } = await fresh();
      const first = request('r1', 1000, {
        journey: 'support',
        model: 'journey:support',
        user: 'u1',
        stages: [
          {
            stage: 'intent',
            kind: 'infer',
            outcome: 'continue',
            code: 'ok',
            reason: 'label billing',
            ms: 1.5,
            model: 'intent',
            version: '2',
          },
        ],
        decisions: ['escalation'],
        features: [
          { name: 'tier', entity: 'u1', version: 3, label: 'sensitive' },
          { name: 'city', entity: 'u1', version: 1, label: 'public', value: 'Oslo' },
        ],
        shards: [{ collection: 'articles', shard: 's0', node: 'local', hits: 4, outcome: 'ok' }],
        experiments: ['intent-int8/treatment'],
        traceId: '0af7651916cd43dd8448eb211c80319c',
        // Line breaks, a line separator, quotes and an emoji: a batch may cross to a writer as
        // JSON lines, and the record comes back whole.
        payload: {
          request: { input: 'hi\nthere\r\n\u2028 "q" \\ \u{1F600}' },
          response: { output: { nested: [1, null, 'x\n'] } },
        },
      });
      await store.append([first, request('r2', 2000)], [call('r1', 999), call('r2', 1999)]);
      await store.append([request('r3', 3000)], []);
      await store.append([], [call('r3', 2999)]);
      const page = await store.query();
      expect(page.records.map((r) => r.id)).toEqual(['r3', 'r2', 'r1']);
      expect(page.nextCursor).toBeUndefined();
      expect(page.records[2]).toEqual(first);
      const again = await reopen();
      expect((await again.query()).records.map((r) => r.id)).toEqual(['r3', 'r2', 'r1']);
    });

    it('gets a request with its model calls in order, and nothing for an unknown id', async () => {
      const { store } = await fresh();
      const calls = [
        call('r1', 10, { model: 'intent', servedBy: 'intent', op: 'classify', version: '2' }),
        call('r1', 20, {
          model: 'chat-large',
          servedBy: 'chat-backup',
          attempts: 'chat-large#1:UPSTREAM_ERROR>chat-backup#1:ok',
        }),
        call('r1', 25, { origin: 'shadow', model: 'intent', version: '3' }),
      ];
      await store.append([request('r1', 30), request('r2', 40)], [...calls, call('r2', 39)]);
      const got = await store.get('r1');
      expect(got?.id).toBe('r1');
      expect(got?.calls).toEqual(calls);
      expect(await store.get('nope')).toBeUndefined();
    });

    it('filters by tenant, journey, model (of any call), outcome, time, trace id, request id and user', async () => {
      const { store } = await fresh();
      await store.append(
        [
          request('a', 100, {
            tenant: 'acme',
            journey: 'support',
            model: 'journey:support',
            user: 'u1',
          }),
          request('b', 200, { tenant: 'globex', outcome: 'SY_ERR_UPSTREAM_ERROR', status: 502 }),
          request('c', 300, { tenant: 'acme', traceId: 'trace-c', model: 'embed' }),
          request('d', 400, { tenant: 'acme', payload: { request: { q: 1 } } }),
        ],
        [
          call('a', 99, { model: 'intent', servedBy: 'intent' }),
          call('b', 199, { servedBy: 'chat-backup' }),
        ],
      );
      const ids = async (q: Parameters<InferenceLogStore['query']>[0]) =>
        (await store.query(q)).records.map((r) => r.id);
      expect(await ids({ tenant: 'acme' })).toEqual(['d', 'c', 'a']);
      expect(await ids({ journey: 'support' })).toEqual(['a']);
      expect(await ids({ model: 'intent' })).toEqual(['a']);
      expect(await ids({ model: 'chat-backup' })).toEqual(['b']);
      expect(await ids({ model: 'embed' })).toEqual(['c']);
      expect(await ids({ outcome: 'SY_ERR_UPSTREAM_ERROR' })).toEqual(['b']);
      expect(await ids({ since: 200, until: 300 })).toEqual(['c', 'b']);
      expect(await ids({ traceId: 'trace-c' })).toEqual(['c']);
      expect(await ids({ requestId: 'b' })).toEqual(['b']);
      expect(await ids({ user: 'u1' })).toEqual(['a']);
      expect(await ids({ withPayload: true })).toEqual(['d']);
      expect(await ids({ tenant: 'acme', since: 150, model: 'chat-large' })).toEqual(['d']);
    });

    it('pages with a cursor until the last page, which has none', async () => {
      const { store } = await fresh();
      await store.append(
        Array.from({ length: 7 }, (_, i) => request(`r${i}`, i)),
        [],
      );
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.query({ limit: 3, ...(cursor === undefined ? {} : { cursor }) });
        seen.push(...page.records.map((r) => r.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== undefined);
      expect(pages).toBe(3);
      expect(seen).toEqual(['r6', 'r5', 'r4', 'r3', 'r2', 'r1', 'r0']);
      await expect(store.query({ cursor: 'not-a-cursor' })).rejects.toThrow();
    });

    it("purges one user's requests and calls in one tenant, and nobody else's", async () => {
      const { store } = await fresh();
      await store.append(
        [
          request('a', 1, { user: 'u1' }),
          request('b', 2, { user: 'u1', tenant: 'globex' }),
          request('c', 3, { user: 'u2' }),
          request('d', 4, { user: 'u1' }),
        ],
        [call('a', 1, { user: 'u1' }), call('c', 3, { user: 'u2' }), call('d', 4, { user: 'u1' })],
      );
      expect(await store.purgeUser('acme', 'u1')).toBe(4);
      expect((await store.query()).records.map((r) => r.id)).toEqual(['c', 'b']);
      expect(await store.get('a')).toBeUndefined();
      expect((await store.get('c'))?.calls).toHaveLength(1);
      expect(await store.purgeUser('acme', 'u1')).toBe(0);
    });

    it('retains by age: older requests and their calls go', async () => {
      const { store } = await fresh();
      await store.append(
        [request('old', 1_000), request('new', 9_000)],
        [call('old', 999), call('new', 8_999)],
      );
      expect(await store.retain({ maxAgeMs: 5_000, now: 10_000 })).toBe(1);
      expect((await store.query()).records.map((r) => r.id)).toEqual(['new']);
      expect(await store.get('old')).toBeUndefined();
      expect((await store.get('new'))?.calls).toHaveLength(1);
    });

    it('retains by rows and by bytes: the newest are kept, and orphaned calls go', async () => {
      const { store } = await fresh();
      await store.append(
        Array.from({ length: 6 }, (_, i) => request(`r${i}`, i * 10)),
        Array.from({ length: 6 }, (_, i) => call(`r${i}`, i * 10 - 1)),
      );
      expect(await store.retain({ maxRows: 4, now: 100 })).toBe(2);
      expect((await store.query()).records.map((r) => r.id)).toEqual(['r5', 'r4', 'r3', 'r2']);
      expect(await store.retain({ maxRows: 4, now: 100 })).toBe(0);
      const one = Buffer.byteLength(JSON.stringify(request('r5', 50)));
      // Room for two records and a half: two are kept.
      expect(await store.retain({ maxBytes: Math.floor(one * 2.5), now: 100 })).toBe(2);
      expect((await store.query()).records.map((r) => r.id)).toEqual(['r5', 'r4']);
      expect((await store.get('r4'))?.calls).toHaveLength(1);
      const again = await store.query({ model: 'chat-large' });
      expect(again.records).toHaveLength(2);
      // The calls of deleted requests went with them.
      await store.append([request('r2', 20)], []);
      expect((await store.get('r2'))?.calls).toEqual([]);
    });
  });
}
