import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { hashKey } from '../../src/core/api-key.js';
import { HELP_ARTICLES_FILE, writeHelpArticles } from '../../src/modelkit/demo-articles.js';
import { captureIo } from '../support/cli-io.js';
import { DOC_FILES, readDoc, ROOT } from './doc-files.js';
import { docExamples, matchOutput, pointAt, type DocStep } from './doc-examples.js';
import { EXAMPLE_CONFIG, EXAMPLE_DIR, startExampleGateway } from './example-gateway.js';

/**
 * The docs-examples test (#14): every example in README.md and docs/*.md (the format is in
 * test/docs/doc-examples.ts and docs/README.md) runs against `npm start`'s example config, with
 * the simulated upstream in process, and must print what the docs show. Each file starts from a
 * fresh gateway, as a reader starts from a fresh `npm start`; its examples run in order.
 */

const run = promisify(execFile);
const docs = DOC_FILES.map((file) => ({ file, ...docExamples(readDoc(file)) }));
function envOf(steps: readonly DocStep[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of steps) if (s.kind === 'env') Object.assign(env, s.vars);
  return env;
}
/** The README's exports (the demo keys) hold on every page. */
const README_ENV = envOf(docs.find((d) => d.file === 'README.md')!.steps);

// The demo models are built by `npm install` / `npm start` (switchyard models build-demo).
const MODELS = join(EXAMPLE_DIR, 'models');
const built = ['intent/1', 'intent/2', 'embed/1', 'rank/1'].every((v) =>
  existsSync(join(MODELS, v, 'model.onnx')),
);
if (!built) {
  const why =
    'docs examples: the demo models are not built (run `npm run build && node dist/cli/index.js models build-demo`)';
  if (process.env['CI'] === 'true') throw new Error(why);
  console.warn(`${why}; skipping`);
}

describe('the documented examples', () => {
  it('show the output of every curl call to the example gateway, so each one is checked', () => {
    const unchecked = docs.flatMap((d) =>
      d.unchecked.map((u) => `${d.file}:${u.line}: ${u.command.split('\n')[0]}`),
    );
    expect(unchecked).toEqual([]);
    expect(docs.flatMap((d) => d.steps).filter((s) => s.kind === 'example').length).toBeGreaterThan(
      20,
    );
  });

  it('use the public demo keys of the example config, for the tenants the docs name', () => {
    const config = parse(readFileSync(EXAMPLE_CONFIG, 'utf8')) as {
      tenants: Record<string, { keys: { id: string; hash: string; admin?: boolean }[] }>;
    };
    const secret = readFileSync(join(EXAMPLE_DIR, 'demo-secret.txt'), 'utf8').trim();
    const keyOf = (hash: string) =>
      Object.entries(config.tenants).flatMap(([tenant, t]) =>
        t.keys.filter((k) => k.hash === hash).map((k) => ({ tenant, admin: k.admin === true })),
      )[0];
    expect(keyOf(hashKey(README_ENV['SY_KEY']!, secret))).toEqual({
      tenant: 'superapp',
      admin: false,
    });
    expect(keyOf(hashKey(README_ENV['SY_ADMIN_KEY']!, secret))).toEqual({
      tenant: 'superapp',
      admin: true,
    });
    expect(keyOf(hashKey(README_ENV['SY_PARTNER_KEY']!, secret))).toEqual({
      tenant: 'partner',
      admin: false,
    });
    // The config's comments name the same keys.
    const text = readFileSync(EXAMPLE_CONFIG, 'utf8');
    for (const k of ['SY_KEY', 'SY_ADMIN_KEY', 'SY_PARTNER_KEY'])
      expect(text).toContain(README_ENV[k]);
  });
});

describe.skipIf(!built)('the documented examples, run against the example config', () => {
  beforeAll(async () => {
    // `npm install` writes the help articles beside the models; a checkout built before they
    // existed gets them here, exactly as `models build-demo` would write them.
    if (!existsSync(join(MODELS, HELP_ARTICLES_FILE))) await writeHelpArticles(MODELS);
  });

  it('come with their demo data: build-demo adds the help articles beside models already built', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'));
    try {
      for (const store of ['intent', 'embed', 'rank'])
        symlinkSync(join(MODELS, store), join(dir, store), 'dir');
      const io = captureIo();
      expect(await runCli(['models', 'build-demo', '--out', dir], io)).toBe(0);
      expect(io.stderr()).not.toMatch(/training/);
      expect(io.stderr()).toMatch(/embedding the demo help articles/);
      const body = JSON.parse(readFileSync(join(dir, HELP_ARTICLES_FILE), 'utf8')) as {
        records: unknown[];
      };
      expect(body.records).toHaveLength(40);
      const again = captureIo();
      expect(await runCli(['models', 'build-demo', '--out', dir], again)).toBe(0);
      expect(again.stderr()).toMatch(/already/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('start in a fresh directory, each SQLite store creating the directory of its file', async () => {
    // Each store in a directory of its own, so none relies on another having made `data/`.
    const apart = (text: string): string =>
      text
        .replace('data/state.db', 'state/state.db')
        .replace('data/features.db', 'features/features.db')
        .replace('data/consent.db', 'consent/consent.db');
    const gw = await startExampleGateway(undefined, apart);
    try {
      for (const f of ['state/state.db', 'features/features.db', 'consent/consent.db'])
        expect(existsSync(join(gw.dir, f)), f).toBe(true);
    } finally {
      await gw.close();
    }
  }, 60_000);

  for (const doc of docs.filter((d) => d.steps.some((s) => s.kind === 'example'))) {
    describe(doc.file, () => {
      let gw: Awaited<ReturnType<typeof startExampleGateway>>;
      beforeAll(async () => {
        gw = await startExampleGateway();
        await warmUp(gw.url);
      }, 60_000);
      afterAll(() => gw?.close());

      it('prints what the docs show, example by example', async () => {
        const env: Record<string, string> = {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: process.env['HOME'] ?? '/tmp',
          LANG: 'C.UTF-8',
          // Without SHLVL, bash here spends ~3 s starting up (as a first-level shell).
          SHLVL: '1',
          ...README_ENV,
        };
        const failures: string[] = [];
        for (const step of doc.steps) {
          if (step.kind === 'env') {
            Object.assign(env, step.vars);
            continue;
          }
          let out: string;
          try {
            const r = await run('bash', ['-o', 'pipefail', '-c', pointAt(step.command, gw.url)], {
              cwd: ROOT,
              env,
              timeout: 30_000,
              maxBuffer: 8 * 1024 * 1024,
            });
            out = r.stdout;
          } catch (err) {
            const e = err as { code?: number; stderr?: string; stdout?: string };
            failures.push(
              `${doc.file}:${step.line}: the command failed (exit ${e.code}): ${e.stderr ?? ''}${e.stdout ?? ''}`,
            );
            continue;
          }
          const problems = matchOutput(step.output, step.expected, out);
          if (problems.length > 0)
            failures.push(
              `${doc.file}:${step.line}: ${step.command.split('\n')[0]}\n  ${problems.join('\n  ')}\n  printed:\n${out}`,
            );
        }
        expect(failures).toEqual([]);
      }, 180_000);
    });
  }
});

/**
 * The first inference of an in-process model is slow (sessions, JIT); the journeys' downgrade
 * rules read the time left, so the examples run warm. Versions are pinned: no experiment sees
 * these calls, and nothing is cached.
 */
async function warmUp(url: string): Promise<void> {
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${README_ENV['SY_KEY']}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(body),
    }).then((r) => r.arrayBuffer());
  const zeros = {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 512], data: Array(512).fill(0) }],
  };
  await post('/v1/embeddings', { model: 'embed', input: 'warm up' });
  await post('/v2/models/intent/versions/1/infer', zeros);
  await post('/v2/models/intent/versions/2/infer', zeros);
}
