import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ModelCard } from '../backends/onnx/model-card.js';
import { featurize } from '../backends/onnx/text-features.js';
import { ASPECTS, PRODUCTS } from './demo-data.js';
import { openSession, runRows } from './ort-session.js';

/**
 * The demo shop's help center: one article per (product, aspect) topic the demo `embed` model
 * was trained on, each embedded by that model. Written as the body of
 * `POST /v1/vectors/help/upsert`, so the example's `help` collection (and the `retrieve` stage
 * of its `shopping-assistant` journey) can be filled with one request. Generated, never
 * downloaded: the vectors come from the model built on this machine.
 */
export const HELP_ARTICLES_FILE = 'help-articles.json';

export interface HelpArticle {
  readonly id: string;
  readonly title: string;
  /** The question the article answers; it is what gets embedded. */
  readonly question: string;
  readonly product: string;
  readonly aspect: string;
}

const TITLES: Readonly<Record<string, string>> = {
  warranty: 'warranty and repairs',
  cleaning: 'cleaning and care',
  size: 'sizes and dimensions',
  discount: 'discounts and sales',
};

/** Every article, in a fixed order: products as listed, then aspects as listed. */
export function helpArticles(): HelpArticle[] {
  const out: HelpArticle[] = [];
  for (const [product, names] of Object.entries(PRODUCTS)) {
    const name = names[0]!;
    for (const [aspect, templates] of Object.entries(ASPECTS)) {
      out.push({
        id: `help-${product}-${aspect}`,
        title: `${name[0]!.toUpperCase()}${name.slice(1)}: ${TITLES[aspect] ?? aspect}`,
        question: templates[0]!.replace('{p}', name),
        product,
        aspect,
      });
    }
  }
  return out;
}

/** Six decimals keep the file small; cosine distances move by less than 1e-5. */
const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

/**
 * Embeds every article with the `embed` store's version 1 under `modelsDir` and writes the
 * upsert body to `<modelsDir>/help-articles.json` (atomically). Returns the file's path.
 */
export async function writeHelpArticles(modelsDir: string): Promise<string> {
  const version = join(modelsDir, 'embed', '1');
  const card = JSON.parse(await readFile(join(version, 'model.json'), 'utf8')) as ModelCard;
  if (card.task !== 'embedding' || card.text === undefined || card.output === undefined)
    throw new Error(`${version} is not a text embedding model`);
  const articles = helpArticles();
  const session = await openSession(join(version, 'model.onnx'));
  let vectors;
  try {
    const data = featurize(
      articles.map((a) => a.question),
      card.text,
    );
    vectors = await runRows(
      session,
      { [card.text.input]: { data, rows: articles.length, cols: card.text.dims } },
      card.output,
    );
  } finally {
    await session.release();
  }
  const records = articles.map((a, i) => ({
    id: a.id,
    vector: Array.from(vectors.data.subarray(i * vectors.cols, (i + 1) * vectors.cols), round6),
    meta: {
      label: 'public',
      entityType: 'document',
      attrs: { title: a.title, question: a.question, product: a.product, aspect: a.aspect },
    },
  }));
  const file = join(modelsDir, HELP_ARTICLES_FILE);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, `${JSON.stringify({ records })}\n`);
  await rename(`${file}.tmp`, file);
  return file;
}
