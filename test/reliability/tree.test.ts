import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { configDigest } from '../../src/config/load.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { baseConfig, TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { call, errorCode, type Answer } from '../support/http-call.js';
import { NATS_URL, natsOrSkip } from '../support/nats.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import {
  openTestNetwork,
  startRelay,
  type Relay,
  type TestNetwork,
} from '../support/test-network.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #17, "done means": the gateway tree as real processes, each node in a network namespace of its
 * own with its own address (loopback, one port per node, where namespaces are not allowed, with
 * the reason printed). Two edges escalate to one regional node, which escalates to two central
 * replicas (`backend: switchyard` with `replicas`). The replicas share Redis (quotas, consent),
 * PostgreSQL (the state store) and NATS (config sync); every node shares the consent records.
 * Behind the replicas: one OpenAI-protocol upstream per location (EU and US), counting what
 * reaches it.
 */
const SERVICE_KEY = 'tree-reliability-service-key-0123456789';
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const TRACEPARENT = `00-${TRACE_ID}-b7ad6b7169203331-01`;
const QUOTA = 100;
const JURISDICTIONS = { eu: {}, us: {} };
const NODES = ['edge-0', 'edge-1', 'regional', 'central-0', 'central-1'] as const;
type NodeName = (typeof NODES)[number];
const REDIS_URL = process.env['SY_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const pgSkip = await postgresSkip('the gateway tree');
const natsOk = await natsOrSkip('the gateway tree');
const redisOk = await redisUp();
if (!redisOk && process.env['CI'] === 'true')
  throw new Error(`the gateway tree: no Redis at ${REDIS_URL} and CI=true`);
if (!redisOk) console.warn(`skipping the gateway tree: no Redis at ${REDIS_URL}`);

async function redisUp(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

interface Node {
  proc: ProcessGateway;
  url: string;
}

describe.runIf(pgSkip === false && natsOk && redisOk)(
  'the gateway tree: 2 edges, a regional node, 2 central replicas (#17)',
  () => {
    let net: TestNetwork;
    let euUp: TestUpstream;
    let usUp: TestUpstream;
    const nodes = new Map<NodeName, Node>();
    const taps: Relay[] = [];
    /** The remaining budget each tapped hop carried (edge → regional, regional → central). */
    const budgets: { toRegional: number[]; toCentral: number[] } = {
      toRegional: [],
      toCentral: [],
    };
    let stores: string;
    let centralConfig: Record<string, unknown>;
    const tag = randomBytes(4).toString('hex');
    const prefix = `sy-tree:${tag}:`;
    const schema = freshSchema('sy_tree');
    const group = `tree-${tag}`;
    const betaKey = generateKey('sk');
    const acmeKey = generateKey('sk');
    const env = { SY_TREE_KEY: SERVICE_KEY };

    const node = (n: NodeName): Node => nodes.get(n)!;
    const parentModel = (url: string, extra: Record<string, unknown> = {}) => ({
      backend: 'switchyard',
      url,
      service_key: { id: 'tree', secret: { env: 'SY_TREE_KEY' } },
      first_byte_timeout_ms: 2_000,
      ...extra,
    });
    // Every node knows both tenants' keys (the test calls each node directly); beta's quota lives
    // at the central replicas only, in their shared Redis.
    const tenants = (betaQuota?: Record<string, number>) => ({
      acme: { keys: [{ id: 'a1', hash: hashKey(acmeKey, TEST_SECRET) }], models: ['*'] },
      beta: {
        keys: [{ id: 'b1', hash: hashKey(betaKey, TEST_SECRET) }],
        models: ['*'],
        ...(betaQuota === undefined ? {} : { quotas: betaQuota }),
      },
    });

    beforeAll(async () => {
      net = await openTestNetwork(NODES);
      console.warn(
        net.kind === 'netns'
          ? `gateway tree on network namespaces: ${NODES.map((n) => `${n} ${net.node(n).address}`).join(', ')}`
          : `gateway tree on loopback: ${net.reason}`,
      );
      const [redisUrl, pgUrl, natsUrl] = await Promise.all([
        net.expose(REDIS_URL),
        net.expose(PG_URL),
        net.expose(NATS_URL),
      ]);
      // Small answers: the residency run sends 10,000 requests.
      euUp = await startUpstream(json(200, chatCompletion('from-eu')), net.hostAddress);
      usUp = await startUpstream(json(200, chatCompletion('from-us')), net.hostAddress);
      stores = mkdtempSync(join(tmpdir(), 'switchyard-tree-'));
      await writeSynthetic(join(stores, 'central-pair'), '1', pairModel(2));
      await writeSynthetic(join(stores, 'edge-pair'), '1', pairModel(3));
      // Namespaces: every node on its own address, port 8080 (so replicas' files are identical).
      const server =
        net.kind === 'netns' ? { host: '0.0.0.0', port: 8080 } : { host: '127.0.0.1', port: 0 };
      const start = async (name: NodeName, config: Record<string, unknown>): Promise<Node> => {
        const place = net.node(name);
        const proc = await startProcessGateway({
          env,
          config: { server, ...config },
          ...(place.netns === undefined ? {} : { netns: place.netns }),
        });
        const url =
          net.kind === 'netns' ? `http://${place.address}:${new URL(proc.url).port}` : proc.url;
        const n = { proc, url };
        nodes.set(name, n);
        return n;
      };
      const tap = async (target: string, into: number[]): Promise<string> => {
        const relay = await startRelay(target, net.hostAddress, (chunk) => {
          for (const m of chunk.toString('latin1').matchAll(/x-switchyard-timeout-ms: (\d+)/gi))
            into.push(Number(m[1]));
        });
        taps.push(relay);
        return relay.url;
      };
      // Gates fixed above this test's own concurrency: the claims here are the tree's, and a shared
      // CI machine's noise must not read as congestion (shedding has tests of its own).
      const concurrency = { algorithm: 'fixed', initial_limit: 64, max_limit: 64 };
      const privacy = {
        jurisdictions: JURISDICTIONS,
        consent_redis: { url: redisUrl, prefix: `${prefix}consent:` },
      };
      const accepts = {
        secret: { file: 'secret.txt' },
        service_keys: [{ id: 'tree', secret: { env: 'SY_TREE_KEY' } }],
      };
      // The two central replicas start from one file, as a Deployment's ConfigMap gives them.
      centralConfig = {
        auth: accepts,
        node: { region: 'eu-central', role: 'central' },
        privacy,
        admission: {
          concurrency,
          // A command timeout a loaded CI machine does not reach: the local fallback of a Redis
          // outage (redis-outage-quota.test.ts) is not what this test measures; it asserts
          // below that every decision was taken in Redis.
          limiter: {
            store: 'redis',
            url: redisUrl,
            prefix: `${prefix}quota:`,
            command_timeout_ms: 2_000,
          },
        },
        state: { postgres: pgUrl, schema },
        config_sync: { nats: natsUrl, group },
        onnx: { workers: 1 },
        // beta: 100 an hour, all of it at once, across both replicas.
        tenants: tenants({ window_s: 3600, requests: QUOTA, requests_burst: QUOTA }),
        models: {
          chat: { backend: 'openai', url: `${euUp.url}/v1`, jurisdiction: 'eu' },
          'chat-us': { backend: 'openai', url: `${usUp.url}/v1`, jurisdiction: 'us' },
          pair: { backend: 'onnx', store: join(stores, 'central-pair'), batch: { max: 1 } },
        },
      };
      // One after the other: the first creates the schema.
      const c0 = await start('central-0', centralConfig);
      const c1 = await start('central-1', centralConfig);
      const centralTap = await tap(c0.url, budgets.toCentral);
      const regional = await start('regional', {
        auth: accepts,
        node: { region: 'eu-west', jurisdiction: 'eu', role: 'regional' },
        admission: { concurrency },
        privacy,
        tenants: tenants(),
        models: {
          chat: parentModel(c0.url, { jurisdiction: 'eu', replicas: [c1.url] }),
          'chat-us': parentModel(c0.url, { jurisdiction: 'us', replicas: [c1.url] }),
          pair: parentModel(c0.url, { operations: ['infer'], replicas: [c1.url] }),
          // Through a tap that reads the budget this hop carries.
          'chat-tap': parentModel(centralTap, { jurisdiction: 'eu', upstream_model: 'chat' }),
        },
      });
      const regionalTap = await tap(regional.url, budgets.toRegional);
      const edge = (name: NodeName) =>
        start(name, {
          node: { region: 'eu-west', jurisdiction: 'eu', role: 'edge' },
          admission: { concurrency },
          privacy,
          onnx: { workers: 1 },
          tenants: tenants(),
          models: {
            chat: parentModel(regional.url, { jurisdiction: 'eu', cost: { per_call: 0.01 } }),
            'chat-us': parentModel(regional.url, { jurisdiction: 'us', cost: { per_call: 0.001 } }),
            // Misconfigured on purpose: the edge believes it EU, the parent knows it is US.
            'chat-claimed-eu': parentModel(regional.url, {
              jurisdiction: 'eu',
              upstream_model: 'chat-us',
            }),
            'chat-tap': parentModel(regionalTap, { jurisdiction: 'eu' }),
            pair: parentModel(regional.url, {
              operations: ['infer'],
              fallback: ['pair-local'],
              breaker: { consecutive_failures: 2, cooldown_ms: 60_000 },
            }),
            'pair-local': { backend: 'onnx', store: join(stores, 'edge-pair'), batch: { max: 1 } },
          },
          journeys: {
            ask: {
              stages: [
                { id: 'answer', infer: { candidates: ['chat-us', 'chat'], prompt: 'input.text' } },
                { id: 'out', respond: { body: { text: 'answer.text' } } },
              ],
            },
          },
        });
      await Promise.all([edge('edge-0'), edge('edge-1')]);
    }, 120_000);

    afterAll(async () => {
      await Promise.all([...nodes.values()].map((n) => n.proc.close()));
      await Promise.all(taps.map((t) => t.close()));
      await euUp?.close();
      await usUp?.close();
      await net?.close();
      if (stores !== undefined) rmSync(stores, { recursive: true, force: true });
      const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      const keys = await r.keys(`${prefix}*`);
      if (keys.length > 0) await r.del(...keys);
      r.disconnect();
      const ledger = await PostgresCostLedger.open({ url: PG_URL, schema });
      await ledger.dropSchema();
      await ledger.close();
    }, 60_000);

    const chat = (
      at: NodeName,
      model: string,
      content: string,
      headers: Record<string, string> = {},
      key = acmeKey,
    ) =>
      call(
        node(at).url,
        'POST',
        '/v1/chat/completions',
        key,
        { model, messages: [{ role: 'user', content }] },
        headers,
      );
    const pairInfer = (at: NodeName, headers: Record<string, string> = {}, a0 = 1) =>
      call(
        node(at).url,
        'POST',
        '/v2/models/pair/infer',
        acmeKey,
        {
          inputs: [
            { name: 'a', datatype: 'FP32', shape: [1, 4], data: [a0, 1, 1, 1] },
            { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 0, 0, 0] },
          ],
        },
        headers,
      );
    /** Runs `one(i)` for i < total, `width` at a time. */
    const swarm = async (total: number, width: number, one: (i: number) => Promise<void>) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: width }, async () => {
          while (next < total) await one(next++);
        }),
      );
    };

    it('shows the route across hops, and continues the trace and the shrinking deadline', async () => {
      const before = euUp.calls.length;
      const a = await chat('edge-0', 'chat', 'hello tree', {
        'x-switchyard-timeout-ms': '5000',
        traceparent: TRACEPARENT,
        'x-request-id': 'tree-req-1',
      });
      expect(a.status, a.text).toBe(200);
      expect(a.text).toContain('from-eu');
      expect(a.headers['x-switchyard-route']).toBe('chat#1:ok[chat#1:ok[chat#1:ok]]');
      const seen = euUp.calls[before]!;
      expect(seen.headers['traceparent']).toBe(TRACEPARENT);
      expect(seen.headers['traceparent']).toContain(TRACE_ID);
      expect(seen.headers['x-request-id']).toBe('tree-req-1');
      // The budget at every hop, read on the wire: each no more than the one before, all under
      // what the client gave.
      const t = await chat('edge-1', 'chat-tap', 'tapped', {
        'x-switchyard-timeout-ms': '5000',
        traceparent: TRACEPARENT,
      });
      expect(t.status, t.text).toBe(200);
      expect(t.headers['x-switchyard-route']).toBe('chat-tap#1:ok[chat-tap#1:ok[chat#1:ok]]');
      const last = euUp.calls.at(-1)!;
      expect(last.headers['traceparent']).toBe(TRACEPARENT);
      const hops = [
        budgets.toRegional.at(-1)!,
        budgets.toCentral.at(-1)!,
        Number(last.headers['x-switchyard-timeout-ms']),
      ];
      expect(hops[0]).toBeLessThanOrEqual(5_000);
      expect(hops[1]).toBeLessThanOrEqual(hops[0]!);
      expect(hops[2]).toBeLessThanOrEqual(hops[1]!);
      expect(hops[2]).toBeLessThan(5_000);
      expect(hops[2]).toBeGreaterThan(3_000);
      // KServe over two hops too: a central replica's in-process model (a + 2b) answered.
      const p = await pairInfer('edge-1');
      expect(p.status, p.text).toBe(200);
      expect(p.headers['x-switchyard-route']).toBe('pair#1:ok[pair#1:ok[pair#1:ok]]');
      expect(outputsOf(p)).toEqual([3, 1, 1, 1]);
    });

    it('never sends EU-resident data to a non-EU model: 0 in 10,000 tries, at every node', async () => {
      const usBefore = usUp.calls.length;
      const euBefore = euUp.calls.length;
      const eu = { 'x-switchyard-jurisdiction': 'eu' };
      const tries = 10_000;
      // shed: the gateway refused the work under load (503 SY_ERR_SHED): nothing was sent either.
      const outcomes = { refused: 0, skipped: 0, shed: 0 };
      const failures: string[] = [];
      const one = async (i: number): Promise<void> => {
        const edge: NodeName = i % 2 === 0 ? 'edge-0' : 'edge-1';
        const kind = i % 5;
        let a: Answer;
        if (kind === 0)
          a = await chat(edge, 'chat-us', `eu ${i}`, eu); // refused at the edge
        else if (kind === 1)
          a = await chat(edge, 'chat-claimed-eu', `eu ${i}`, eu); // at the regional
        else if (kind === 2) a = await chat('regional', 'chat-us', `eu ${i}`, eu);
        else if (kind === 3)
          a = await chat(i % 2 === 0 ? 'central-0' : 'central-1', 'chat-us', `eu ${i}`, eu);
        else {
          a = await call(
            node(edge).url,
            'POST',
            '/v1/journeys/ask',
            acmeKey,
            { input: { text: `eu ${i}` } },
            eu,
          );
          if (
            a.status === 200 &&
            JSON.stringify(a.body['route']).includes('skipped: chat-us outside eu') &&
            a.text.includes('from-eu')
          ) {
            outcomes.skipped++;
            return;
          }
          if (a.status === 503 && errorCode(a) === 'SY_ERR_SHED') {
            outcomes.shed++;
            return;
          }
          failures.push(`${i}: ${a.status} ${a.text.slice(0, 200)}`);
          return;
        }
        if (a.status === 403 && errorCode(a) === 'SY_ERR_RESIDENCY') outcomes.refused++;
        else if (a.status === 503 && errorCode(a) === 'SY_ERR_SHED') outcomes.shed++;
        else failures.push(`${i}: ${a.status} ${a.text.slice(0, 200)}`);
      };
      await swarm(tries, 24, one);
      console.warn(`EU-tagged tries: ${JSON.stringify(outcomes)}`);
      expect(failures.slice(0, 5)).toEqual([]);
      expect(outcomes.refused + outcomes.skipped + outcomes.shed).toBe(tries);
      expect(outcomes.shed).toBeLessThan(tries * 0.01);
      expect(usUp.calls.length - usBefore).toBe(0);
      expect(euUp.calls.length - euBefore).toBe(outcomes.skipped);
      // Control: untagged data reaches the US model through the same path.
      const control = await chat('edge-0', 'chat-claimed-eu', 'untagged');
      expect(control.status, control.text).toBe(200);
      expect(control.text).toContain('from-us');
      expect(usUp.calls.length - usBefore).toBe(1);
    }, 120_000);

    it('keeps the tenant quota exact across both edges and both replicas (3x offered, admitted <= limit + 1%)', async () => {
      let admitted = 0;
      let limited = 0;
      const offered = 3 * QUOTA;
      await swarm(offered, 16, async (i) => {
        const a = await chat(i % 2 === 0 ? 'edge-0' : 'edge-1', 'chat', `quota ${i}`, {}, betaKey);
        if (a.status === 200) admitted++;
        else {
          expect(a.status, a.text).toBe(429);
          expect(errorCode(a)).toMatch(/SY_ERR_(RATE_LIMITED|QUOTA_EXCEEDED)/);
          limited++;
        }
      });
      expect(admitted + limited).toBe(offered);
      // Every decision shared: no replica counted alone.
      for (const n of ['central-0', 'central-1'] as const) {
        const m = await (await fetch(`${node(n).url}/metrics`)).text();
        expect(m, n).toMatch(/^switchyard_limiter_shared 1$/m);
        expect(m, n).toMatch(/^switchyard_limiter_local_fallback_total 0$/m);
      }
      expect(admitted).toBeLessThanOrEqual(QUOTA * 1.01);
      expect(admitted).toBeGreaterThanOrEqual(QUOTA - 1);
    }, 60_000);

    it('enforces a consent revocation made at one edge at every node within 1 s', async () => {
      const user = `u-${tag}`;
      const personal = {
        'x-switchyard-user': user,
        'x-switchyard-data-label': 'consented',
        'x-switchyard-data-purpose': 'behavioral_inference',
      };
      const grant = await call(node('edge-1').url, 'PUT', `/v1/consent/${user}`, acmeKey, {
        purposes: { behavioral_inference: true },
      });
      expect(grant.status, grant.text).toBe(200);
      // Every node serves the user's data once it has seen the grant.
      for (const n of NODES) {
        await until(
          async () => (await chat(n, 'chat', 'with consent', personal)).status === 200,
          5_000,
        );
      }
      const revoke = await call(node('edge-0').url, 'POST', `/v1/consent/${user}/revoke`, acmeKey, {
        purposes: ['behavioral_inference'],
      });
      expect(revoke.status, revoke.text).toBe(200);
      const t0 = performance.now();
      const took = await Promise.all(
        NODES.map(async (n) => {
          await until(async () => {
            const a = await chat(n, 'chat', 'after revocation', personal);
            if (a.status === 200) return false;
            expect(a.status, a.text).toBe(403);
            expect(errorCode(a)).toBe('SY_ERR_CONSENT_REQUIRED');
            // The node's own records say so too (not only its parent's refusal).
            const rec = await call(node(n).url, 'GET', `/v1/consent/${user}`, acmeKey);
            return JSON.stringify(rec.body).includes('"behavioral_inference":false');
          }, 3_000);
          return performance.now() - t0;
        }),
      );
      expect(Math.max(...took)).toBeLessThan(1_000);
    }, 60_000);

    it('carries a config change at one central replica to the other within 5 s, shown at /readyz', async () => {
      const readyz = async (n: NodeName) =>
        (await (await fetch(`${node(n).url}/readyz`)).json()) as {
          config: string;
          config_sync?: { desired?: string; in_sync: boolean };
        };
      await until(
        async () => (await readyz('central-1')).config === (await readyz('central-0')).config,
        5_000,
      );
      const models = centralConfig['models'] as Record<string, unknown>;
      const next = { ...centralConfig, models: { ...models, 'chat-new': models['chat'] } };
      // The file as startProcessGateway wrote it (its digest is the one served), one model more.
      const file = (c: Record<string, unknown>) =>
        stringify({ ...baseConfig('unused'), log: { level: 'warn' }, ...withServer(c, net) });
      expect(configDigest(file(centralConfig))).toBe((await readyz('central-0')).config);
      const changed = file(next);
      const proc = node('central-0').proc;
      writeFileSync(proc.configPath, changed);
      proc.signal('SIGHUP');
      const applied = configDigest(changed);
      const t0 = performance.now();
      await until(async () => (await readyz('central-0')).config === applied, 5_000);
      await until(async () => (await readyz('central-1')).config === applied, 8_000);
      expect(performance.now() - t0).toBeLessThan(5_000);
      expect((await readyz('central-1')).config_sync).toMatchObject({
        desired: applied,
        in_sync: true,
      });
      const served = await chat('central-1', 'chat-new', 'new model');
      expect(served.status, served.text).toBe(200);
    }, 30_000);

    it('loses one central replica (SIGKILL) under load with <= 0.1% client errors', async () => {
      const total = 2_000;
      let done = 0;
      let killed = false;
      const bad: string[] = [];
      const killAt = Math.floor(total / 3);
      await swarm(total, 16, async (i) => {
        const a = await chat(i % 2 === 0 ? 'edge-0' : 'edge-1', 'chat', `load ${i}`);
        if (a.status !== 200 || a.headers['x-switchyard-degraded'] !== undefined)
          bad.push(
            `${a.status} ${String(a.headers['x-switchyard-degraded'] ?? '')} ${a.text.slice(0, 160)}`,
          );
        if (++done === killAt) {
          killed = true;
          node('central-1').proc.signal('SIGKILL');
        }
      });
      console.warn(
        `central-1 SIGKILLed after ${killAt} of ${total} answers: ${bad.length} client errors`,
      );
      expect(killed).toBe(true);
      expect(await node('central-1').proc.exited()).toBe('SIGKILL');
      expect(bad.length, bad.slice(0, 3).join('\n')).toBeLessThanOrEqual(total * 0.001);
      // The regional node moved calls off the dead replica, and its breaker for it is open.
      const m = await (await fetch(`${node('regional').url}/metrics`)).text();
      expect(m).toMatch(
        /switchyard_parent_failovers_total\{model="chat",code="SY_ERR_UPSTREAM_UNREACHABLE"\} [1-9]/,
      );
      expect(m).toMatch(/switchyard_breaker_state\{backend="chat@[^"]+"\} 1/);
      expect(m).toMatch(/switchyard_breaker_state\{backend="chat"\} 0/);
    }, 120_000);

    it('degrades the edges without errors when the regional node is killed: marked, counted, on time', async () => {
      // An answer the edge's stale cache keeps, taken while the parent is up.
      const fresh = await chat('edge-0', 'chat', 'remember me');
      expect(fresh.status, fresh.text).toBe(200);
      expect(fresh.headers['x-switchyard-degraded']).toBeUndefined();
      node('regional').proc.signal('SIGKILL');
      await node('regional').proc.exited();
      const deadlineMs = 1_500;
      const results: { a: Answer; ms: number }[] = [];
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        // A new input each time: the stale cache has no answer, the local model answers.
        const a = await pairInfer(
          i % 2 === 0 ? 'edge-0' : 'edge-1',
          { 'x-switchyard-timeout-ms': String(deadlineMs) },
          10 + i,
        );
        results.push({ a, ms: performance.now() - t0 });
      }
      for (const [i, { a, ms }] of results.entries()) {
        expect(a.status, a.text).toBe(200);
        expect(a.headers['x-switchyard-degraded']).toBe('parent-unavailable');
        expect(String(a.headers['x-switchyard-route'])).toMatch(
          /pair-local#1:ok~parent-unavailable$/,
        );
        expect(outputsOf(a)).toEqual([13 + i, 1, 1, 1]); // the edge's own model: a + 3b
        expect(ms).toBeLessThan(deadlineMs);
      }
      const t0 = performance.now();
      const stale = await chat('edge-0', 'chat', 'remember me', {
        'x-switchyard-timeout-ms': String(deadlineMs),
      });
      expect(performance.now() - t0).toBeLessThan(deadlineMs);
      expect(stale.status, stale.text).toBe(200);
      expect(stale.text).toContain('from-eu');
      expect(stale.headers['x-switchyard-degraded']).toBe('stale-cache');
      expect(String(stale.headers['x-switchyard-route'])).toMatch(/chat:stale#1:ok~stale-cache$/);
      const text = await (await fetch(`${node('edge-0').url}/metrics`)).text();
      expect(text).toMatch(
        /switchyard_degraded_answers_total\{model="pair",reason="local_fallback"\} [1-9]/,
      );
      expect(text).toMatch(
        /switchyard_degraded_answers_total\{model="chat",reason="stale_cache"\} 1/,
      );
    }, 60_000);
  },
);

/** The config a replica was started with, `server` included (see `start` above). */
function withServer(config: Record<string, unknown>, net: TestNetwork): Record<string, unknown> {
  const server =
    net.kind === 'netns' ? { host: '0.0.0.0', port: 8080 } : { host: '127.0.0.1', port: 0 };
  return { server, ...config };
}

/** Polls `ok` every 20 ms until it holds; throws after `timeoutMs`. */
async function until(ok: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const t0 = performance.now();
  while (!(await ok())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function outputsOf(a: Answer): number[] {
  const outputs = a.body['outputs'] as { name: string; data: number[] }[];
  return outputs.find((o) => o.name === 'mixed')!.data;
}
