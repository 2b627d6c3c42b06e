import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HELP_ARTICLES_FILE, helpArticles, writeHelpArticles } from './demo-articles.js';

const MODELS = join(import.meta.dirname, '../../examples/superapp/models');
const built = existsSync(join(MODELS, 'embed', '1', 'model.onnx'));
if (!built) {
  const why =
    'demo-articles: the demo models are not built (npm run build && node dist/cli/index.js models build-demo)';
  if (process.env['CI'] === 'true') throw new Error(why);
  console.warn(`${why}; skipping`);
}

interface Upsert {
  records: {
    id: string;
    vector: number[];
    meta: { label: string; entityType: string; attrs: Record<string, string> };
  }[];
}

const cosine = (a: readonly number[], b: readonly number[]): number =>
  a.reduce((s, x, i) => s + x * b[i]!, 0);

describe('the demo help articles', () => {
  it('are one article per product and aspect the demo embedding model learned, with unique ids', () => {
    const articles = helpArticles();
    expect(articles).toHaveLength(40);
    expect(new Set(articles.map((a) => a.id)).size).toBe(40);
    expect(articles[4]).toEqual({
      id: 'help-laptop-warranty',
      title: 'Laptop: warranty and repairs',
      question: 'how long is the warranty on the laptop',
      product: 'laptop',
      aspect: 'warranty',
    });
  });

  describe.skipIf(!built)('embedded by the demo model', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-articles-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('are written as an upsert body of 40 public documents with unit vectors, distinct topics apart', async () => {
      symlinkSync(join(MODELS, 'embed'), join(dir, 'embed'), 'dir');
      expect(await writeHelpArticles(dir)).toBe(join(dir, HELP_ARTICLES_FILE));
      const body = JSON.parse(readFileSync(join(dir, HELP_ARTICLES_FILE), 'utf8')) as Upsert;
      expect(body.records).toHaveLength(40);
      for (const r of body.records) {
        expect(r.vector).toHaveLength(64);
        expect(Math.abs(cosine(r.vector, r.vector) - 1)).toBeLessThan(1e-4);
        expect(r.meta).toMatchObject({ label: 'public', entityType: 'document' });
      }
      // Distinct topics land apart: every article is its own nearest, by a margin.
      for (const r of body.records) {
        const others = body.records
          .filter((o) => o.id !== r.id)
          .map((o) => cosine(r.vector, o.vector));
        expect(Math.max(...others)).toBeLessThan(0.9);
      }
    });
  });
});
