import { readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ModelCard } from '../backends/onnx/model-card.js';

/**
 * `switchyard models build-demo` and `switchyard models quantize` (issue #3). The modelkit (and
 * with it ONNX Runtime) is imported only when there is work to do, so `build-demo` on an
 * already-built store — what `npm start` runs every time — answers in well under a second.
 */

export const MODELS_USAGE = `  switchyard models build-demo [--out DIR] [--force] [--seed N] [--json]
  switchyard models quantize --store DIR --from V --to V2 [--min-ms N] [--json]
`;

export const MODELS_HELP = `models build-demo  Train the demo intent, embedding and ranking models from generated
                   data (no downloads) and write them, plus the int8 variant intent/2,
                   as ONNX model stores under DIR (default examples/superapp/models),
                   and the demo help articles embedded by them (help-articles.json).
                   Does nothing when they are already there, unless --force.
models quantize    Write the int8 variant V2 of version V of a model store and print
                   held-out accuracy, size and throughput of both side by side.
`;

/** The seed of the shipped demo models: the same seed writes the same bytes. */
export const DEMO_SEED = 42;
const DEMO_STORES = ['intent', 'embed', 'rank'] as const;
/** The int8 variant of the demo intent classifier, the cheap-tier version. */
const INT8_VERSION = '2';

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Whether progress may redraw one line (a terminal). */
  readonly tty: boolean;
}

export const processIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stderr.isTTY,
};

/** A usage or input problem: printed without a stack, exit code 2. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

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

/** Rows as aligned columns: the first left-aligned, the rest right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function progressPrinter(io: CliIo): (stage: string, percent: number) => void {
  let lastStage = '';
  return (stage, percent) => {
    const line = `[${String(percent).padStart(3)}%] ${stage}`;
    if (io.tty) io.err(`\r${line.padEnd(48)}${stage === 'done' ? '\n' : ''}`);
    else if (stage !== lastStage) io.err(`${line}\n`);
    lastStage = stage;
  };
}

/** `switchyard models build-demo`. Resolves with the exit code. */
export async function buildDemoCommand(args: readonly string[], io = processIo): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      out: { type: 'string' },
      force: { type: 'boolean' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const out = resolve(values.out ?? defaultDemoDir());
  const seed = values.seed === undefined ? DEMO_SEED : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new CliUsageError('--seed must be a whole number (0 to 4294967295)');
  const force = values.force === true;
  const state = await demoState(out);
  if (!force && state.floats && state.int8 && state.articles) {
    if (values.json === true) io.out(`${JSON.stringify({ outDir: out, built: false })}\n`);
    else io.err(`switchyard: demo models already in ${out} (--force rebuilds them)\n`);
    return 0;
  }
  const { buildDemoModels } = await import('../modelkit/demo-models.js');
  const { writeQuantizedVariant } = await import('../modelkit/quantize.js');
  let report;
  if (force || !state.floats) {
    io.err(`switchyard: training the demo models (seed ${seed}) into ${out}\n`);
    report = await buildDemoModels(out, { seed, onProgress: progressPrinter(io) });
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
  if (values.json === true) {
    io.out(`${JSON.stringify({ outDir: out, built: true, seed, report })}\n`);
  } else {
    io.out(`${table(rows)}\n`);
    if (report !== undefined) io.out(`built in ${(report.totalMs / 1000).toFixed(1)} s\n`);
  }
  return 0;
}

/** The headline held-out metric of a card: accuracy, recall@1 or AUC. */
function primaryMetric(card: ModelCard | undefined): string {
  const m = card?.metrics ?? {};
  for (const name of ['accuracy', 'recall_at_1', 'auc'])
    if (m[name] !== undefined) return `${name} ${fixed(m[name])}`;
  return '-';
}

/** `switchyard models quantize`. Resolves with the exit code. */
export async function quantizeCommand(args: readonly string[], io = processIo): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      store: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'min-ms': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const { store, from, to } = values;
  if (store === undefined || from === undefined || to === undefined)
    throw new CliUsageError('quantize needs --store DIR --from V --to V2');
  const minMs = Number(values['min-ms'] ?? 500);
  if (!Number.isFinite(minMs) || minMs <= 0)
    throw new CliUsageError('--min-ms must be a positive number');
  const dir = resolve(store);
  if (!(await isFile(join(dir, from, 'model.onnx'))))
    throw new CliUsageError(`${join(dir, from)} has no model.onnx`);
  if (!(await isFile(join(dir, from, 'heldout.json'))))
    throw new CliUsageError(
      `${join(dir, from)} has no heldout.json; quantize needs the held-out split to measure the variant`,
    );
  const { writeQuantizedVariant, compareVariants } = await import('../modelkit/quantize.js');
  const { readVersion } = await import('../modelkit/store-io.js');
  let written;
  try {
    written = await writeQuantizedVariant(dir, from, to);
  } catch (err) {
    throw new CliUsageError(err instanceof Error ? err.message : String(err));
  }
  const source = await readVersion(dir, from);
  const cmp = await compareVariants(
    join(dir, from, 'model.onnx'),
    written.modelPath,
    source.heldout,
    source.card,
    { minMs },
  );
  if (values.json === true) {
    io.out(`${JSON.stringify({ store: dir, from, to, ...cmp })}\n`);
    return 0;
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
  return 0;
}

/** Runs a command with the process's streams; usage problems print `usage` and exit 2. */
export async function runCli(
  command: (args: readonly string[], io: CliIo) => Promise<number>,
  args: readonly string[],
  usage = MODELS_USAGE,
): Promise<void> {
  try {
    process.exitCode = await command(args, processIo);
  } catch (err) {
    // parseArgs reports unknown flags as TypeErrors with a code; both are usage problems.
    const isUsage =
      err instanceof CliUsageError ||
      (err instanceof TypeError &&
        String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS'));
    if (!isUsage) throw err;
    process.stderr.write(`switchyard: ${err.message}\n\nUsage:\n${usage}`);
    process.exitCode = 2;
  }
}

/** CLI entry points (src/cli/index.ts dispatches to these). */
export const runBuildDemo = (args: readonly string[]): Promise<void> =>
  runCli(buildDemoCommand, args);
export const runQuantize = (args: readonly string[]): Promise<void> =>
  runCli(quantizeCommand, args);
