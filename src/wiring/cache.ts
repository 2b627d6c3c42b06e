import type { Cache } from '../contracts/cache.js';
import type { ConfigSnapshot } from '../config/load.js';
import { MemoryCache } from '../state/cache-memory.js';
import type { WiringDeps } from './shared.js';

/**
 * The journeys' response cache (#4, #17): in process by default; with `cache.store: redis`,
 * shared by every replica that names the same Redis and prefix. It outlives reloads; a change of
 * `cache` takes a restart. Redis failures are misses: logged (at most every 10 s) and counted
 * (`switchyard_cache_store_errors_total`). The Redis client loads only then.
 */
export async function openResponseCache(initial: ConfigSnapshot, deps: WiringDeps): Promise<Cache> {
  const c = initial.config.cache;
  if (c.store === 'memory' || c.url === undefined) return new MemoryCache({ clock: deps.clock });
  const [{ RedisCache }, { openRedis }] = await Promise.all([
    import('../state/cache-redis.js'),
    import('../state/redis.js'),
  ]);
  const redis = openRedis({
    url: c.url,
    commandTimeoutMs: c.command_timeout_ms,
    name: 'response cache',
    logger: deps.logger,
  });
  let warned = -Infinity;
  return new RedisCache({
    redis,
    prefix: c.prefix,
    clock: deps.clock,
    onError: (op, err) => {
      const now = deps.clock.now();
      if (now - warned < 10_000) return;
      warned = now;
      deps.logger.warn(
        { op, err: err instanceof Error ? err.message : String(err) },
        'response cache: Redis unavailable; answering as a cache miss',
      );
    },
  });
}
