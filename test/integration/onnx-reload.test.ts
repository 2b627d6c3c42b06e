import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { events, subscribe, type ModelLoadEvent } from '../../src/core/events.js';
import { pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Model versions change under a running gateway (issue #3): a version dropped into the store is
 * loaded without a restart and without losing a request in flight; a corrupt model file is
 * refused and the serving version stays.
 */

let dir: string;
let gw: TestGateway | undefined;
let loads: ModelLoadEvent[] = [];
let stopLoads: () => void = () => undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-onnx-reload-'));
  loads = [];
  stopLoads = subscribe(events.modelLoad, (e) => void (e.model === 'hot' && loads.push(e)));
});
afterEach(async () => {
  stopLoads();
  await gw?.close();
  gw = undefined;
  await rm(dir, { recursive: true, force: true });
});
afterAll(() => stopLoads());

async function start(): Promise<TestGateway> {
  gw = await startTestGateway({
    config: {
      onnx: { workers: 1 },
      models: {
        hot: {
          backend: 'onnx',
          store: join(dir, 'store'),
          version_policy: { latest: 1 },
          watch: true,
          batch: { max: 8, delay_us: 200 },
        },
      },
    },
  });
  return gw;
}

/** One request; `scale` is what the answering model multiplies `b` by (pairModel's version tag). */
async function infer(
  g: TestGateway,
): Promise<{ status: number; version?: string; scale?: number }> {
  const res = await request(`${g.url}/v2/models/hot/infer`, {
    method: 'POST',
    headers: { authorization: `Bearer ${g.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] },
        { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] },
      ],
      outputs: [{ name: 'mixed' }],
    }),
  });
  const body = (await res.body.json()) as {
    model_version?: string;
    outputs?: { data: number[] }[];
  };
  if (res.statusCode !== 200) return { status: res.statusCode };
  return { status: 200, version: body.model_version!, scale: body.outputs![0]!.data[0]! };
}

async function versions(g: TestGateway): Promise<unknown> {
  const res = await request(`${g.url}/v2/models/hot`, {
    headers: { authorization: `Bearer ${g.key}` },
  });
  return ((await res.body.json()) as { versions?: unknown }).versions;
}

describe('hot reload of in-process model versions', () => {
  it('moves to a version dropped into the store while requests are in flight, losing none of them', async () => {
    await writeSynthetic(join(dir, 'store'), '1', pairModel(1));
    const g = await start();
    const answers: Awaited<ReturnType<typeof infer>>[] = [];
    let stop = false;
    const clients = Array.from({ length: 8 }, async () => {
      while (!stop) answers.push(await infer(g));
    });
    await expect.poll(() => answers.length, { timeout: 10_000 }).toBeGreaterThan(50);
    await writeSynthetic(join(dir, 'store'), '2', pairModel(2));
    // Keep the load on until version 2 has answered a good number of requests.
    await expect
      .poll(() => answers.filter((a) => a.version === '2').length, { timeout: 15_000 })
      .toBeGreaterThan(50);
    stop = true;
    await Promise.all(clients);

    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    // Every answer came whole from one version: version 1 multiplies by 1, version 2 by 2.
    for (const a of answers) expect(a.scale).toBe(Number(a.version));
    const firstTwo = answers.findIndex((a) => a.version === '2');
    expect(firstTwo).toBeGreaterThan(0);
    expect(answers.slice(0, firstTwo).every((a) => a.version === '1')).toBe(true);
    await expect
      .poll(() => loads.map((l) => `${l.result}:${l.version}`))
      .toEqual(['loaded:1', 'loaded:2', 'unloaded:1']);
    expect(await versions(g)).toEqual(['2']);
  });

  it('refuses a corrupt model file and keeps serving the version it had', async () => {
    const good = pairModel(1);
    await writeSynthetic(join(dir, 'store'), '1', good);
    const g = await start();
    // A newer version whose file is cut short: with `latest: 1` it would replace version 1.
    await writeSynthetic(join(dir, 'store'), '2', good.subarray(0, Math.floor(good.length / 2)));
    await expect
      .poll(() => loads.map((l) => `${l.result}:${l.version}`), { timeout: 10_000 })
      .toEqual(['loaded:1', 'failed:2']);
    expect(await infer(g)).toEqual({ status: 200, version: '1', scale: 1 });
    expect(await versions(g)).toEqual(['1']);
    const refused = g.logs.find(
      (l) => l['msg'] === 'model version refused; the other versions keep serving',
    );
    expect(refused).toMatchObject({ model: 'hot', version: '2' });

    // A good version 3 is taken up; then its file is overwritten with garbage in place.
    await writeSynthetic(join(dir, 'store'), '3', pairModel(3));
    await expect
      .poll(() => infer(g), { timeout: 10_000 })
      .toEqual({
        status: 200,
        version: '3',
        scale: 3,
      });
    await writeFile(join(dir, 'store', '3', 'model.onnx'), 'this is not an ONNX model');
    await expect
      .poll(() => loads.filter((l) => l.result === 'failed').map((l) => l.version), {
        timeout: 10_000,
      })
      .toEqual(['2', '3']);
    // The session loaded from the good file keeps serving version 3.
    expect(await infer(g)).toEqual({ status: 200, version: '3', scale: 3 });
    expect(
      g.logs.some((l) => l['msg'] === 'model version refused; version 3 keeps its previous file'),
    ).toBe(true);
    const metrics = await (await request(`${g.url}/metrics`)).body.text();
    expect(metrics).toMatch(
      /switchyard_model_loads_total\{model="hot",version="2",result="failed"\} 1/,
    );
  });
});
