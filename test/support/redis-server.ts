import { haveRedisServer } from '../../bench/lib/redis-server.js';

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
