import type { Candidates, LocalIndexOptions } from './local-index.js';
import { LocalIndex } from './local-index.js';

/**
 * A brute-force shard: every search scans the (filtered) candidates exactly. The recall
 * reference for tests and probes, and the right choice for small hot shards (session memory),
 * where a scan beats an HNSW walk and every insert is free.
 */
export class ExactIndex extends LocalIndex {
  static async open(options: LocalIndexOptions): Promise<ExactIndex> {
    const index = new ExactIndex(options);
    await index.restore();
    return index;
  }

  protected annReady(): boolean {
    return false;
  }
  protected hasAnn(): boolean {
    return false;
  }
  protected annAdd(): void {}
  protected annRemove(): void {}
  protected annWritable(): void {}
  protected annSave(): void {}
  protected annSearch(): Candidates {
    return { slots: [], dists: [] };
  }
}
