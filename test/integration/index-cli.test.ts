import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli } from '../../src/cli/program.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startGateway, type Gateway } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { captureIo } from '../support/cli-io.js';

const indexCommand = (args: string[], io: ReturnType<typeof captureIo>) =>
  runCli(['index', ...args], io);
import { TEST_SECRET } from '../support/gateway.js';
import { clustered } from '../support/vectors.js';

// `switchyard index build|stats|rebalance` against a node's real shard files, and online
// rebalancing of a serving gateway: results stay exact through every change.
const DIMS = 16;
const N = 3_000;
const vs = clustered(N, DIMS, 12, 5);
const adminKey = generateKey('sk');
const appKey = generateKey('sk');
let dir: string;
let config: string;

const line = (i: number, over: Record<string, unknown> = {}): string =>
  JSON.stringify({
    id: `item-${i}`,
    vector: Array.from(vs[i]!),
    meta: { tenant: 'acme', label: 'public', entityType: 'item', ...over },
  });

/** Exact nearest ids by cosine, the reference the index must match. */
function exactTop(q: Float32Array, k: number): string[] {
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const nq = norm(q);
  return vs
    .map((v, i) => ({ i, d: 1 - v.reduce((a, x, j) => a + x * q[j]!, 0) / (norm(v) * nq) }))
    .sort((a, b) => a.d - b.d)
    .slice(0, k)
    .map((h) => `item-${h.i}`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-index-cli-'));
  writeFileSync(join(dir, 'secret.txt'), TEST_SECRET);
  config = join(dir, 'switchyard.yaml');
  writeFileSync(
    config,
    stringify({
      server: { host: '127.0.0.1', port: 0 },
      auth: { secret: { file: 'secret.txt' } },
      log: { level: 'warn' },
      tenants: {
        acme: {
          keys: [
            { id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true },
            { id: 'app', hash: hashKey(appKey, TEST_SECRET) },
          ],
        },
      },
      models: {},
      privacy: { node: { id: 'n1' } },
      vectors: {
        data_dir: 'vectors',
        scan_workers: 0,
        collections: {
          items: {
            dims: DIMS,
            hnsw: { expansion_search: 200 },
            shards: [{ id: 'catalog', tier: 'warm' }],
          },
        },
      },
    }),
  );
  writeFileSync(join(dir, 'items.jsonl'), vs.map((_, i) => line(i)).join('\n') + '\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('switchyard index', () => {
  it('refuses a file with a bad line and writes nothing', async () => {
    writeFileSync(
      join(dir, 'bad.jsonl'),
      [line(0), '{"id": "x", "vector": [1, 2], "meta": {"label": "public"}}', 'nope'].join('\n'),
    );
    const io = captureIo();
    const code = await indexCommand(
      ['build', '--config', config, '--collection', 'items', '--input', join(dir, 'bad.jsonl')],
      io,
    );
    expect(code).toBe(1);
    expect(io.stderr()).toMatch(/line 2: .*entityType/);
    expect(io.stderr()).toMatch(/line 3: not JSON/);
    expect(io.stderr()).toContain('nothing was written');
    const stats = captureIo();
    expect(await indexCommand(['stats', '--config', config, '--collection', 'items'], stats)).toBe(
      0,
    );
    expect(stats.stdout()).toMatch(/^catalog\s+0\s/m);
  });

  it('bulk-loads a JSON-lines file with progress, and the shard persists it', async () => {
    const io = captureIo();
    const code = await indexCommand(
      ['build', '--config', config, '--collection', 'items', '--input', join(dir, 'items.jsonl')],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    expect(io.stdout()).toContain(`${N} inserted, 0 updated, 0 evicted`);
    expect(io.stderr()).toMatch(/build catalog \[#+\] 100%/);
    const stats = captureIo();
    expect(
      await indexCommand(['stats', '--config', config, '--collection', 'items', '--probe'], stats),
    ).toBe(0);
    const row = /^catalog\s+(\d+)\s+\S+\s+\S+\s+\d+\s+([\d.]+)/m.exec(stats.stdout());
    expect(row?.[1]).toBe(String(N));
    expect(Number(row?.[2])).toBeGreaterThanOrEqual(0.95);
  });

  it('rebalances offline, and the split layout is what the next start serves', async () => {
    const io = captureIo();
    const code = await indexCommand(
      ['rebalance', '--config', config, '--collection', 'items', '--shard', 'catalog'],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    const sizes = [...io.stdout().matchAll(/catalog\.2-[01] \((\d+)\)/g)].map((m) => Number(m[1]));
    expect(sizes).toHaveLength(2);
    expect(sizes[0]! + sizes[1]!).toBe(N);
    expect(Math.min(...sizes)).toBeGreaterThan(N / 4);
  });

  describe('on a serving gateway', () => {
    let gw: Gateway;
    beforeAll(async () => {
      gw = await startGateway({ configPath: config, watch: false, logger: createLogger('silent') });
    });
    afterAll(() => gw?.close());

    const search = async (i: number) => {
      const res = await request(`${gw.url}/v1/vectors/items/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${appKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ vector: Array.from(vs[i]!), k: 5 }),
      });
      expect(res.statusCode).toBe(200);
      const json = (await res.body.json()) as { hits: { id: string }[]; shards: unknown[] };
      return { ids: json.hits.map((h) => h.id), shards: json.shards.length };
    };

    it('serves the persisted children after a restart', async () => {
      const r = await search(7);
      expect(r.shards).toBe(2);
      expect(r.ids).toEqual(exactTop(vs[7]!, 5));
    });

    it('refuses a second opener of the same shard files while the gateway serves them', async () => {
      const io = captureIo();
      expect(await indexCommand(['stats', '--config', config, '--collection', 'items'], io)).toBe(
        1,
      );
      expect(io.stderr()).toMatch(/in use by process \d+/);
    });

    it('splits a shard online over HTTP while queries keep answering exactly', async () => {
      let stop = false;
      let answered = 0;
      const queries = (async () => {
        for (let i = 0; !stop; i = (i + 37) % N) {
          const r = await search(i);
          expect(r.ids).toEqual(exactTop(vs[i]!, 5));
          answered++;
        }
      })();
      const io = captureIo();
      const code = await indexCommand(
        [
          'rebalance',
          ...['--url', gw.url, '--key', adminKey],
          ...['--collection', 'items', '--shard', 'catalog.2-0'],
        ],
        io,
      );
      stop = true;
      await queries;
      expect(code, io.stderr()).toBe(0);
      expect(io.stdout()).toMatch(
        /split catalog\.2-0 into catalog\.2-0\.4-0 \(\d+\), catalog\.2-0\.4-2/,
      );
      expect(answered).toBeGreaterThan(0);
      const stats = captureIo();
      await indexCommand(
        ['stats', '--url', gw.url, '--key', adminKey, '--collection', 'items'],
        stats,
      );
      const total = [...stats.stdout().matchAll(/^catalog\S*\s+(\d+)/gm)].reduce(
        (a, m) => a + Number(m[1]),
        0,
      );
      expect(total).toBe(N);
      expect((await search(11)).shards).toBe(3);
    });

    it('answers a non-admin rebalance and an unknown shard with JSON errors', async () => {
      const io = captureIo();
      const base = ['rebalance', '--url', gw.url, '--collection', 'items'];
      expect(await indexCommand([...base, '--key', appKey, '--shard', 'catalog.2-1'], io)).toBe(1);
      expect(io.stderr()).toContain('403 SY_ERR_VECTOR_FORBIDDEN');
      expect(await indexCommand([...base, '--key', adminKey, '--shard', 'nope'], io)).toBe(1);
      expect(io.stderr()).toContain('404 SY_ERR_VECTOR_SHARD_NOT_FOUND');
    });
  });
});
