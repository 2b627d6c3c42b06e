import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { launchFlags } from '../../bench/lib/launch.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { baseConfig, openaiModel, TEST_SECRET } from '../support/gateway.js';
import { startProcess, type TestProcess } from '../support/gateway-process.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/** A line of a batch's output or error file. */
interface LineOut {
  custom_id: string;
  response: { status_code: number; body: Record<string, unknown> } | null;
  error: { code: string } | null;
}

const ROOT = join(import.meta.dirname, '../..');
const LINES = 60;
/** A line's class deadline: a line started before the kill is judged interrupted this long after. */
const BATCH_DEADLINE_MS = 1_500;

/**
 * #16 item 3, faults table: `kill -9` of the gateway in the middle of a batch. After a restart on
 * the same state file the batch completes with every line accounted for exactly once: no line is
 * lost, and none reaches the upstream twice. Lines whose call was in flight at the kill are the
 * at-most-once case: they end in the error file as `interrupted` and are never called again.
 */
describe('a batch survives kill -9 of the gateway (#16)', () => {
  let up: TestUpstream;
  let dir: string;
  let configPath: string;
  const key = generateKey('sk');
  const hits = new Map<string, number>();
  const running: TestProcess[] = [];

  const start = async (): Promise<TestProcess> => {
    const p = await startProcess({
      nodeArgs: [
        ...launchFlags(ROOT),
        join(ROOT, 'dist/cli/index.js'),
        'serve',
        '--config',
        configPath,
        '--no-watch',
      ],
      ready: /listening on (http:\/\/\S+)/,
    });
    running.push(p);
    return p;
  };

  beforeAll(async () => {
    up = await startUpstream(async (req, res, call) => {
      const body = JSON.parse(call.body) as { messages: { content: string }[] };
      const id = body.messages[0]!.content;
      hits.set(id, (hits.get(id) ?? 0) + 1);
      // Slow enough that lines are in flight when the gateway is killed.
      await new Promise((r) => setTimeout(r, 25));
      await json(200, chatCompletion(`done ${id}`))(req, res, call);
    });
    dir = mkdtempSync(join(tmpdir(), 'switchyard-batch-kill-'));
    writeFileSync(join(dir, 'secret.txt'), TEST_SECRET);
    configPath = join(dir, 'switchyard.yaml');
    writeFileSync(
      configPath,
      stringify({
        ...baseConfig(hashKey(key, TEST_SECRET)),
        log: { level: 'warn' },
        models: { chat: openaiModel(up.url, { cost: { in_per_1k: 1, out_per_1k: 1 } }) },
        classes: {
          interactive: { priority: 0 },
          background: { priority: 3 },
          batch: { priority: 4, deadline_ms: BATCH_DEADLINE_MS, queue_timeout_ms: 20 },
        },
        batches: { poll_ms: 20, concurrency: 4 },
      }),
    );
  });

  afterAll(async () => {
    for (const p of running) await p.stop();
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('completes after a restart with every line done once: none lost, none called twice', async () => {
    const first = await start();
    let client = new OpenAI({ apiKey: key, baseURL: `${first.url}/v1`, maxRetries: 0 });
    const ids = Array.from({ length: LINES }, (_, i) => `line-${i}`);
    const input = ids
      .map((id) =>
        JSON.stringify({
          custom_id: id,
          method: 'POST',
          url: '/v1/chat/completions',
          body: { model: 'chat', messages: [{ role: 'user', content: id }] },
        }),
      )
      .join('\n');
    const file = await client.files.create({
      file: await toFile(Buffer.from(input), 'in.jsonl'),
      purpose: 'batch',
    });
    const batch = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    // Mid-batch: some lines answered, most not.
    for (let i = 0; i < 2_000 && up.calls.length < LINES / 4; i++)
      await new Promise((r) => setTimeout(r, 2));
    first.signal('SIGKILL');
    expect(await first.exited()).toBe('SIGKILL');
    const calledBeforeKill = up.calls.length;
    expect(calledBeforeKill).toBeGreaterThan(0);
    expect(calledBeforeKill).toBeLessThan(LINES);

    const second = await start();
    client = new OpenAI({ apiKey: key, baseURL: `${second.url}/v1`, maxRetries: 0 });
    let done = await client.batches.retrieve(batch.id);
    for (let i = 0; i < 600 && done.status !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      done = await client.batches.retrieve(batch.id);
    }
    expect(done.status).toBe('completed');

    const read = async (id: string | null | undefined): Promise<LineOut[]> =>
      id === null || id === undefined
        ? []
        : (await (await client.files.content(id)).text())
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as LineOut);
    const out = await read(done.output_file_id);
    const errs = await read(done.error_file_id);
    // Every line is accounted for exactly once, in one of the two files.
    const seen = [...out, ...errs].map((l) => l.custom_id).sort();
    expect(seen).toEqual([...ids].sort());
    // None reached the upstream twice; every answered line reached it exactly once.
    expect([...hits.values()].every((n) => n === 1)).toBe(true);
    for (const l of out) {
      expect(hits.get(l.custom_id)).toBe(1);
      expect(l.response?.body).toMatchObject({
        choices: [{ message: { content: `done ${l.custom_id}` } }],
      });
    }
    // The only error lines are the calls in flight at the kill (at most `concurrency` of them).
    for (const l of errs) expect(l.error?.code).toBe('interrupted');
    expect(errs.length).toBeLessThanOrEqual(4);
    expect(done.request_counts).toEqual({
      total: LINES,
      completed: out.length,
      failed: errs.length,
    });
    // Lines after the restart were run by the new process (not all were done before the kill).
    expect(up.calls.length).toBeGreaterThan(calledBeforeKill);
  });
});
