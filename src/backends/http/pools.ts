import { Pool } from '../../core/undici.js';

export interface PoolOptions {
  readonly connections: number;
  readonly keepAliveMs: number;
}

interface Entry {
  readonly pool: Pool;
  refs: number;
}

/**
 * undici connection pools shared by origin and options, so models on one upstream share
 * connections and a config reload that keeps an upstream keeps its warm connections. Pools are
 * reference counted; the last release closes the pool gracefully (in-flight requests finish).
 */
export class PoolRegistry {
  private readonly pools = new Map<string, Entry>();

  acquire(origin: string, options: PoolOptions): Pool {
    const key = `${origin}|${options.connections}|${options.keepAliveMs}`;
    let entry = this.pools.get(key);
    if (entry === undefined) {
      entry = {
        pool: new Pool(origin, {
          connections: options.connections,
          keepAliveTimeout: options.keepAliveMs,
          keepAliveMaxTimeout: options.keepAliveMs,
          pipelining: 1,
        }),
        refs: 0,
      };
      this.pools.set(key, entry);
    }
    entry.refs++;
    return entry.pool;
  }

  async release(pool: Pool): Promise<void> {
    for (const [key, entry] of this.pools) {
      if (entry.pool !== pool) continue;
      entry.refs--;
      if (entry.refs <= 0) {
        this.pools.delete(key);
        await entry.pool.close();
      }
      return;
    }
  }

  async closeAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((e) => e.pool.close()));
  }

  get size(): number {
    return this.pools.size;
  }
}
