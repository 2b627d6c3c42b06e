import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/defaults.js';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import { startGateway } from '../../src/main.js';
import {
  mlpModel,
  pairModel,
  textCard,
  writeSynthetic,
} from '../../src/modelkit/synthetic-models.js';
import { createLogger } from '../../src/observability/logger.js';
import { shardHeader, writeShardFiles } from '../../src/retrieval/shard-files.js';
import { checkConfigFile } from '../../src/wiring/validate-config.js';
import { openaiModel, startTestGateway } from '../support/gateway.js';

/**
 * #14, scope 5 "One validation": `switchyard config check` and `serve` agree on every config of
 * a corpus of broken ones (test/integration/config-corpus/, one problem per file, its header
 * saying which path the problem is at and what today's `config check` said) and on valid ones:
 * both refuse, with the same problems, or both accept. A reload to an invalid config is refused
 * with those problems too, and the old config keeps serving.
 */

const CORPUS = join(import.meta.dirname, 'config-corpus');
const EXAMPLE = join(import.meta.dirname, '../../examples/superapp');
const exampleBuilt = ['intent', 'embed', 'rank'].every((m) =>
  existsSync(join(EXAMPLE, 'models', m, '1', 'model.onnx')),
);
if (!exampleBuilt)
  console.warn(
    'config-agreement: demo models not built (run `npm run build && node dist/cli/index.js models build-demo`); skipping the example config',
  );

interface CorpusFile {
  readonly file: string;
  readonly problem: string;
  /** The config path a refusal must name, or `valid`. */
  readonly expect: string;
  /** What `config check` said before #14. */
  readonly today:
    'check accepts, serve refuses' | 'check and serve accepted it' | 'path improvement';
}

const TODAY = ['check accepts, serve refuses', 'check and serve accepted it', 'path improvement'];

function readCorpus(): CorpusFile[] {
  return readdirSync(CORPUS)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const text = readFileSync(join(CORPUS, file), 'utf8');
      const header = (key: string): string | undefined =>
        new RegExp(`^# ${key}: (.+)$`, 'm').exec(text)?.[1]?.trim();
      const today = TODAY.find((t) => header('Today')?.startsWith(t) === true);
      const expected = header('Expect');
      if (expected === undefined) throw new Error(`${file}: the header has no "# Expect:" line`);
      if (expected !== 'valid' && today === undefined)
        throw new Error(
          `${file}: the header's "# Today:" line must start with one of ${TODAY.join(' | ')}`,
        );
      return {
        file,
        problem: header('Problem') ?? '',
        expect: expected,
        today: today as CorpusFile['today'],
      };
    });
}

const corpus = readCorpus();
const broken = corpus.filter((c) => c.expect !== 'valid');
const valid = corpus.filter((c) => c.expect === 'valid');

const silent = createLogger('silent');

type Served = { readonly ok: true } | { readonly ok: false; readonly problems: readonly string[] };

/** Starts the gateway in process (port 0, no watch) and closes it: did `serve` accept the config? */
async function serve(configPath: string): Promise<Served> {
  try {
    const gateway = await startGateway({ configPath, port: 0, watch: false, logger: silent });
    await gateway.close();
    return { ok: true };
  } catch (err) {
    // A refusal that is not a ConfigError has no config path: it shows here as its message.
    return { ok: false, problems: err instanceof ConfigError ? err.problems : [String(err)] };
  }
}

let dir: string;

/** The files the corpus configs name, made fresh: model stores, SQLite files, shards, keys. */
async function writeFixtures(root: string): Promise<void> {
  await writeFile(join(root, 'secret.txt'), 'config-corpus-secret\n');
  await writeFile(join(root, 'a-file'), 'a plain file\n');
  await writeFile(join(root, 'not-a-database.txt'), 'plain text, not SQLite\n');
  await mkdir(join(root, 'data'));
  await mkdir(join(root, 'stores/empty'), { recursive: true });
  const labels = ['order_status', 'refund', 'other'];
  await writeSynthetic(
    join(root, 'stores/classifier'),
    '1',
    mlpModel({ inputs: 16, hidden: [8], outputs: 3, seed: 1, head: 'softmax' }),
    textCard('classifier', 16, labels),
  );
  await writeSynthetic(
    join(root, 'stores/embedder'),
    '1',
    mlpModel({ inputs: 16, hidden: [8], outputs: 4, seed: 2, head: 'l2' }),
    textCard('embedding', 16),
  );
  await writeSynthetic(join(root, 'stores/pair'), '1', pairModel(1));
  await writeSynthetic(join(root, 'stores/pair'), '2', pairModel(2));
  await writeSynthetic(join(root, 'stores/ranker'), '1', pairModel(1), {
    task: 'ranker',
    output: 'dot',
  });
  // A 4-dimensional shard `s1` of collection `docs`, persisted as the vector host writes it.
  await writeShardFiles(
    join(root, 'vectors-4d/docs/s1'),
    shardHeader('s1', 4, DEFAULTS.vectors.metric, 0, []),
    new Float32Array(0),
    undefined,
  );
  // The same shard whose metadata file was cut short.
  await mkdir(join(root, 'vectors-corrupt/docs/s1/gen-1'), { recursive: true });
  await writeFile(join(root, 'vectors-corrupt/docs/s1/CURRENT'), 'gen-1');
  await writeFile(join(root, 'vectors-corrupt/docs/s1/gen-1/meta.json'), '{"format": 1, "dims');
  await mkdir(join(root, 'keys'));
  await writeFile(join(root, 'keys/garbage.pem'), 'this is not a key\n');
  const { publicKey } = generateKeyPairSync('ed25519');
  await writeFile(
    join(root, 'keys/release.pub.pem'),
    publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-config-corpus-'));
  await writeFixtures(dir);
  for (const c of corpus) await copyFile(join(CORPUS, c.file), join(dir, c.file));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('config check and serve agree on every config (#14)', () => {
  it('has at least 25 broken configs, at least 10 of them accepted by the config check of before #14', () => {
    expect(broken.length).toBeGreaterThanOrEqual(25);
    expect(
      broken.filter((c) => c.today === 'check accepts, serve refuses').length,
    ).toBeGreaterThanOrEqual(10);
    // One problem per file: no two files point at the same path with the same story.
    expect(new Set(broken.map((c) => c.problem)).size).toBe(broken.length);
  });

  for (const c of broken) {
    it(`refuses ${c.file} in config check and in serve, naming ${c.expect}`, async () => {
      const path = join(dir, c.file);
      // The corpus stays honest about what today's `config check` (loadConfigFile) makes of it.
      if (c.today === 'path improvement') {
        const err = await loadConfigFile(path).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConfigError);
      } else {
        await expect(loadConfigFile(path)).resolves.toBeDefined();
      }

      const checked = await checkConfigFile(path);
      expect(
        checked.problems.some((p) => p.startsWith(`${c.expect}: `)),
        `${c.file}: ${JSON.stringify(checked.problems)}`,
      ).toBe(true);

      const served = await serve(path);
      expect(served).toEqual({ ok: false, problems: checked.problems });
    });
  }

  for (const c of valid) {
    it(`accepts ${c.file} in config check and in serve`, async () => {
      const path = join(dir, c.file);
      expect((await checkConfigFile(path)).problems).toEqual([]);
      expect(await serve(path)).toEqual({ ok: true });
    });
  }

  it('makes `switchyard config check` refuse what serve refuses, naming the same paths, with exit 1', () => {
    const bin = join(import.meta.dirname, '../../dist/cli/index.js');
    // A sample across the kinds of problem (every file would make this test slow).
    for (const c of broken.filter((_, i) => i % 8 === 0)) {
      const r = spawnSync(process.execPath, [bin, 'config', 'check', join(dir, c.file)], {
        encoding: 'utf8',
      });
      expect(r.status, `${c.file}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toContain(`${c.expect}: `);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const ok = spawnSync(process.execPath, [bin, 'config', 'check', join(dir, valid[0]!.file)], {
      encoding: 'utf8',
    });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('valid');
  });

  it.skipIf(!exampleBuilt)(
    'accepts the example super app config in config check and in serve',
    async () => {
      const path = join(EXAMPLE, 'switchyard.yaml');
      const checked = await checkConfigFile(path);
      expect(checked.problems).toEqual([]);
      expect(Object.keys(checked.snapshot!.config.models)).toContain('intent');
      expect(await serve(path)).toEqual({ ok: true });
    },
  );
});

describe('a reload to an invalid config (#14)', () => {
  it('is refused with the problems config check reports, and the old config keeps serving', async () => {
    const gw = await startTestGateway({
      config: { models: { one: openaiModel('http://127.0.0.1:1') } },
    });
    try {
      const before = gw.gateway.runtime();
      // Problems that building the runtime alone never noticed: only the one validation does.
      gw.writeConfig({
        models: {
          one: openaiModel('http://127.0.0.1:1'),
          local: { backend: 'onnx', store: 'no-such-store' },
        },
        modes: {
          surge: {
            enter: { queue_delay_ms: 50 },
            exit: { queue_delay_ms: 10 },
            switches: { model_substitutes: { one: 'ghost' } },
          },
        },
      });
      const checked = await checkConfigFile(gw.configPath);
      expect(checked.problems).toEqual([
        expect.stringMatching(/^models\.local\.store: cannot read the model store .*: ENOENT$/),
        'modes.surge.switches.model_substitutes.one: unknown model "ghost"',
      ]);

      const outcome = await gw.gateway.reload('api');
      expect(outcome.result).toBe('rejected');
      const reason = outcome.result === 'rejected' ? outcome.reason : '';
      for (const p of checked.problems) expect(reason).toContain(p);

      expect(gw.gateway.runtime()).toBe(before);
      const res = await request(`${gw.url}/v1/models`, {
        headers: { authorization: `Bearer ${gw.key}` },
      });
      const body = (await res.body.json()) as { data: { id: string }[] };
      expect(body.data.map((m) => m.id)).toEqual(['one']);
    } finally {
      await gw.close();
    }
  });
});
