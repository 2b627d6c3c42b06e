import { haveRedisServer, pingRedis } from '../../bench/lib/redis-server.js';

// The private redis-server lives beside the other process helpers in bench/lib/ (the fault
// benches start one too); tests take it from here.
export {
  freePort,
  haveRedisServer,
  pingRedis,
  startRedisServer,
  type PrivateRedis,
} from '../../bench/lib/redis-server.js';

/**
 * For a test file that needs redis-server: true when it can run. Under `CI=true` a missing
 * redis-server is an error, never a skip; otherwise the skip is printed with its reason.
 */
export function redisServerOrSkip(what: string): boolean {
  if (haveRedisServer) return true;
  if (process.env['CI'] === 'true')
    throw new Error(`${what}: redis-server is not installed and CI=true`);
  console.warn(`skipping ${what}: redis-server is not installed`);
  return false;
}

/**
 * For a test file that needs the shared Redis at 127.0.0.1:6379: true when it answers PING.
 * Under `CI=true` its absence is an error, never a skip; otherwise the skip is printed with its
 * reason.
 */
export async function sharedRedisOrSkip(what: string): Promise<boolean> {
  if (await pingRedis(6379, 500)) return true;
  if (process.env['CI'] === 'true')
    throw new Error(`${what}: no Redis at 127.0.0.1:6379 and CI=true`);
  console.warn(`skipping ${what}: no Redis at 127.0.0.1:6379`);
  return false;
}
