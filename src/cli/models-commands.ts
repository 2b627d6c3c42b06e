import { readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelCard } from '../backends/onnx/model-card.js';
import { positiveNumber, wholeNumber } from './args.js';
import { CliUserError, table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';
import { createProgress } from './progress.js';

/**
 * `switchyard models build-demo` and `switchyard models quantize` (issue #3). The modelkit (and
 * with it ONNX Runtime) is imported only when there is work to do, so `build-demo` on an
 * already-built store — what `npm start` runs every time — answers in well under a second.
 */

/** The seed of the shipped demo models: the same seed writes the same bytes. */
export const DEMO_SEED = 42;
const DEMO_STORES = ['intent', 'embed', 'rank'] as const;
/** The int8 variant of the demo intent classifier, the cheap-tier version. */
const INT8_VERSION = '2';

/** `examples/superapp/models` of this package, wherever the command runs from. */
export function defaultDemoDir(): string {
  // src/cli/ (tsx) and dist/cli/ (compiled) both sit two levels below the package root.
  return fileURLToPath(new URL('../../examples/superapp/models/', import.meta.url));
}

const isFile = (p: string): Promise<boolean> =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

async function readCard(dir: string): Promise<ModelCard | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as ModelCard;
  } catch {
    return undefined;
  }
}

/** What of the demo set is already in `out`: version 1 of each store, intent/2, the articles. */
async function demoState(
  out: string,
): Promise<{ floats: boolean; int8: boolean; articles: boolean }> {
  const present = await Promise.all(
    DEMO_STORES.map((s) => isFile(join(out, s, '1', 'model.onnx'))),
  );
  return {
    floats: present.every(Boolean),
    int8: await isFile(join(out, 'intent', INT8_VERSION, 'model.onnx')),
    articles: await isFile(join(out, 'help-articles.json')),
  };
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} kB`;
const fixed = (v: number | undefined, digits = 4): string =>
  v === undefined ? '-' : v.toFixed(digits);

interface BuildDemoOptions {
  readonly out?: string;
  readonly force?: boolean;
  readonly seed: number;
  readonly json?: boolean;
}

/** `switchyard models build-demo`. */
async function buildDemo(o: BuildDemoOptions, io: CliIo): Promise<void> {
  const out = resolve(o.out ?? defaultDemoDir());
  const seed = o.seed;
  const force = o.force === true;
  const state = await demoState(out);
  if (!force && state.floats && state.int8 && state.articles) {
    if (o.json === true) io.out(`${JSON.stringify({ outDir: out, built: false })}\n`);
    else io.err(`switchyard: demo models already in ${out} (--force rebuilds them)\n`);
    return;
  }
  const { buildDemoModels } = await import('../modelkit/demo-models.js');
  const { writeQuantizedVariant } = await import('../modelkit/quantize.js');
  let report;
  if (force || !state.floats) {
    io.err(`switchyard: training the demo models (seed ${seed}) into ${out}\n`);
    const progress = createProgress(io);
    try {
      report = await buildDemoModels(out, { seed, onProgress: progress.stages('demo models') });
    } finally {
      progress.stop();
    }
  }
  const intentStore = join(out, 'intent');
  const variantDir = join(intentStore, INT8_VERSION);
  if (force || !state.floats || !state.int8) {
    const existing = await readCard(variantDir);
    const ours = existing?.variant?.precision === 'int8' && existing.variant.from_version === '1';
    if (existing !== undefined && !ours && (await isFile(join(variantDir, 'model.onnx')))) {
      io.err(
        `switchyard: ${variantDir} holds a model that is not the int8 variant of version 1; left alone\n`,
      );
    } else {
      // Rebuilt (or half-written) float weights make a stale variant; it is ours to replace.
      await rm(variantDir, { recursive: true, force: true });
      io.err(`switchyard: quantizing intent/1 → intent/${INT8_VERSION} (int8)\n`);
      await writeQuantizedVariant(intentStore, '1', INT8_VERSION);
    }
  }
  if (force || !state.floats || !state.articles) {
    // Embedded by this build's `embed` model, so retrieval in the example matches its queries.
    const { writeHelpArticles } = await import('../modelkit/demo-articles.js');
    io.err(`switchyard: embedding the demo help articles into ${await writeHelpArticles(out)}\n`);
  }
  const variant = await readCard(variantDir);
  const rows: string[][] = [['model', 'version', 'task', 'held-out', 'size', 'parameters']];
  for (const store of DEMO_STORES) {
    const card = await readCard(join(out, store, '1'));
    const m = report?.models[store];
    const size = m?.sizeBytes ?? (await stat(join(out, store, '1', 'model.onnx'))).size;
    rows.push([
      store,
      '1',
      card?.task ?? '?',
      primaryMetric(card),
      kb(size),
      String(m?.parameters ?? '-'),
    ]);
  }
  if (variant?.variant !== undefined) {
    const size = (await stat(join(variantDir, 'model.onnx'))).size;
    rows.push(['intent', INT8_VERSION, 'classifier int8', primaryMetric(variant), kb(size), '-']);
  }
  if (o.json === true) {
    io.out(`${JSON.stringify({ outDir: out, built: true, seed, report })}\n`);
  } else {
    io.out(`${table(rows)}\n`);
    if (report !== undefined) io.out(`built in ${(report.totalMs / 1000).toFixed(1)} s\n`);
  }
}

/** The headline held-out metric of a card: accuracy, recall@1 or AUC. */
function primaryMetric(card: ModelCard | undefined): string {
  const m = card?.metrics ?? {};
  for (const name of ['accuracy', 'recall_at_1', 'auc'])
    if (m[name] !== undefined) return `${name} ${fixed(m[name])}`;
  return '-';
}

interface QuantizeOptions {
  readonly store: string;
  readonly from: string;
  readonly to: string;
  readonly minMs: number;
  readonly json?: boolean;
}

/** `switchyard models quantize`. */
async function quantize(o: QuantizeOptions, io: CliIo): Promise<void> {
  const { store, from, to, minMs } = o;
  const dir = resolve(store);
  if (!(await isFile(join(dir, from, 'model.onnx'))))
    throw new CliUserError(`${join(dir, from)} has no model.onnx`);
  if (!(await isFile(join(dir, from, 'heldout.json'))))
    throw new CliUserError(
      `${join(dir, from)} has no heldout.json; quantize needs the held-out split to measure the variant`,
    );
  const { writeQuantizedVariant, compareVariants } = await import('../modelkit/quantize.js');
  const { readVersion } = await import('../modelkit/store-io.js');
  let written;
  try {
    written = await writeQuantizedVariant(dir, from, to);
  } catch (err) {
    throw new CliUserError(err instanceof Error ? err.message : String(err));
  }
  const source = await readVersion(dir, from);
  const cmp = await compareVariants(
    join(dir, from, 'model.onnx'),
    written.modelPath,
    source.heldout,
    source.card,
    { minMs },
  );
  if (o.json === true) {
    io.out(`${JSON.stringify({ store: dir, from, to, ...cmp })}\n`);
    return;
  }
  const name = cmp.float.metricName;
  const ratio = (a: number, b: number): string => `${(b / a).toFixed(2)}×`;
  const rows = [
    ['', `float (${from})`, `int8 (${to})`, 'int8 vs float'],
    [
      `held-out ${name}`,
      fixed(cmp.float.metric),
      fixed(cmp.int8.metric),
      `${cmp.delta >= 0 ? '+' : ''}${fixed(cmp.delta)}`,
    ],
    [
      'size',
      kb(cmp.float.sizeBytes),
      kb(cmp.int8.sizeBytes),
      ratio(cmp.float.sizeBytes, cmp.int8.sizeBytes),
    ],
    [
      'rows/s (batch 32, 1 thread)',
      Math.round(cmp.float.throughputRowsPerS).toLocaleString('en'),
      Math.round(cmp.int8.throughputRowsPerS).toLocaleString('en'),
      ratio(cmp.float.throughputRowsPerS, cmp.int8.throughputRowsPerS),
    ],
  ];
  const agreement =
    cmp.top1Agreement !== undefined
      ? `top-1 agreement with float: ${(cmp.top1Agreement * 100).toFixed(2)}%`
      : cmp.meanCosine !== undefined
        ? `mean cosine with float: ${cmp.meanCosine.toFixed(5)}`
        : `largest score difference from float: ${fixed(cmp.maxScoreDiff, 5)}`;
  io.out(
    `wrote ${written.dir} (held-out rows: ${source.heldout.labels?.length ?? source.heldout.targets?.length ?? '?'})\n\n` +
      `${table(rows)}\n\n${agreement}\n`,
  );
}

/** `models build-demo` and `models quantize`. */
export function registerModelsCommands(kit: CommandKit): void {
  const models = kit.group('models');
  models
    .command('build-demo')
    .description(
      'Train the demo intent, embedding and ranking models from generated data (no downloads) and ' +
        'write them, plus the int8 variant intent/2, as ONNX model stores under DIR. Does nothing ' +
        'when they are already there, unless --force.',
    )
    .option('--out <dir>', 'where the model stores go (default: examples/superapp/models)')
    .option('--force', 'rebuild even when the models are there')
    .option(
      '--seed <n>',
      'the training seed (the same seed writes the same bytes)',
      wholeNumber(0, 0xffffffff),
      DEMO_SEED,
    )
    .option('--json', 'print a JSON report instead of a table')
    .action(kit.action((o: BuildDemoOptions) => buildDemo(o, kit.io)));
  models
    .command('quantize')
    .description(
      'Write the int8 variant V2 of version V of a model store and print held-out accuracy, size ' +
        'and throughput of both side by side.',
    )
    .requiredOption('--store <dir>', 'the ONNX model store')
    .requiredOption('--from <version>', 'the float version to quantize')
    .requiredOption('--to <version>', 'the version the int8 variant is written as')
    .option('--min-ms <ms>', 'measure throughput for at least this long', positiveNumber(), 500)
    .option('--json', 'print a JSON report instead of a table')
    .action(kit.action((o: QuantizeOptions) => quantize(o, kit.io)));
}
